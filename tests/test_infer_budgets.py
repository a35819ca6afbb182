"""Generation budgets per task and the finish reason of every answer (issue 9, part 5)."""

from __future__ import annotations

import pytest

from rscovlm.infer import DEFAULT_MAX_NEW_TOKENS, TASK_MAX_NEW_TOKENS, Generation, budget, count_truncated
from rscovlm.infer.backends import GenerationConfig, finish_reasons


def test_budget_order_and_defaults():
    assert TASK_MAX_NEW_TOKENS["detection"] >= 8192  # 1024 cut a dense DOTA patch after ~30 objects
    assert budget("detection") == 16384  # the reference's budget
    assert budget("grounding") == 1024 and budget("no such task") == budget() == DEFAULT_MAX_NEW_TOKENS
    assert budget("detection", config_max=2048) == 2048
    assert budget("detection", max_new_tokens=7, config_max=2048) == 7
    assert budget("detection", table={"detection": 9000}) == 9000
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            budget("detection", max_new_tokens=bad)
    assert GenerationConfig().max_new_tokens is None and GenerationConfig().task_budgets == TASK_MAX_NEW_TOKENS


def test_finish_reasons_from_generated_ids():
    import torch

    eos = {7, 8}
    new = torch.tensor([[1, 2, 3, 4],  # no end token, budget used up: cut off
                        [1, 7, 8, 8],  # ended (then padded with the pad = end token)
                        [5, 6, 3, 8]])  # ended on the last allowed token
    assert finish_reasons(new, eos, 4) == [("length", 4), ("stop", 2), ("stop", 4)]
    assert finish_reasons(torch.tensor([[1, 2]]), eos, 4) == [("stop", 2)]  # stopped early by other criteria


def test_count_truncated():
    gens = [Generation("a", "length", 4, 4), Generation("b", "stop", 4, 2), Generation("c", None, 4)]
    assert count_truncated(gens) == {"n": 3, "truncated": 1, "unknown": 1}


def test_transformers_backend_flags_answers_cut_by_the_budget(tiny_model_dir):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rscovlm.infer import TransformersBackend

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    backend = TransformersBackend(model, processor, GenerationConfig(batch_size=2))
    conv = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (224, 224))},
                                         {"type": "text", "text": "find the plane."}]}]
    out = backend.generate_results([conv, conv], max_new_tokens=3, task="detection")
    assert [g.max_new_tokens for g in out] == [3, 3]
    for g in out:  # a random tiny model runs to the budget unless it happens to emit an end token
        assert g.finish_reason in ("stop", "length") and 1 <= g.n_new_tokens <= 3
        assert g.truncated == (g.n_new_tokens == 3 and g.finish_reason == "length")
    assert backend.generate([conv], max_new_tokens=2) == [backend.generate_results([conv], max_new_tokens=2)[0].text]
