"""Short-answer matching rules of the released scorers (scene classification and VQA), by name.

Every rule takes the raw ground truth and the raw model answer and says whether the answer counts; each benchmark
names the rules it offers (``official``: the benchmark's released scorer, ``reference``: what VisionXLab/RSCoVLM
computes for it, ``strict``) and maps them onto these:

* ``contain`` - RSCoVLM ``compute_contain_acc`` (GeoChat-Bench scene/VQA, VRSBench-VQA, ``cls_*``): both
  ``lower().strip().strip(".")``, correct when the ground truth is a substring of the answer (lenient: ground
  truth ``"a"`` is inside almost any sentence; ``"no"`` inside ``"not sure"``).
* ``contain_either`` - RSCoVLM's VHM ``eval_contain`` (VHM scene classification and RSVQA files): the same
  normalization, correct when either string contains the other (so an empty answer is always correct - kept).
* ``exact`` - RSCoVLM ``compute_identical_acc``: equality after the same normalization.
* ``strict`` - equality after :func:`strict_norm` (case, surrounding whitespace and punctuation, inner whitespace,
  ``_``/``-`` between words); an empty answer is wrong; numbers written as words stay words.
* ``choice_letter`` - VHM ``eval_multi_choices``: the first character of the answer among ``ABCDE`` (upper case
  only), lower-cased, must occur in the lower-cased ground truth.
* ``vrsbench`` - the rule-based part of VRSBench's ``eval_vqa_gpt.ipynb``: both lower-cased (nothing stripped);
  correct when the ground truth is a substring of the answer; else, when the ground truth is ``yes``, ``no`` or an
  integer 0-99, only equality counts; anything else needs the LLM judge (:func:`vrsbench_rule` returns None).
"""

from __future__ import annotations

import re
from typing import Callable

RULE_DOCS = {
    "contain": "RSCoVLM compute_contain_acc: lower/strip/strip('.'), ground truth inside the answer",
    "contain_either": "RSCoVLM VHM eval_contain: lower/strip/strip('.'), either string inside the other",
    "exact": "RSCoVLM compute_identical_acc: lower/strip/strip('.'), equal",
    "strict": "lower, punctuation and separators normalized, equal; empty answer wrong",
    "choice_letter": "VHM eval_multi_choices: first A-E letter of the answer inside the ground truth",
    "vrsbench": "VRSBench eval_vqa_gpt.ipynb rules: gt in answer; yes/no/0-99 exact; else LLM judge",
}
VRSBENCH_CLOSED = frozenset(["yes", "no"] + [str(i) for i in range(100)])


def ref_norm(text: str) -> str:
    """RSCoVLM's normalization: ``lower().strip().strip(".")``."""
    return text.lower().strip().strip(".")


def strict_norm(text: str) -> str:
    """Lower case; ``_`` and ``-`` between words and runs of whitespace become one space; punctuation at either end
    removed (``" Dense_Residential."`` -> ``"dense residential"``)."""
    text = re.sub(r"(?<=\w)[_\-]+(?=\w)", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip(" \t\n.,;:!?\"'")


def _contain(gt: str, pred: str) -> bool:
    return ref_norm(gt) in ref_norm(pred)


def _contain_either(gt: str, pred: str) -> bool:
    g, p = ref_norm(gt), ref_norm(pred)
    return p in g or g in p


def _exact(gt: str, pred: str) -> bool:
    return ref_norm(gt) == ref_norm(pred)


def _strict(gt: str, pred: str) -> bool:
    p = strict_norm(pred)
    return bool(p) and p == strict_norm(gt)


def _choice_letter(gt: str, pred: str) -> bool:
    letter = next((ch.lower() for ch in pred.strip().strip(".") if ch in "ABCDE"), None)
    return letter is not None and letter in ref_norm(gt)


def vrsbench_rule(gt: str, pred: str) -> bool | None:
    """VRSBench's rule-based verdict, or None when its notebook would ask the LLM judge."""
    g, p = gt.lower(), pred.lower()
    if g in p:
        return True
    if g in VRSBENCH_CLOSED:
        return g == p
    return None


MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "contain": _contain,
    "contain_either": _contain_either,
    "exact": _exact,
    "strict": _strict,
    "choice_letter": _choice_letter,
}


def match(rule: str, gt: str, pred: str) -> bool:
    """Whether ``pred`` counts for ground truth ``gt`` under ``rule`` (one of :data:`MATCHERS`)."""
    try:
        fn = MATCHERS[rule]
    except KeyError:
        raise KeyError(f"unknown answer rule {rule!r}; known: {sorted(MATCHERS)}") from None
    return fn(str(gt), str(pred))


def accuracy_by(groups: dict[str, list[bool]]) -> dict:
    """``{group: {"correct", "total", "accuracy"}}`` plus ``"overall"`` (over all answers) and ``"mean"`` (the
    unweighted mean of the group accuracies)."""
    out = {g: {"correct": sum(v), "total": len(v), "accuracy": sum(v) / len(v) if v else None}
           for g, v in sorted(groups.items())}
    flat = [x for v in groups.values() for x in v]
    accs = [o["accuracy"] for o in out.values() if o["accuracy"] is not None]
    return {"groups": out, "correct": sum(flat), "total": len(flat),
            "accuracy": sum(flat) / len(flat) if flat else None, "mean": sum(accs) / len(accs) if accs else None}
