"""Per-object confidence of a detection answer, from the token log-probabilities of its generation.

A VLM writes its detections as text with no score, so ordinary mAP (which ranks detections by score) cannot be
computed; AP_nc (paper 3.5.2) randomizes the ranking instead. With the generation's token log-probabilities
(:attr:`rscovlm.infer.Generation.token_logprobs`, ``logprobs=True`` on any backend) each object gets a score:

    confidence(object) = exp( mean over T(object) of log p(token) )

where ``T(object)`` are the generated tokens whose text overlaps the object's own text in the answer - its
coordinates and its label as written: one line ``x1,y1,...,x4,y4 label`` of the plain form, one ``{...}``
object of the JSON form, one ``label: (x,y),...`` box of the older forms - leaving out tokens that are only
whitespace (the line breaks between objects) and the end token. It is the geometric mean of the probabilities
of the tokens that wrote the object, in (0, 1]: independent of how many tokens the object took, 1 when every
token was certain, low when the model hesitated over a digit or the label. Log-probabilities are those of the
distribution the token was drawn from (the model's own under greedy decoding).

This score is written as the Task1 score of each detection, so VLM detections are ranked and scored with
ordinary mAP beside AP_nc (``rscovlm demo`` reports both; ``rscovlm detect`` writes it).

Objects whose tokens cannot be located (the answer's token texts are unknown or do not add up to the answer,
e.g. a server that returns no log-probs) get no confidence (``nan``); callers say how many.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from rscovlm.geometry.boxes import BoxKind, Frame
from rscovlm.protocol.categories import CategorySet, spelling_key
from rscovlm.protocol.detection import ParseResult, parse_detections, synonym_lookup
from rscovlm.protocol.readers import Candidate, read_answer


def candidate_spans(text: str, candidates: Sequence[Candidate]) -> list[tuple[int, int] | None]:
    """The ``(start, end)`` character span of each candidate's text in ``text`` (candidates are in text order;
    each is searched after the previous one), or None when its text is not found verbatim (a label the reader
    carried over from an earlier box is tried without its ``label:`` prefix)."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for cand in candidates:
        raw = cand.raw.strip()
        at = text.find(raw, cursor) if raw else -1
        if at < 0 and cand.label and raw.startswith(f"{cand.label}: "):
            raw = raw[len(cand.label) + 2:]
            at = text.find(raw, cursor)
        if at < 0:
            spans.append(None)
            continue
        spans.append((at, at + len(raw)))
        cursor = at + len(raw)
    return spans


def span_confidence(span: tuple[int, int], tokens: Sequence[str], logprobs: Sequence[float],
                    offsets: np.ndarray | None = None) -> float:
    """``exp(mean log-prob)`` of the non-whitespace tokens overlapping ``span`` (nan when there are none).
    ``offsets``: the tokens' start offsets (``n + 1`` values), computed when not given."""
    if offsets is None:
        offsets = token_offsets(tokens)
    start, end = span
    lo = int(np.searchsorted(offsets, start, side="right")) - 1
    values = []
    for i in range(max(lo, 0), len(tokens)):
        if offsets[i] >= end:
            break
        if offsets[i + 1] > start and tokens[i].strip():
            values.append(logprobs[i])
    return math.exp(sum(values) / len(values)) if values else math.nan


def token_offsets(tokens: Sequence[str]) -> np.ndarray:
    """Start offset of each token in the joined text, plus the total length (``n + 1`` values)."""
    return np.concatenate([[0], np.cumsum([len(t) for t in tokens], dtype=np.int64)])


def _kept(cand: Candidate, kind: BoxKind | None, categories: CategorySet | None, lookup: dict, classes: set) -> bool:
    """Whether :func:`parse_detections` turns ``cand`` into an object (the same rules, in the same order)."""
    label = cand.label.strip() if cand.label is not None else ""
    if cand.kind is None or not label or (kind is not None and cand.kind != kind):
        return False
    canonical = categories.canonical(label) if categories is not None else spelling_key(label)
    if canonical is None or (categories is None and lookup and canonical not in classes):
        if lookup.get(spelling_key(label)) is None and categories is not None:
            return False
    return True


def detections_with_confidence(text: str, tokens: Sequence[str] | None, logprobs: Sequence[float] | None, *,
                               kind: BoxKind | None = None, frame: Frame | None = None,
                               categories: CategorySet | None = None,
                               synonyms: Mapping[str, Sequence[str]] | None = None
                               ) -> tuple[ParseResult, np.ndarray]:
    """:func:`~rscovlm.protocol.detection.parse_detections` of ``text`` (same arguments) and the confidence of
    each of its objects (module docstring; ``nan`` where it cannot be computed, all ``nan`` without tokens)."""
    result = parse_detections(text, kind, frame, categories, synonyms)
    scores = np.full(len(result.objects), np.nan)
    if not len(result.objects) or tokens is None or logprobs is None or "".join(tokens) != text:
        return result, scores
    lookup = synonym_lookup(synonyms, categories) if synonyms else {}
    classes = set(lookup.values())
    candidates = read_answer(text).candidates
    kept = [c for c in candidates if _kept(c, kind, categories, lookup, classes)]
    if len(kept) != len(result.objects):  # the reader and this module disagree: score nothing rather than wrongly
        return result, scores
    spans = dict(zip(map(id, candidates), candidate_spans(text, candidates)))
    offsets = token_offsets(tokens)
    for i, cand in enumerate(kept):
        span = spans[id(cand)]
        if span is not None:
            scores[i] = span_confidence(span, tokens, logprobs, offsets)
    return result, scores
