"""The vLLM backend: a clear error without the extra; where vLLM and a GPU are present, the same answers as the
transformers backend on the same (briefly trained) tiny model, with answers per second of both printed."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from rscovlm._optional import MissingDependencyError, available


def test_without_vllm_the_backend_names_its_extra(monkeypatch):
    from rscovlm.infer import get_backend

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"the vLLM backend needs the package 'vllm'.*rscovlm\[vllm\]"):
        get_backend("vllm", model="any")


def _gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not available("vllm") or not _gpu(),
                    reason="needs vLLM (pip install 'rscovlm[vllm]') and a GPU")
def test_vllm_and_transformers_give_the_same_answers(tiny_model_dir, tmp_path):
    """Four image questions the tiny model memorised (so greedy answers do not hinge on float noise): vLLM (images
    handed over already resized, mm_processor_kwargs per request, float32) answers exactly as the transformers
    backend, reports the same model sizes and close token log-probs."""
    import torch
    from PIL import Image

    from rscovlm.infer import GenerationConfig, TransformersBackend, get_backend
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    rng = np.random.default_rng(0)
    convs, samples = [], []
    for i, answer in enumerate(["airport", "3", "120,45,160,45,160,80,120,80 plane\n", "There are none."]):
        img = Image.fromarray(rng.integers(0, 255, (224 + 28 * i, 280, 3), dtype=np.uint8))
        user = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": f"q{i}"}]}]
        convs.append(user)
        samples.append({"messages": user + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]})
    cfg = build_config({}, [f"model.model_name_or_path={tiny_model_dir}", f"output_dir={tmp_path / 'run'}",
                            "dataloader_num_workers=0", "weight_decay=0.0", "warmup_ratio=0.0",
                            "lr_scheduler_type=constant", "save_steps=100000", "seed=7", "deepspeed=none",
                            "global_batch_size=4", "per_device_batch_size=4", "max_steps=150", "learning_rate=3e-3",
                            "precision=fp32", "gradient_checkpointing=false"])
    result = train(cfg, dataset=samples)
    model_dir = tmp_path / "model"
    result.trainer.model.save_pretrained(model_dir)
    result.trainer.processing_class.save_pretrained(model_dir)
    model = result.trainer.model.to(torch.float32).eval()
    hf = TransformersBackend(model, result.trainer.processing_class, GenerationConfig(batch_size=8, logprobs=True))
    vl = get_backend("vllm", model=str(model_dir), dtype="float32", gpu_memory_utilization=0.3, logprobs=True,
                     max_model_len=4096)
    many = convs * 16
    rates = {}
    for name, backend in (("transformers", hf), ("vllm", vl)):
        backend.generate_results(convs, max_new_tokens=40)  # warm-up
        start = time.perf_counter()
        out = backend.generate_results(many, max_new_tokens=40)
        rates[name] = len(many) / (time.perf_counter() - start)
        rates[name + "_out"] = out
    print(f"answers/s on one GPU, tiny model: transformers {rates['transformers']:.1f}, vllm {rates['vllm']:.1f}")
    for a, b in zip(rates["transformers_out"], rates["vllm_out"]):
        assert a.text == b.text and a.image_sizes == b.image_sizes and a.finish_reason == b.finish_reason
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=1e-2)
