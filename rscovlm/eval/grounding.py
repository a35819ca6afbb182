"""Visual grounding Acc@0.5 (GeoGround protocol).

The first predicted box, mapped back to original pixels, is compared with the ground-truth box by IoU in
continuous coordinates (``(x2 - x1) * (y2 - y1)``, no ``+1`` pixel terms - those inflate published numbers);
a hit needs IoU strictly greater than the threshold; an answer without a readable box is a miss.
"""

from __future__ import annotations

import numpy as np

from rscovlm.geometry.boxes import Boxes


def hbb_iou_aligned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row ``i`` of ``a`` with row ``i`` of ``b``; both ``(N, 4)`` x1,y1,x2,y2 in continuous pixels."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def grounding_accuracy(predictions: list[Boxes | None], targets: Boxes, iou_thr: float = 0.5) -> dict:
    """``predictions[i]`` are the boxes read from answer ``i`` in the ORIGINAL frame (``None`` or empty when the
    answer held none); ``targets`` the ``(N, 4)`` hbb ground truth. Returns ``{"acc", "hits", "n",
    "unparsed", "ious"}``."""
    targets = targets.to("hbb")
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    first = np.full((len(targets), 4), np.nan)
    readable = np.zeros(len(targets), dtype=bool)
    for i, pred in enumerate(predictions):
        if pred is not None and len(pred):
            first[i] = pred.to("hbb").normalized().data[0]
            readable[i] = True
    ious = np.zeros(len(targets))
    if readable.any():
        ious[readable] = hbb_iou_aligned(first[readable], targets.normalized().data[readable])
    hits = int(np.sum(ious > iou_thr))
    n = len(targets)
    return {"acc": hits / n if n else 0.0, "hits": hits, "n": n, "unparsed": int((~readable).sum()),
            "ious": ious.tolist()}
