"""DeepSpeed configurations shipped as package data: ``zero1.json`` (the paper's setting), ``zero2.json``,
``zero3.json``. Values set to ``"auto"`` are filled in by ``transformers`` from the training arguments (batch
sizes, accumulation, clipping, bf16/fp16), so the YAML config stays the one source of those numbers."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
STAGES = ("zero1", "zero2", "zero3")


def config_path(name: str) -> Path:
    """Path of the shipped config ``name`` (``zero1`` / ``zero2`` / ``zero3``)."""
    if name not in STAGES:
        raise ValueError(f"unknown DeepSpeed config {name!r}; shipped: {', '.join(STAGES)}")
    return CONFIG_DIR / f"{name}.json"
