"""Visual grounding Acc@0.5 (GeoGround protocol).

The first predicted box, mapped back to original pixels, is compared with the ground-truth box by IoU in
continuous coordinates (``(x2 - x1) * (y2 - y1)``, no ``+1`` pixel terms - those inflate published numbers);
a hit needs IoU strictly greater than the threshold; an answer without a readable box is a miss.
"""

from __future__ import annotations

import numpy as np

from rscovlm.geometry.boxes import Boxes
from rscovlm.geometry.iou import hbb_iou_pairs


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
        ious[readable] = hbb_iou_pairs(first[readable], targets.normalized().data[readable])
    hits = int(np.sum(ious > iou_thr))
    n = len(targets)
    return {"acc": hits / n if n else 0.0, "hits": hits, "n": n, "unparsed": int((~readable).sum()),
            "ious": ious.tolist()}
