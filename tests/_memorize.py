"""Teach the offline tiny model a handful of conversations by heart, for tests that need a model which answers
exactly what they expect (the inference, zoom, zoom-data and viewer tests)."""

from __future__ import annotations

from pathlib import Path


def memorize(tiny_model_dir, samples: list[dict], out: Path, *, steps: int, batch: int, logging_steps: int = 50,
             save: bool = True):
    """Train ``tiny_model_dir`` on ``samples`` (``{"messages": [...]}`` conversations) for ``steps`` AdamW steps of
    ``batch`` samples at a constant learning rate of 3e-3 (no weight decay, no warm-up, seed 7, no DeepSpeed),
    asserting that the final loss is below 0.05 (the answers are memorized). Writes the run under ``out/run``;
    with ``save`` also the model and its processor to ``out/model``. Returns ``(result, model folder or None)``."""
    from rscovlm.train.config import build_config
    from rscovlm.train.trainer import train

    cfg = build_config({}, [
        f"model.model_name_or_path={tiny_model_dir}", f"output_dir={out / 'run'}", "dataloader_num_workers=0",
        "weight_decay=0.0", "warmup_ratio=0.0", "lr_scheduler_type=constant", f"logging_steps={logging_steps}",
        "save_steps=100000", "seed=7", "deepspeed=none", f"global_batch_size={batch}",
        f"per_device_batch_size={batch}", f"max_steps={steps}", "learning_rate=3e-3"])
    result = train(cfg, dataset=samples)
    assert result.losses[-1] < 0.05, result.losses[-5:]
    if not save:
        return result, None
    model_dir = out / "model"
    result.trainer.model.save_pretrained(model_dir)
    result.trainer.processing_class.save_pretrained(model_dir)
    return result, model_dir
