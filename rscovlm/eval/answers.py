"""Accuracy of short answers (scene classification, VQA), with named answer-normalization rules.

Each benchmark names its rule in its config, and predictions are kept raw, so a different rule can re-score a
run without re-running the model.
"""

from __future__ import annotations

import re
from typing import Callable

NORMALIZERS: dict[str, Callable[[str], str]] = {}


def register_normalizer(name: str):
    def wrap(fn):
        NORMALIZERS[name] = fn
        return fn

    return wrap


@register_normalizer("exact")
def _exact(text: str) -> str:
    return text.strip()


@register_normalizer("lower")
def _lower(text: str) -> str:
    """Lower case, inner whitespace collapsed, trailing sentence punctuation removed (``"Airport."`` ->
    ``"airport"``)."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .!?;,")


@register_normalizer("label")
def _label(text: str) -> str:
    """``lower`` plus separators unified, for class names (``"Dense_Residential"`` -> ``"dense residential"``)."""
    return re.sub(r"[\s_\-]+", " ", _lower(text)).strip()


def answer_accuracy(predictions: list[str], answers: list[str], rule: str = "lower") -> dict:
    """``{"accuracy", "correct", "n", "rule"}``; ``predictions[i]`` is compared with ``answers[i]``."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    try:
        norm = NORMALIZERS[rule]
    except KeyError:
        raise KeyError(f"unknown answer rule {rule!r}; known: {sorted(NORMALIZERS)}") from None
    correct = sum(norm(p) == norm(a) for p, a in zip(predictions, answers))
    n = len(answers)
    return {"accuracy": correct / n if n else 0.0, "correct": correct, "n": n, "rule": rule}
