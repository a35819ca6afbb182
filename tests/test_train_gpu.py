"""Checks that need a CUDA GPU: bf16 + activation checkpointing training, Liger kernels, GPU decoding.

Skipped where no GPU is visible (CI runs on CPU); run them on a GPU machine with
``python -m pytest -q tests/test_train_gpu.py``."""

from __future__ import annotations

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


from test_train_loop import _cfg, _task_samples  # noqa: E402  (tests/ is on sys.path under pytest)


def _samples():
    return list(_task_samples().values())


def test_bf16_with_activation_checkpointing_trains(tiny_model_dir, tmp_path):
    from rscovlm.train.trainer import train

    cfg = _cfg(tiny_model_dir, tmp_path / "run", "global_batch_size=4", "per_device_batch_size=2",
               "max_steps=40", "learning_rate=3e-3", "precision=auto", "gradient_checkpointing=auto")
    result = train(cfg, dataset=_samples())
    model = result.trainer.model
    assert next(model.parameters()).device.type == "cuda"
    assert result.trainer.args.bf16 and model.is_gradient_checkpointing
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < 0.5 * result.losses[0]


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="liger-kernel not installed")
def test_liger_kernel_flag_trains(tiny_model_dir, tmp_path):
    from rscovlm.train.trainer import train

    cfg = _cfg(tiny_model_dir, tmp_path / "liger", "global_batch_size=4", "per_device_batch_size=4",
               "max_steps=20", "learning_rate=3e-3", "precision=bf16", "use_liger_kernel=true")
    result = train(cfg, dataset=_samples())
    assert result.trainer.args.use_liger_kernel
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0]


def test_gpu_memorization_decodes_targets(tiny_model_dir, tmp_path):
    """fp32 on the GPU: after memorization, greedy decoding through the inference backend reproduces targets."""
    from rscovlm.infer.backends import GenerationConfig, TransformersBackend
    from rscovlm.train.trainer import train

    samples = _samples()
    cfg = _cfg(tiny_model_dir, tmp_path / "mem", "global_batch_size=4", "per_device_batch_size=4",
               "max_steps=100", "learning_rate=3e-3", "precision=fp32", "gradient_checkpointing=false")
    result = train(cfg, dataset=samples)
    backend = TransformersBackend(result.trainer.model.eval(), result.trainer.processing_class,
                                  GenerationConfig(max_new_tokens=160, batch_size=4))
    answers = backend.generate([s["messages"][:1] for s in samples])
    assert answers == [s["messages"][1]["content"][0]["text"] for s in samples]
