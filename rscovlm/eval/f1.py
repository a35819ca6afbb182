"""Precision, recall and F1 (paper 4.4.1: mF1), for score-free output too, under two definitions in use
(``f1_mode``, :data:`F1_MODES`).

``one-to-one`` (default)
    Matching at IoU threshold ``thr`` (``>`` under protocol ``dota``, ``>=`` under ``mmrotate1x``/``mmrotate``;
    IoUs and candidate pairs from :func:`rscovlm.eval.dota_map.compute_overlaps`): candidate (detection, ground
    truth) pairs that qualify are taken greedily by IoU, highest first (ties: lower detection index, then lower
    ground-truth index); a pair is accepted when neither side is used. So each ground truth is matched at most
    once and each detection at most once, independent of scores. Under protocol ``dota`` a detection whose best
    available partner is a difficult ground truth is ignored (neither TP nor FP) and the difficult object stays
    available to absorb other detections, as in the devkit; difficult objects are not positives.

    Per class: ``P = TP / (TP + FP)``, ``R = TP / positives``, ``F1 = 2PR / (P + R)`` (0 when ``P + R = 0``; P
    is 0 without detections). ``mF1`` averages F1 over the classes with positives; ``micro`` pools
    TP/FP/positives over those classes first. Detections with ``score < score_thr`` are dropped first.

``lmmrotate``
    LMMRotate's ``lmmrotate/modules/f1_metric.py`` (VisionXLab/mllm-mmrotate) exactly, whatever the protocol:
    boxes are minimum-area rectangles (``qbox2rbox``) with ``w, h`` clamped to ``>= 1e-3`` and centres to
    ``+-1e7`` (``rbbox_overlaps``); labels are indices into the class list (the vocabulary's order);
    ``C = max ground-truth label + 1`` (from the ground truth only), and a ``(C+1) x (C+1)`` float32 confusion
    matrix whose last row/column is the background. Per image, for every detection with ``score >= score_thr``
    and every ground truth of ANY class with ``IoU >= thr`` (float32): ``cm[gt label, det label] += 1`` - so
    duplicates all count on the diagonal and a detection overlapping several objects counts several times;
    a detection that overlaps nothing adds ``cm[background, det label]``; afterwards every ground truth that
    no detection of its own class reached adds ``cm[gt label, background]``. ``TP = diag``, ``FP = column sum
    - TP``, ``FN = row sum - TP`` over all ``C + 1`` entries; ``precision = TP / (TP + FP)`` and ``recall = TP /
    (TP + FN)`` (a zero denominator counts as 1); ``P`` and ``R`` are their means over the ``C + 1`` entries
    (background included, classes absent from both sides count 0), and ``mF1 = 2PR / (P + R)`` - the F1 of the
    means, not the mean of per-class F1s. Faithful quirks: a detection of label ``C`` lands in the background
    column (its background-FP count lands on the background diagonal); a label above ``C`` is an error here
    (an ``IndexError`` there); where ``P + R = 0`` the reference returns NaN (0/0), reported here as 0 with
    ``"nan": true``. The script's optional NMS (``nms_iou_thr``, off by default) is not reproduced.
"""

from __future__ import annotations

import numpy as np

from rscovlm.eval.dota_data import Detections, GroundTruth
from rscovlm.eval.names import F1_MODES
from rscovlm.eval.dota_map import (
    ClassOverlaps, check_iou_thr, check_score_thr, compute_overlaps, load_pair, min_area_rects, rects_to_quads,
)
from rscovlm.geometry.iou import _hbb_of, hbb_overlap_pairs, poly_areas, poly_intersection_pairs



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


def check_f1_mode(mode: str) -> str:
    if mode not in F1_MODES:
        raise ValueError(f"unknown F1 mode {mode!r}; expected one of {list(F1_MODES)}")
    return mode


def _flat(parts: dict, label_of: dict[str, int], with_scores: bool):
    quads, image, label, score = [np.zeros((0, 8))], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for c, d in parts.items():
        if len(d.quads) == 0:
            continue
        quads.append(np.asarray(d.quads, np.float64).reshape(-1, 8))
        image.append(np.asarray(d.image, np.int64))
        label.append(np.full(len(d.quads), label_of[c], np.int64))
        if with_scores:
            score.append(np.ones(len(d.quads)) if d.scores is None else np.asarray(d.scores, np.float64))
    return np.concatenate(quads), np.concatenate(image), np.concatenate(label), np.concatenate(score)


def _clamped_rect_quads(quads: np.ndarray) -> np.ndarray:
    """``rbbox_overlaps``'s boxes: min-area rectangles, ``w, h >= 1e-3``, centres within ``+-1e7``."""
    obb = min_area_rects(quads)
    obb[:, 2:4] = np.maximum(obb[:, 2:4], 1e-3)
    obb[:, :2] = np.clip(obb[:, :2], -1e7, 1e7)
    return rects_to_quads(obb)


