"""Shared fixtures. Heavy imports (torch, transformers) happen inside fixtures so test collection stays fast."""

from __future__ import annotations

import os

import pytest

# Tests never reach the network and share two cores with other jobs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path of an offline tiny Qwen2.5-VL folder (``rscovlm.model.tiny``), built once per test session.

    Load it with ``AutoProcessor.from_pretrained`` / ``AutoModelForImageTextToText.from_pretrained`` or the
    ``rscovlm.model.loading`` helpers. Treat it as read-only: copy it before changing files in it.
    """
    import torch

    from rscovlm.model.tiny import build_tiny_model

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))
