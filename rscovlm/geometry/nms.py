"""Greedy non-maximum suppression on quadrilaterals (used to merge patch detections into a large image).

Order: scores descending; equal scores keep their input order (a stable sort), so the result is reproducible.
A box is suppressed when its IoU (:func:`rscovlm.geometry.iou.poly_iou`, the DOTA devkit rule) with an
already kept box is strictly greater than ``iou_thr`` - the comparison of the devkit's ``py_cpu_nms_poly`` and of
mmcv's ``nms_rotated``."""

from __future__ import annotations

import numpy as np

from rscovlm.geometry.iou import hbb_overlap_pairs, poly_areas, poly_intersection_pairs

__all__ = ["poly_nms", "batched_poly_nms"]


def _check(quads, scores) -> tuple[np.ndarray, np.ndarray]:
    quads = np.asarray(quads, dtype=np.float64).reshape(-1, 8)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(quads) != len(scores):
        raise ValueError(f"{len(quads)} quads but {len(scores)} scores")
    return quads, scores


def poly_nms(quads, scores, iou_thr: float) -> np.ndarray:
    """Indices of the kept quads, in descending score order (ties: input order).

    ``quads`` is ``(N, 8)``, ``scores`` ``(N,)``. IoUs are computed once for all pairs whose enclosing boxes
    overlap, then the greedy pass walks the sorted list."""
    quads, scores = _check(quads, scores)
    n = len(quads)
    order = np.argsort(-scores, kind="stable")
    if n <= 1:
        return order
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    hbb = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    i, j = hbb_overlap_pairs(hbb, hbb)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    sel = rank[i] < rank[j]  # each unordered pair once, from the better-ranked box
    i, j = i[sel], j[sel]
    if len(i):
        inter = poly_intersection_pairs(quads[i], quads[j])
        area = poly_areas(quads)
        union = area[i] + area[j] - inter
        iou = np.zeros(len(i))
        np.divide(inter, union, out=iou, where=union != 0)
        hit = iou > iou_thr
        i, j = i[hit], j[hit]
    # neighbours (worse-ranked boxes it would suppress) of every box, as CSR
    srt = np.argsort(i, kind="stable")
    i, j = i[srt], j[srt]
    start = np.searchsorted(i, np.arange(n + 1))
    suppressed = np.zeros(n, bool)
    keep = []
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        lo, hi = start[idx], start[idx + 1]
        if hi > lo:
            suppressed[j[lo:hi]] = True
    return np.asarray(keep, dtype=np.int64)


def batched_poly_nms(quads, scores, labels, iou_thr: float) -> np.ndarray:
    """:func:`poly_nms` within each label separately; kept indices in descending score order (ties: input
    order). ``labels`` is any ``(N,)`` sequence of hashable class ids."""
    quads, scores = _check(quads, scores)
    labels = np.asarray(labels)
    if len(labels) != len(quads):
        raise ValueError(f"{len(quads)} quads but {len(labels)} labels")
    kept = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        kept.append(idx[poly_nms(quads[idx], scores[idx], iou_thr)])
    if not kept:
        return np.zeros(0, np.int64)
    kept = np.concatenate(kept)
    kept.sort()
    return kept[np.argsort(-scores[kept], kind="stable")]
