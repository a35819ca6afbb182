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


def voc_ap(rec, prec, mode: str = "11point") -> float:
    """AP of one recall/precision curve given directly (float64), for callers that already have them."""
    rec = np.atleast_2d(np.asarray(rec, dtype=np.float64))
    prec = np.atleast_2d(np.asarray(prec, dtype=np.float64))
    return float(AP_MODES[mode](rec, prec, np.float64)[0])
