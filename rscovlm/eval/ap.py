"""Average precision from ranked true/false positives (PASCAL VOC rules, as the DOTA devkit and MMRotate use them).

Inputs are cumulative counts along the ranked detection list: ``tp[k]`` and ``fp[k]`` after the first ``k + 1``
detections. A detection that is neither (matched to an ignored ground truth) simply repeats the previous
point; repeated points change no AP. ``recall = tp / num_pos``; ``precision = tp / max(tp + fp, eps)``.

Modes (registry :data:`AP_MODES`):

* ``11point`` - VOC07: the mean over ``t in numpy.arange(0., 1.1, 0.1)`` of the best precision at recall
  ``>= t`` (0 when no point reaches ``t``). The thresholds are exactly that array, so ``0.3``, ``0.6``, ``0.7``
  are one ulp above the decimals (``0.30000000000000004``): a recall of exactly 0.3 does not reach the
  fourth threshold. The sum is accumulated in threshold order as the devkit does.
* ``area`` - the area under the precision envelope (precision made non-increasing from the right), summed
  over the recall steps.

All functions take ``(T, n)`` arrays (``T`` independent curves, e.g. score thresholds) and return ``(T,)``.
``dtype=np.float32`` reproduces MMRotate's arithmetic (float32 precision and AP).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)  # exactly the devkit's thresholds (see module docstring)

AP_MODES: dict[str, Callable[[np.ndarray, np.ndarray, type], np.ndarray]] = {}


def register_ap_mode(name: str):
    def deco(fn):
        AP_MODES[name] = fn
        return fn
    return deco


def _curves(tp: np.ndarray, fp: np.ndarray, num_pos: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    tp = np.atleast_2d(np.asarray(tp, dtype=np.float64))
    fp = np.atleast_2d(np.asarray(fp, dtype=np.float64))
    rec = tp / float(num_pos)  # float64 in both tools
    if dtype == np.float32:
        tp32 = tp.astype(np.float32)
        prec = tp32 / np.maximum(tp32 + fp.astype(np.float32), np.finfo(np.float32).eps)
    else:
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec


@register_ap_mode("11point")
def _ap_11point(rec: np.ndarray, prec: np.ndarray, dtype) -> np.ndarray:
    t_rows, n = rec.shape
    if n == 0:
        return np.zeros(t_rows, dtype=dtype)
    suffix_max = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(t_rows)
    ap = np.zeros(t_rows, dtype=dtype)
    for t in ELEVEN_POINTS:
        first = np.sum(rec < t, axis=1)  # recall is non-decreasing: rec >= t is the suffix from here
        p = np.where(first < n, suffix_max[rows, np.minimum(first, n - 1)], 0).astype(dtype)
        if dtype == np.float32:
            ap += p  # MMRotate: float32 sum, divided by 11 at the end
        else:
            ap = ap + p / 11.0
    if dtype == np.float32:
        ap /= np.float32(11)
    return ap


@register_ap_mode("area")
def _ap_area(rec: np.ndarray, prec: np.ndarray, dtype) -> np.ndarray:
    t_rows, n = rec.shape
    if n == 0:
        return np.zeros(t_rows, dtype=dtype)
    env = np.maximum.accumulate(prec[:, ::-1].astype(np.float64), axis=1)[:, ::-1]
    step = np.diff(rec, axis=1, prepend=0.0)
    return np.sum(step * env, axis=1).astype(dtype)


def average_precision(tp_cum, fp_cum, num_pos: int, mode: str = "11point", dtype=np.float64) -> np.ndarray:
    """AP of each row of the cumulative ``tp_cum`` / ``fp_cum`` (``(n,)`` or ``(T, n)``) -> ``(T,)``.

    ``num_pos`` must be positive (a class without positives has no AP; callers leave it out of the mean)."""
    if mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {mode!r}; expected one of {sorted(AP_MODES)}")
    if num_pos <= 0:
        raise ValueError("AP needs at least one positive ground-truth object")
    rec, prec = _curves(tp_cum, fp_cum, num_pos, dtype)
    return AP_MODES[mode](rec, prec, dtype)


@functools.lru_cache(maxsize=256)
def eleven_point_counts(num_pos: int) -> np.ndarray:
    """For each 11-point threshold, the least TP count whose recall ``tp / num_pos`` (float64, as computed for
    the curve) reaches it (read-only; cached)."""
    rec = np.arange(num_pos + 1) / float(num_pos)
    out = np.searchsorted(rec, ELEVEN_POINTS, side="left").astype(np.int64)
    out.flags.writeable = False
    return out


def average_precision_of_flags(tp, fp, num_pos: int, mode: str = "11point", dtype=np.float64) -> np.ndarray:
    """:func:`average_precision` of boolean TP/FP flags in ranking order (``(n,)`` or ``(T, n)``) -> ``(T,)``,
    the same numbers; 11-point AP is computed from the TP points alone (no pass per threshold)."""
    tp = np.atleast_2d(np.asarray(tp, bool))
    fp = np.atleast_2d(np.asarray(fp, bool))
    if mode == "11point" and num_pos > 0 and tp.shape[1] and int(tp.sum(axis=1).max()) <= num_pos:
        return _eleven_point_at_tps(tp, fp, num_pos, dtype)
    return average_precision(np.cumsum(tp, axis=1), np.cumsum(fp, axis=1), num_pos, mode, dtype)


def _eleven_point_at_tps(tp: np.ndarray, fp: np.ndarray, num_pos: int, dtype) -> np.ndarray:
    """11-point AP of ``(T, n)`` TP/FP flags from the TP points alone: recall rises only at a TP and the precision
    there is the largest until the next one, so the best precision at recall ``>= r`` is the largest over the TPs
    from the first one reaching ``r`` on (same values as :func:`rscovlm.eval.ap.average_precision`)."""
    t_rows = tp.shape[0]
    rows, cols = np.nonzero(tp)  # row-major: each row's TPs in ranking order
    row_start = np.searchsorted(rows, np.arange(t_rows))
    m = np.arange(1, len(rows) + 1) - row_start[rows]  # the TP's count: its column in the per-row table below
    f = np.cumsum(fp, axis=1, dtype=np.int32)[rows, cols]  # FPs up to it
    if dtype == np.float32:
        m32 = m.astype(np.float32)
        prec = m32 / np.maximum(m32 + f.astype(np.float32), np.finfo(np.float32).eps)
    else:
        mf = m.astype(np.float64)
        prec = mf / np.maximum(mf + f, np.finfo(np.float64).eps)
    table = np.zeros((t_rows, num_pos + 1), dtype=prec.dtype)
    table[rows, m - 1] = prec
    best = np.maximum.accumulate(table[:, ::-1], axis=1)[:, ::-1]  # best precision from the k-th TP on
    ap = np.zeros(t_rows, dtype=dtype)
    for m_t in eleven_point_counts(num_pos):
        p = best[:, max(int(m_t), 1) - 1].astype(dtype)
        if dtype == np.float32:
            ap += p
        else:
            ap = ap + p / 11.0
    if dtype == np.float32:
        ap /= np.float32(11)
    return ap


def voc_ap(rec, prec, mode: str = "11point") -> float:
    """AP of one recall/precision curve given directly (float64), for callers that already have them."""
    rec = np.atleast_2d(np.asarray(rec, dtype=np.float64))
    prec = np.atleast_2d(np.asarray(prec, dtype=np.float64))
    return float(AP_MODES[mode](rec, prec, np.float64)[0])
