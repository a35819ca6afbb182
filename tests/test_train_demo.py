"""``rscovlm demo`` end to end on a reduced setting: every stage runs and the trained scenes score 100 %."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_trains_answers_scores_and_draws(tmp_path, capfd, monkeypatch):
    from rscovlm.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", "demo", "--scenes", "5", "--holdout", "1", "--steps", "400", "--size", "224",
                 "--batch", "4", "--threads", "1"]) == 0
    captured = capfd.readouterr()
    # stdout holds the score table and nothing else; bars, stage and status lines share stderr in order
    table = captured.out.strip().splitlines()
    assert table[0].split() == ["task", "metric", "train", "scenes", "held-out", "scenes"] and len(table) == 9
    assert "AP_nc50" in captured.out and "mF1" in captured.out and "mAP50" in captured.out
    err = captured.err
    stages = [err.index(s) for s in ("1/4 scenes + samples", "2/4 building the offline tiny Qwen2.5-VL",
                                     "3/4 training on 20 samples: 100%", "4/4 answering", "trained 400 steps")]
    assert stages == sorted(stages) and "loss=" in err
    # a clean console: one bar per stage, no Trainer log dicts or transformers' save/load bars in between
    console = captured.out + captured.err
    assert "{'loss'" not in console and "train_runtime" not in console
    assert "Writing model shards" not in console and "Loading weights" not in console
    report = json.loads((out / "report.json").read_text())
    train = report["train"]
    # memorised: every stage (builder prompts, collator frames, decoding, parsers, frame mapping, metrics) agrees
    assert train["classification"]["accuracy"] == 1.0 and train["vqa"]["accuracy"] == 1.0
    assert train["grounding"]["acc@0.5"] == 1.0
    assert train["detection"]["AP_nc50"] == pytest.approx(1.0) and train["detection"]["mF1"] == 1.0
    # mAP with each object's confidence (token log-probs) as its score, beside AP_nc: every object was scored
    assert train["detection"]["mAP50"] == pytest.approx(1.0) and train["detection"]["unscored"] == 0
    scores = [s for x in map(json.loads, (out / "responses.jsonl").read_text().splitlines())
              if x["task"] == "detection" and x["split"] == "train" for s in x["parsed"]["scores"]]
    assert scores and all(0.5 < s <= 1.0 for s in scores)  # memorised answers: confident
    assert train["detection"]["unparsed_fraction"] == 0.0
    assert train["all"] == {"exact": 1.0, "n": 20}  # every answer is its target, character for character
    assert set(report["holdout"]) == {"classification", "vqa", "grounding", "detection", "all"}
    # the demo is a harness run: its answers are eval/synthetic/answers.jsonl, its scores what `eval score` gives
    scored = json.loads((out / "eval" / "scores.json").read_text())["results"]["synthetic"]
    assert {s: scored["details"][s] for s in ("train", "holdout")} == {s: report[s] for s in ("train", "holdout")}
    assert len((out / "eval" / "synthetic" / "answers.jsonl").read_text().splitlines()) == 24
    capfd.readouterr()
    assert main(["eval", "score", "demo/eval", "--json", "again.json"]) == 0
    assert "| train/mAP50 | 100.00 |" in capfd.readouterr().out
    assert json.loads((tmp_path / "again.json").read_text())["results"]["synthetic"]["metrics"] == scored["metrics"]
    # the reference prompt set by default, recorded with the outputs (report and the training run's folder)
    assert report["run"]["prompt_set"]["name"] == "reference" and len(report["run"]["prompt_set"]["sha256"]) == 64
    recorded = json.loads((out / "run" / "rscovlm_prompt_sets.json").read_text())
    assert {"name": "reference", "sha256": report["run"]["prompt_set"]["sha256"][:16], "samples": 10} in recorded
    losses = report["run"]["losses"]
    assert losses[-1] < 0.1 * losses[0]
    lines = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 6 and {x["split"] for x in lines} == {"train", "holdout"}
    assert all(x["resize"]["model"] == [224, 224] for x in lines)
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 2 * 6 and "scene_000_detection.png" in overlays
    from PIL import Image

    from rscovlm.viz.overlay import TITLE_BACKGROUND, font_size_for

    with Image.open(out / "overlays" / "scene_000_detection.png") as im:  # titled panels above the pictures
        strip = np.asarray(im.convert("RGB"))[:2 * font_size_for(224, 224)]
        assert im.size == (2 * 224 + 8, 224 + len(strip))
    assert (strip[:, :224] == TITLE_BACKGROUND).all(axis=2).mean() > 0.6
    assert (out / "tiny_model" / "model.safetensors").is_file()
    # the training set is a jsonl that `rscovlm train` reads from any working directory
    from rscovlm.train.sources import JsonlConversations

    monkeypatch.chdir("/")
    data = JsonlConversations([out / "data" / "train.jsonl"])
    assert len(data) == 20
    assert all(Path(p["image"]).is_file() for c in data for m in c["messages"] if isinstance(m["content"], list)
               for p in m["content"] if p["type"] == "image")


@pytest.mark.parametrize("family_name", ["qwen2_5_vl", "qwen2_vl"])
def test_demo_scores_answers_in_the_box_frame_of_the_model_family(tmp_path, family_name):
    """Qwen2.5-VL answers in pixels of the resized input, Qwen2-VL on a 0-1000 grid: the demo parses each
    family's answers in its own frame, so exact answers score 100 % for both."""
    import numpy as np

    from rscovlm.demo import DemoConfig, build_samples
    from rscovlm.eval.benchmarks.synthetic import score_samples as score
    from rscovlm.geometry.boxes import Boxes
    from rscovlm.geometry.objects import ObjectSet
    from rscovlm.model.families import family_for
    from rscovlm.protocol.detection import format_detections
    from rscovlm.protocol.grounding import format_grounding
    from rscovlm.resolution import ResizePlan

    family = family_for(family_name)
    cfg = DemoConfig(out=str(tmp_path), scenes=1, holdout=0, size=250)  # 250 px: resized to 252, not identity
    samples = build_samples(cfg, tmp_path / "images", range(1))
    answers = []
    for s in samples:
        plan = ResizePlan.from_dict(s.conversation["meta"]["plans"][0])
        frame = family.box_frame_for(*plan.model_size)
        quads = Boxes(np.array(s.gt_quads, float).reshape(-1, 8), "quad", plan.original).to_frame(frame)
        if s.task == "grounding":
            answers.append(format_grounding(quads.to("hbb")))
        elif s.task == "detection":
            answers.append(format_detections(ObjectSet(quads, s.gt_labels)))
        else:
            answers.append(s.answer)
    report, _ = score(samples, answers, family)
    assert report["grounding"]["acc@0.5"] == 1.0
    assert report["detection"]["AP_nc50"] == pytest.approx(1.0) and report["detection"]["mF1"] == 1.0


