"""Task runners: the reference prompt set's prompts per task, answers parsed into the ORIGINAL image frame with
the raw answer kept, on a scripted backend (exact numbers) and on the real tiny model (every task end to end)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from rscovlm.infer import Generation
from rscovlm.infer.backends import resolve_images
from rscovlm.infer.runners import Query, Runner, RunnerConfig
from rscovlm.resolution import ResolutionPolicy


class Scripted:
    """Answers ``answers[user text]``; images are resolved like every backend's (so model sizes are real)."""

    def __init__(self, answers, tokens=None):
        self.answers, self.tokens, self.calls = answers, tokens or {}, []

    def generate_results(self, conversations, max_new_tokens=None, progress=None, task=None, logprobs=None):
        self.calls.append((conversations, task, logprobs))
        resolved, sizes = resolve_images(conversations, ResolutionPolicy())
        out = []
        for conv, conv_sizes in zip(conversations, sizes):
            text = conv[-1]["content"][-1]["text"]
            answer = self.answers[text]
            pieces = self.tokens.get(text)
            lps = toks = None
            if pieces is not None and logprobs:
                toks, lps = tuple(p for p, _ in pieces), tuple(lp for _, lp in pieces)
                assert "".join(toks) == answer
            out.append(Generation(answer, "stop", 100, 5, tuple(conv_sizes), None, lps, toks))
        return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("runners") / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1000, 2000, 3), dtype=np.uint8)).save(path)
    return path  # 2000 x 1000 -> model frame 1400 x 700 within 1008^2 (x and y scale 2000/1400 = 1000/700)


DOTA = ("baseball diamond, basketball court, bridge, ground track field, harbor, helicopter, large vehicle, plane, "
        "roundabout, ship, small vehicle, soccer ball field, storage tank, swimming pool, tennis court")


def test_prompts_and_original_frame_results(scene):
    answers = {
        "Classify the image within one of the given classes:airport,farmland.": "<think>hm</think> airport",
        "How many planes? Answer the question using a single word or a short phrase.": "3",
        "Describe the image": "A field.",
        "find the white plane": "140,70,280,210",
        f"find the {DOTA}.": "0,0,140,0,140,70,0,70 plane\n700,350,840,350,840,420,700,420 small vehicle\n"
                             "1,1,2,1,2,2,1,2 blimp\n",
    }
    det = answers[f"find the {DOTA}."]
    cut = det.index("700,350")
    tokens = {f"find the {DOTA}.": [(det[:cut], -0.2), (det[cut:det.index("1,1,2")], -0.7),
                                    (det[det.index("1,1,2"):], -0.1)]}
    backend = Scripted(answers, tokens)
    runner = Runner(backend)
    q = str(scene)
    cls = runner.run("classify", [Query(q, classes=["airport", "farmland"], id="c")])[0]
    assert cls.answer == "airport" and cls.raw == "<think>hm</think> airport"  # raw kept, think block removed
    assert runner.run("vqa", [Query(q, "How many planes?")])[0].answer == "3"
    assert runner.run("caption", [Query(q)])[0].answer == "A field."
    ground = runner.run("ground", [Query(q, "white plane")])[0]
    assert ground.model_size == (1400, 700) and ground.size == (2000, 1000)
    np.testing.assert_allclose(ground.boxes.data, [[200, 100, 400, 300]])  # x * 2000/1400, y * 1000/700
    detect = runner.run("detect", [Query(q)])[0]
    assert detect.objects.labels == ["plane", "small-vehicle"] and detect.parse["unknown_labels"] == 1
    np.testing.assert_allclose(detect.objects.boxes.data, [[0, 0, 200, 0, 200, 100, 0, 100],
                                                          [1000, 500, 1200, 500, 1200, 600, 1000, 600]])
    np.testing.assert_allclose(detect.objects.scores, [math.exp(-0.2), math.exp(-0.7)])
    record = detect.to_json()
    assert record["objects"][1] == {"label": "small-vehicle", "quad": [1000, 500, 1200, 500, 1200, 600, 1000, 600],
                                    "score": round(math.exp(-0.7), 6)} and record["raw"] == det
    # what each task sent: system prompts only where the reference has them; the detection request asks log-probs
    convs = dict(zip(["classify", "vqa", "caption", "ground", "detect"], [c[0][0] for c in backend.calls]))
    assert [m["role"] for m in convs["classify"]] == ["user"]
    assert convs["ground"][0]["content"][0]["text"].startswith("As an AI assistant, you specialize in accurate "
                                                              "image object detection")
    assert "x1,y1,x2,y2,x3,y3,x4,y4 object" in convs["detect"][0]["content"][0]["text"]
    assert [(t, lp) for _, t, lp in backend.calls] == [("classification", False), ("vqa", False),
                                                       ("caption", False), ("grounding", False), ("detection", True)]


def test_qwen2_vl_answers_are_on_the_0_1000_grid(scene):
    backend = Scripted({"find the white plane": "100,100,200,300"})
    ground = Runner(backend, RunnerConfig(family="qwen2_vl")).run("ground", [Query(str(scene), "white plane")])[0]
    np.testing.assert_allclose(ground.boxes.data, [[200, 100, 400, 300]])


def test_per_request_pixel_budget_and_custom_vocabulary(scene):
    backend = Scripted({"find the car, tree.": "0,0,10,0,10,10,0,10 car\n"})
    runner = Runner(backend, RunnerConfig(max_pixels=448 * 448, categories="car,tree"))
    res = runner.run("detect", [Query(str(scene))])[0]
    assert res.model_size == (616, 308) and res.objects.labels == ["car"]
    assert np.isnan(res.objects.scores).all() and res.parse["unscored"] == 1  # no tokens given: no confidence


@pytest.mark.slow
def test_every_task_on_the_tiny_model(tiny_model_dir, scene):
    """Every task runs end to end on the real tiny model through the transformers backend: prompts rendered by
    the chat template, images resized by the policy, answers parsed (a random model writes nonsense: the
    parse facts say so) and results serializable."""
    import json

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.infer import GenerationConfig, TransformersBackend

    torch.set_num_threads(1)
    backend = TransformersBackend(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                                  AutoProcessor.from_pretrained(tiny_model_dir),
                                  GenerationConfig(batch_size=4, max_new_tokens=6))
    runner = Runner(backend, RunnerConfig(max_pixels=448 * 448))
    q = str(scene)
    for task, query in (("chat", Query(q, "hi")), ("classify", Query(q, classes=["a", "b"])),
                        ("vqa", Query(q, "what?")), ("caption", Query(q)), ("ground", Query(q, "the plane")),
                        ("detect", Query(q)), ("zoom-vqa", Query(q, "what is in the corner?"))):
        (res,) = runner.run(task, [query])
        assert res.task == task and res.size == (2000, 1000) and res.model_size == (616, 308), task
        assert res.generation.n_new_tokens <= 6 and res.raw == res.generation.text
        json.dumps(res.to_json())
        if task == "detect":
            assert res.generation.token_logprobs is not None and len(res.generation.tokens) == res.generation.n_new_tokens
