"""Precision, recall and F1 with one-to-one matching (paper 4.4.1: mF1), for score-free output too.

Matching at IoU threshold ``thr`` (``>`` under protocol ``dota``, ``>=`` under ``mmrotate``; IoUs and candidate
pairs from :func:`rscovlm.eval.dota_map.compute_overlaps`): candidate (detection, ground truth) pairs that
qualify are taken greedily by IoU, highest first (ties: lower detection index, then lower ground-truth index);
a pair is accepted when neither side is used. So each ground truth is matched at most once and each detection at
most once, independent of scores. Under protocol ``dota`` a detection whose best available partner is a
difficult ground truth is ignored (neither TP nor FP) and the difficult object stays available to absorb other
detections, as in the devkit; difficult objects are not positives.

Per class: ``P = TP / (TP + FP)``, ``R = TP / positives``, ``F1 = 2PR / (P + R)`` (0 when ``P + R = 0``; P is 0
without detections). ``mF1`` averages F1 over the classes with positives; ``micro`` pools TP/FP/positives over
those classes first. Detections with ``score < score_thr`` are dropped first.
"""

from __future__ import annotations

import numpy as np

from rscovlm.eval.dota_map import ClassOverlaps, check_iou_thr, check_score_thr, compute_overlaps, load_pair


def one_to_one_counts(ov: ClassOverlaps, iou_thr: float, kept: np.ndarray | None = None) -> tuple[int, int, int]:
    """``(tp, fp, ignored)`` of one class (see module docstring); ``kept`` masks the detections considered."""
    n = ov.num_det
    kept = np.ones(n, bool) if kept is None else kept
    ok = ov.protocol.qualifies(ov.pair_iou, iou_thr)
    ok &= kept[ov.pair_det] if len(ov.pair_det) else ok
    d, g, v = ov.pair_det[ok], ov.pair_gt[ok], ov.pair_iou[ok]
    order = np.lexsort((g, d, -v))
    det_used = np.zeros(n, bool)
    det_ignored = np.zeros(n, bool)
    gt_used = np.zeros(ov.num_gt, bool)
    for di, gi in zip(d[order].tolist(), g[order].tolist()):
        if det_used[di] or gt_used[gi]:
            continue
        det_used[di] = True
        if ov.gt_ignore[gi]:
            det_ignored[di] = True
        else:
            gt_used[gi] = True
    if ov.protocol.zero_iou_default and iou_thr <= 0:
        # MMRotate's rule: at threshold 0 an unmatched detection in an image with ground truth matches its first
        free = kept & ~det_used & (ov.jmax >= 0)
        for di in np.flatnonzero(free).tolist():
            gi = int(ov.jmax[di])
            if not gt_used[gi]:
                gt_used[gi] = True
                det_used[di] = True
    tp = int(gt_used.sum())
    ignored = int(det_ignored.sum())
    fp = int(kept.sum()) - tp - ignored
    return tp, fp, ignored


def _prf(tp: int, fp: int, npos: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / npos if npos else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "num_gt": npos}


def f1_from_overlaps(overlaps: dict[str, ClassOverlaps], *, iou_thr: float = 0.5, score_thr: float = 0.0) -> dict:
    """``{"mF1", "classes", "per_class": {c: {precision, recall, f1, tp, fp, num_gt}}, "micro": {...}}``."""
    iou_thr, score_thr = check_iou_thr(iou_thr), check_score_thr(score_thr)
    per_class = {}
    tot_tp = tot_fp = tot_pos = 0
    for c, ov in overlaps.items():
        if ov.num_pos == 0:
            continue
        kept = np.ones(ov.num_det, bool) if ov.scores is None else ov.scores >= score_thr
        tp, fp, _ = one_to_one_counts(ov, iou_thr, kept)
        per_class[c] = _prf(tp, fp, ov.num_pos)
        tot_tp, tot_fp, tot_pos = tot_tp + tp, tot_fp + fp, tot_pos + ov.num_pos
    classes = list(per_class)
    mf1 = float(np.mean([per_class[c]["f1"] for c in classes])) if classes else 0.0
    return {"mF1": mf1, "classes": classes, "per_class": per_class, "micro": _prf(tot_tp, tot_fp, tot_pos),
            "iou_thr": iou_thr, "score_thr": score_thr}


def eval_dota_f1(gt, dets, *, score_thr: float = 0.0, iou_thr: float = 0.5, protocol: str = "dota",
                 skip_invalid: bool = False, unknown_images: str = "error", categories=None,
                 unknown_gt_classes: str = "error") -> dict:
    """mF1 of a Task1 folder (or loaded detections) against labelTxt ground truth. Also ``rscovlm eval
    dota-f1``. ``categories``/``unknown_gt_classes``: the ground-truth vocabulary check of
    :func:`rscovlm.eval.dota_map.eval_dota`."""
    check_iou_thr(iou_thr)  # before reading the folders
    check_score_thr(score_thr)
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    out = f1_from_overlaps(compute_overlaps(gt, dets, protocol), iou_thr=iou_thr, score_thr=score_thr)
    out.update(protocol=protocol, skipped_lines=len(gt.skipped) + len(dets.skipped),
               dropped_unknown_image=dets.dropped_unknown_image, missing_det_files=list(dets.missing_files),
               dropped_unknown_gt_classes=dict(gt.dropped_unknown_classes))
    return out