def test_demo_targets_follow_the_family_frame(tmp_path):
    """Training targets of a 0-1000 family are built on that grid; pixel-frame targets are the default build."""
    from rscovlm.demo import DemoConfig, build_samples
    from rscovlm.eval.benchmarks.synthetic import score_samples as score
    from rscovlm.model.families import family_for

    cfg = DemoConfig(out=str(tmp_path), scenes=1, holdout=0, size=250)
    samples = build_samples(cfg, tmp_path / "i", range(1))
    assert [s.answer for s in build_samples(cfg, tmp_path / "i", range(1), family="qwen2_5_vl")] == \
        [s.answer for s in samples]
    rewritten = build_samples(cfg, tmp_path / "i", range(1), family="qwen2_vl")
    ground = next(i for i, s in enumerate(samples) if s.task == "grounding")
    assert rewritten[ground].answer != samples[ground].answer
    assert rewritten[ground].conversation["messages"][-1]["content"][0]["text"] == rewritten[ground].answer
    assert samples[ground].conversation["messages"][-1]["content"][0]["text"] == samples[ground].answer
    report, _ = score(rewritten, [s.answer for s in rewritten], family_for("qwen2_vl"))
    assert report["grounding"]["acc@0.5"] == 1.0 and report["detection"]["mF1"] == 1.0


