"""Multiple-choice conversion (paper 3.4.3).

An open-ended pair (template or region QA) whose answer is not yes/no is sent to the LLM with the ``mcq`` prompt
of ``prompts.yaml`` (text only); the reply must be JSON ``{"options": [four texts]}`` holding the correct answer
and three distractors. Checked (:func:`check_options`, first failing rule counted): the reply is JSON
(``not_json``), an object with an ``options`` list (``no_options``), exactly four (``not_four``) non-empty texts
(``not_text``), unique after lower-casing and trimming (``duplicate``), the correct answer among them
(``correct_missing``). A valid reply is shuffled with the sample's own generator (seeded by the run's seed and the
record id), lettered ``(A) ...`` to ``(D) ...`` (MME-RealWorld's form, which the reference's evaluation reads) and
the answer is the letter. The question is the prompt set's multiple-choice template
(:meth:`rscovlm.protocol.prompt_sets.ZoomPrompts.mcq_question`, without the reference's training ``rstrip``: our
questions do not carry the single-word instruction it was meant to remove).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

MCQ_REJECTS = ("request_failed", "not_json", "no_options", "not_four", "not_text", "duplicate", "correct_missing")
LETTERS = "ABCD"
YES_NO = ("yes", "no")


@dataclass
class MCQConfig:
    """Multiple-choice conversion (paper 3.4.3)."""

    enabled: bool = field(default=True, metadata={"help": "convert open-ended pairs to multiple choice (LLM)"})
    fraction: float = field(default=0.35, metadata={
        "help": "share of the eligible (not yes/no) open-ended pairs converted, drawn per pair with the seed "
                "(the paper converts 83k of 219k)"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"mcq.fraction: must be in [0, 1], got {self.fraction}")


def _norm(text: str) -> str:
    return " ".join(str(text).strip().lower().split())


def is_yes_no(answer: str) -> bool:
    return _norm(answer).rstrip(".") in YES_NO


def check_options(text: str | None, correct: str, rejects: Counter) -> list[str] | None:
    """The four options of an MCQ reply, or None with the reason counted in ``rejects`` (module docstring)."""
    from rscovlm.data.zoom.synthesis import parse_json_reply

    if text is None:
        rejects["request_failed"] += 1
        return None
    try:
        value = parse_json_reply(text)
    except ValueError:
        rejects["not_json"] += 1
        return None
    options = value.get("options") if isinstance(value, dict) else None
    if not isinstance(options, list):
        rejects["no_options"] += 1
        return None
    if len(options) != 4:
        rejects["not_four"] += 1
        return None
    if not all(isinstance(o, (str, int, float)) and not isinstance(o, bool) and str(o).strip() for o in options):
        rejects["not_text"] += 1
        return None
    options = [str(o).strip() for o in options]
    if len({_norm(o) for o in options}) != 4:
        rejects["duplicate"] += 1
        return None
    if _norm(correct) not in {_norm(o) for o in options}:
        rejects["correct_missing"] += 1
        return None
    return options


def letter_options(options: list[str], correct: str, rng: np.random.Generator) -> tuple[list[str], str]:
    """Shuffle ``options`` with ``rng``; ``(["(A) ...", ...], letter of the correct one)``."""
    order = rng.permutation(len(options)).tolist()
    shuffled = [options[i] for i in order]
    letter = LETTERS[[_norm(o) for o in shuffled].index(_norm(correct))]
    return [f"({LETTERS[k]}) {o}" for k, o in enumerate(shuffled)], letter