def lmmrotate_confusion(gt: GroundTruth, dets: Detections, classes: list[str], *, iou_thr: float = 0.5,
                        score_thr: float = 0.0) -> tuple[np.ndarray, int]:
    """LMMRotate's confusion matrix (module docstring) -> ``(cm (C+1, C+1) float32, C)``; ``classes`` gives the
    label indices."""
    label_of = {c: i for i, c in enumerate(classes)}
    for where, names in (("ground truth", gt.classes), ("detections", dets.classes)):
        unknown = sorted(c for c, v in names.items() if c not in label_of and len(v.quads))
        if unknown:
            raise ValueError(f"{where} of class(es) {unknown} outside the label list {list(classes)}")
    gq, gi, gl, _ = _flat(gt.classes, label_of, False)
    dq, di, dl, ds = _flat(dets.classes, label_of, True)
    n_cls = int(gl.max()) + 1 if len(gl) else 0  # get_num_classes: from ground-truth labels only
    if len(dl) and dl.max() > n_cls:
        bad = classes[int(dl.max())]
        raise ValueError(f"detections of class {bad!r} (label {int(dl.max())}) exceed the confusion matrix: its size "
                         f"comes from the ground truth, whose highest label is {n_cls - 1} (LMMRotate's "
                         f"f1_metric.py raises an IndexError here); evaluate with the classes present in the ground "
                         f"truth or with --f1-mode one-to-one")
    kept = ds.astype(np.float32) >= np.float32(score_thr)  # float32 scores as in the reference's tensors
    dq, di, dl = dq[kept], di[kept], dl[kept]
    g_rect, d_rect = _clamped_rect_quads(gq), _clamped_rect_quads(dq)
    if iou_thr > 0:
        pd, pg = hbb_overlap_pairs(_hbb_of(d_rect), _hbb_of(g_rect), groups_a=di, groups_b=gi)
    else:  # every pair of an image qualifies at threshold 0
        pd, pg = (np.zeros(0, np.int64),) * 2
        if len(dq) and len(gq):
            same = di[:, None] == gi[None, :]
            pd, pg = np.nonzero(same)
    iou = np.zeros(len(pd))
    if len(pd):
        inter = poly_intersection_pairs(d_rect[pd], g_rect[pg])
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (poly_areas(d_rect)[pd] + poly_areas(g_rect)[pg] - inter)
    ok = iou.astype(np.float32) >= np.float32(iou_thr)
    pd, pg = pd[ok], pg[ok]
    cm = np.zeros((n_cls + 1, n_cls + 1), np.float64)
    np.add.at(cm, (gl[pg], dl[pd]), 1)
    det_match = np.bincount(pd, minlength=len(dl))
    np.add.at(cm, (-1, dl[det_match == 0]), 1)
    same = gl[pg] == dl[pd]
    reached = np.bincount(pg[same], minlength=len(gl))
    np.add.at(cm, (gl[reached == 0], -1), 1)
    return cm.astype(np.float32), n_cls


def lmmrotate_f1(gt: GroundTruth, dets: Detections, classes: list[str], *, iou_thr: float = 0.5,
                 score_thr: float = 0.0) -> dict:
    """LMMRotate's mF1 (module docstring): ``{"mF1", "precision", "recall" (the means over C+1 entries),
    "num_classes", "labels", "per_label": {name: {precision, recall, tp, fp, fn}}, "confusion_matrix", "nan"}``."""
    iou_thr, score_thr = check_iou_thr(iou_thr), check_score_thr(score_thr)
    cm, n_cls = lmmrotate_confusion(gt, dets, classes, iou_thr=iou_thr, score_thr=score_thr)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    one = np.float32(1)
    precision = tp / np.where(tp + fp == 0, one, tp + fp)
    recall = tp / np.where(tp + fn == 0, one, tp + fn)
    p, r = precision.mean(dtype=np.float32), recall.mean(dtype=np.float32)
    nan = bool(p + r == 0)
    f1 = np.float32(0) if nan else np.float32(2) * (p * r) / (p + r)
    labels = list(classes[:n_cls]) + ["background"]
    per_label = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "tp": int(tp[i]),
                        "fp": int(fp[i]), "fn": int(fn[i])} for i, name in enumerate(labels)}
    return {"mF1": float(f1), "precision": float(p), "recall": float(r), "num_classes": n_cls, "labels": labels,
            "per_label": per_label, "confusion_matrix": cm.astype(int).tolist(), "nan": nan, "iou_thr": iou_thr,
            "score_thr": score_thr, "f1_mode": "lmmrotate"}


def label_list(gt: GroundTruth, dets: Detections, categories=None) -> list[str]:
    """Label indices for ``lmmrotate``: the vocabulary's order when given, else the sorted class names seen."""
    if categories is not None:
        return list(categories.classes)
    return sorted(set(gt.classes) | {c for c, d in dets.classes.items() if len(d.quads)})


def eval_dota_f1(gt, dets, *, score_thr: float = 0.0, iou_thr: float = 0.5, protocol: str = "mmrotate1x",
                 f1_mode: str = "one-to-one", skip_invalid: bool = False, unknown_images: str = "error",
                 categories=None, unknown_gt_classes: str = "error") -> dict:
    """mF1 of a Task1 folder (or loaded detections) against labelTxt ground truth. Also ``rscovlm eval
    dota-f1``. ``f1_mode``: ``one-to-one`` (under ``protocol``) or ``lmmrotate`` (its own fixed rules; labels
    in the order of ``categories``, else sorted names). ``categories``/``unknown_gt_classes``: the ground-truth
    vocabulary check of :func:`rscovlm.eval.dota_map.eval_dota`."""
    from rscovlm.eval.dota_data import resolve_categories

    check_iou_thr(iou_thr)  # before reading the folders
    check_score_thr(score_thr)
    check_f1_mode(f1_mode)
    categories = resolve_categories(categories)
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    if f1_mode == "lmmrotate":
        out = lmmrotate_f1(gt, dets, label_list(gt, dets, categories), iou_thr=iou_thr, score_thr=score_thr)
    else:
        out = f1_from_overlaps(compute_overlaps(gt, dets, protocol), iou_thr=iou_thr, score_thr=score_thr)
        out["f1_mode"] = "one-to-one"
    out.update(protocol=protocol, skipped_lines=len(gt.skipped) + len(dets.skipped),
               dropped_unknown_image=dets.dropped_unknown_image, missing_det_files=list(dets.missing_files),
               dropped_unknown_gt_classes=dict(gt.dropped_unknown_classes))
    return out