def test_demo_names_a_model_it_cannot_load_before_doing_any_work(tmp_path, capsys):
    from rscovlm.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--model", str(tmp_path / "no_model"), "--steps", "0"]) == 2
    assert "--model" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert main(["demo", "--out", str(tmp_path / "d"), "--threads", "0"]) == 2


def test_demo_refuses_a_scene_size_too_small_for_its_objects(tmp_path, capsys):
    """A scene that cannot hold its objects used to keep fewer than asked while the counting answer still said
    the asked number: now the demo stops before any training, naming --size."""
    from rscovlm.cli import main
    from rscovlm.demo import DemoConfig, DemoError, build_samples

    with pytest.raises(DemoError, match="--size 140: scene 5 has room for 1 of 2"):
        build_samples(DemoConfig(size=140, scenes=10), tmp_path / "i", range(10))
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "112", "--threads", "1"]) == 2
    assert "use a larger --size" in capsys.readouterr().err
    assert not (tmp_path / "d" / "tiny_model").exists()


@pytest.mark.slow
def test_demo_is_deterministic_and_restores_torch_settings(tmp_path):
    """Same settings, same report: losses, answers and scores repeat exactly (the thread count is fixed by
    --threads, deterministic algorithms are on), and the caller's torch settings are restored afterwards."""
    import torch

    from rscovlm.demo import DemoConfig, run_demo

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    runs = []
    for k in range(2):
        cfg = DemoConfig(out=str(tmp_path / f"d{k}"), scenes=2, holdout=1, size=224, steps=30, batch=4,
                         max_new_tokens=24, threads=1)
        report = run_demo(cfg)
        answers = [json.loads(line)["response"] for line in (tmp_path / f"d{k}" / "responses.jsonl").open()]
        runs.append((report["run"]["losses"], answers, {s: report[s] for s in ("train", "holdout")}))
    assert runs[0] == runs[1] and len(runs[0][0]) >= 2
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


@pytest.mark.parametrize("prompt_set", ["reference", "rscovlm-v0"])
def test_demo_samples_speak_the_prompt_set_and_score_exact_answers(tmp_path, prompt_set):
    """The demo builds its grounding and detection samples with --prompt-set (default reference: its system
    prompts, evaluation requests and answer format) and scores them through the protocol readers: the targets as
    answers score 100 % whichever set wrote them."""
    from rscovlm.demo import DemoConfig, build_samples
    from rscovlm.eval.benchmarks.synthetic import score_samples as score
    from rscovlm.model.families import family_for

    cfg = DemoConfig(out=str(tmp_path), scenes=5, holdout=0, size=224, prompt_set=prompt_set)
    samples = build_samples(cfg, tmp_path / "images", range(5))
    det = next(s for s in samples if s.task == "detection")
    ground = next(s for s in samples if s.task == "grounding")
    roles = [m["role"] for m in det.conversation["messages"]]
    user = det.conversation["messages"][-2]["content"][-1]["text"]
    if prompt_set == "reference":
        assert roles == ["system", "user", "assistant"]
        assert user == "find the plane, ship, storage tank, swimming pool, tennis court."
        assert det.answer.endswith(" plane\n") and det.answer.count(",") == 7
        assert ground.answer.endswith(" topmost plane\n") and ground.answer.count(",") == 3
    else:
        assert roles == ["user", "assistant"] and det.answer.startswith("plane: (")
    assert det.conversation["meta"]["prompt_set"]["name"] == prompt_set
    report, _ = score(samples, [s.answer for s in samples], family_for("qwen2_5_vl"))
    assert report["all"]["exact"] == 1.0 and report["grounding"]["acc@0.5"] == 1.0
    assert report["detection"]["mF1"] == 1.0 and report["detection"]["unparsed_fraction"] == 0.0


def test_demo_refuses_an_unknown_prompt_set_before_any_work(tmp_path, capsys):
    from rscovlm.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--prompt-set", "nope", "--threads", "1"]) == 2
    assert "--prompt-set nope: unknown prompt set 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
