"""Token log-probs of the backends and the per-object confidence rule (rscovlm.infer.confidence)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rscovlm.infer.confidence import candidate_spans, detections_with_confidence
from rscovlm.protocol.categories import DOTA_V1_0
from rscovlm.protocol.readers import read_answer


def _tokens(pieces_with_lp):
    return [p for p, _ in pieces_with_lp], [lp for _, lp in pieces_with_lp]


def test_confidence_is_the_geometric_mean_probability_of_each_objects_tokens():
    # reference plain form: two objects, a line break between them (whitespace: not counted), the end token
    pieces = [("10", -0.1), (",", -0.2), ("20", -0.3), (",30,20,30,40,10,40", -0.4), (" plane", -0.5), ("\n", -3.0),
              ("5", -1.0), (",5,9,5,9,9,5,9", -1.0), (" sh", -2.0), ("ip", -0.0), ("\n", -5.0), ("", -0.01)]
    tokens, lps = _tokens(pieces)
    text = "".join(tokens)
    parsed, scores = detections_with_confidence(text, tokens, lps, categories=DOTA_V1_0)
    assert parsed.objects.labels == ["plane", "ship"]
    np.testing.assert_allclose(scores, [math.exp(-1.5 / 5), math.exp(-4.0 / 4)])
    # a token shared by two objects counts for both; an unknown label is no object and shifts nothing
    pieces = [("1,1,2,1,2,2,1,2 plane\n3,3", -0.6), (",4,3,4,4,3,4 blimp\n", -0.2), ("7,7,8,7,8,8,7,8 ship", -0.9)]
    tokens, lps = _tokens(pieces)
    parsed, scores = detections_with_confidence("".join(tokens), tokens, lps, categories=DOTA_V1_0)
    assert parsed.objects.labels == ["plane", "ship"] and parsed.unknown_labels == ["blimp"]
    np.testing.assert_allclose(scores, [math.exp(-0.6), math.exp(-0.9)])


def test_confidence_for_json_and_older_forms():
    text = ('```json\n[\n\t{"quadrant bbox": [1, 1, 2, 1, 2, 2, 1, 2], "label": "plane"},\n'
            '\t{"quadrant bbox": [3, 3, 4, 3, 4, 4, 3, 4], "label": "ship"}\n]\n```')
    cut = text.index('{"quadrant bbox": [3')
    tokens = [text[:cut], text[cut:]]
    parsed, scores = detections_with_confidence(text, tokens, [-0.25, -0.75], categories=DOTA_V1_0)
    np.testing.assert_allclose(scores, [math.exp(-0.25), math.exp(-0.75)])
    # rscovlm-v0: a label written once for two boxes; each box's own text is found
    text = "plane: (1,1),(2,1),(2,2),(1,2); (5,5),(6,5),(6,6),(5,6)"
    reading = read_answer(text)
    spans = candidate_spans(text, reading.candidates)
    assert [text[a:b] for a, b in spans] == ["plane: (1,1),(2,1),(2,2),(1,2)", "(5,5),(6,5),(6,6),(5,6)"]
    tokens = list(text)
    lps = [-0.1] * text.index(";") + [-1.0] * (len(text) - text.index(";"))
    _, scores = detections_with_confidence(text, tokens, lps, categories=DOTA_V1_0)
    np.testing.assert_allclose(scores, [math.exp(-0.1), math.exp(-1.0)])


def test_no_tokens_no_confidence():
    text = "1,1,2,1,2,2,1,2 plane\n"
    assert np.isnan(detections_with_confidence(text, None, None)[1]).all()
    # token texts that do not add up to the answer (a server's token strings) cannot be aligned
    assert np.isnan(detections_with_confidence(text, ["1,1"], [-0.1])[1]).all()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(1)
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir), AutoProcessor.from_pretrained(tiny_model_dir)


def _teacher_forced(model, encoder, conv, new_ids):
    """Log-probabilities of ``new_ids`` after the prompt of ``conv``, from one forward pass."""
    import torch

    from rscovlm.infer.backends import resolve_images

    inputs, _ = encoder.encode_prompts(resolve_images([conv], encoder.policy)[0])
    extra = torch.tensor([new_ids])
    inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
    inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()
    start = inputs["input_ids"].shape[1] - len(new_ids)
    lp = torch.log_softmax(logits[start - 1:-1], dim=-1)
    return lp.gather(1, extra[0][:, None]).squeeze(1).tolist()


@pytest.mark.parametrize("sampling", [False, True])
def test_transformers_logprobs_are_those_of_the_model(tiny, sampling):
    """The backend's per-token log-probs (recorded while generating, one step's distribution held at a time)
    equal a teacher-forced forward pass over the generated tokens; the token texts add up to the answer."""
    from PIL import Image

    from rscovlm.infer import GenerationConfig, TransformersBackend

    model, processor = tiny
    cfg = GenerationConfig(batch_size=2, logprobs=True, do_sample=sampling, seed=3, top_k=0)
    backend = TransformersBackend(model, processor, cfg)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    convs = [[{"role": "user", "content": [{"type": "image", "image": img},
                                           {"type": "text", "text": t}]}] for t in ("find the plane.", "hello")]
    gens = backend.generate_results(convs, max_new_tokens=10)
    tok = processor.tokenizer
    for conv, gen in zip(convs, gens):
        assert gen.image_sizes == ((392, 308),) and gen.visual_tokens == 154
        assert len(gen.token_logprobs) == gen.n_new_tokens and "".join(gen.tokens) == gen.text
        assert tok.decode(list(gen.token_ids), skip_special_tokens=True) == gen.text
        np.testing.assert_allclose(gen.token_logprobs,
                                   _teacher_forced(model, backend.encoder, conv, list(gen.token_ids)), atol=2e-4)
        if not sampling:  # greedy: every chosen token is the most likely one
            assert all(lp > -20 for lp in gen.token_logprobs)
