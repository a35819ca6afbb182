"""Confidence-free AP (AP_nc, paper 3.5.2 / 4.4.1) and its threshold sweep.

AP_nc at score threshold ``t``: drop the detections with ``score < t``, give the rest uniform random scores,
compute AP (under the chosen protocol and AP mode), repeat over seeds, report mean and std (population std,
``ddof=0``) over seeds. Detections without scores (VLM output) are randomized directly (``t`` does nothing).

Random scores: for seed ``s`` and class ``c`` one uniform number per detection of the class (in input order)
is drawn from ``numpy.random.default_rng([s, crc32(c)])``; the detections kept at threshold ``t`` use their own
numbers. So every seed is reproducible on its own, classes do not depend on each other, and all thresholds of a
sweep see the same draw (common random numbers: the curve over thresholds is smooth, not seed noise).
Uniform draws never tie (probability 0), so ranking is well defined; stable order is used regardless.

Metric names: ``AP_nc50`` (IoU 0.5), ``AP_nc75``, and ``AP_nc50:95`` (mean over IoU 0.50:0.05:0.95, the
COCO-style average). For each seed the class APs are averaged over the IoU thresholds of the metric, then over
the classes with ground truth; mean/std are then taken over seeds.

Speed: IoUs come from :func:`rscovlm.eval.dota_map.compute_overlaps`, once. Matching is vectorized: a
detection is a TP at threshold ``t`` iff it qualifies, its ground truth is a positive, it is kept
(``score >= t``) and every earlier detection (in random order) qualifying for the same ground truth is dropped
(``score < t``), i.e. the largest score among those earlier ones (its "blocker") is below ``t``. With blockers
computed once per (class, seed, IoU threshold), all score thresholds are one ``(T, n)`` array operation.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from rscovlm.eval.ap import average_precision
from rscovlm.eval.dota_map import ClassOverlaps, check_score_thr

DEFAULT_SCORE_THRS = np.round(np.arange(0.0, 0.96, 0.05), 2)  # 0.00, 0.05, ..., 0.95
DEFAULT_IOU_SPEC = "0.5,0.75,0.5:0.95"


def parse_iou_spec(spec: str | list) -> dict[str, list[float]]:
    """``"0.5,0.75,0.5:0.95"`` -> ``{"AP_nc50": [0.5], "AP_nc75": [0.75], "AP_nc50:95": [0.5, ..., 0.95]}``.

    ``a:b`` is ``a, a+0.05, ..., b``; ``a:b:step`` sets the step."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: dict[str, list[float]] = {}
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            parts = [float(p) for p in item.split(":")]
        except ValueError:
            raise ValueError(f"IoU threshold {item!r} is not a number or a range a:b[:step]") from None
        if not all(math.isfinite(p) for p in parts):
            raise ValueError(f"IoU threshold {item!r} is not finite")
        if len(parts) == 1:
            thrs = [parts[0]]
            name = f"AP_nc{round(parts[0] * 100):d}"
        elif len(parts) in (2, 3):
            lo, hi = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 0.05
            if not (step > 0 and hi >= lo):
                raise ValueError(f"IoU range {item!r} needs lo <= hi and a positive step")
            thrs = [round(v, 10) for v in np.arange(lo, hi + step / 2, step)]
            name = f"AP_nc{round(lo * 100):d}:{round(hi * 100):d}"
        else:
            raise ValueError(f"IoU threshold {item!r}: expected a, a:b or a:b:step")
        if not all(0.0 <= t <= 1.0 for t in thrs):
            raise ValueError(f"IoU thresholds of {item!r} must lie in [0, 1]")
        out[name] = thrs
    if not out:
        raise ValueError("no IoU thresholds given")
    return out


def class_uniform_scores(cls: str, seed: int, n: int) -> np.ndarray:
    """The seed's random scores of class ``cls`` (see module docstring)."""
    return np.random.default_rng([int(seed), zlib.crc32(cls.encode("utf-8"))]).random(n)


def _levels(scores: np.ndarray | None, n: int, score_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense score levels of the detections and, per threshold, the first level kept (``score >= t``)."""
    if scores is None:
        return np.zeros(n, np.int64), np.zeros(len(score_thrs), np.int64)
    uniq = np.unique(scores)
    return np.searchsorted(uniq, scores), np.searchsorted(uniq, score_thrs, side="left")


def _blockers(cand: np.ndarray, j: np.ndarray, level: np.ndarray, n_levels: int) -> np.ndarray:
    """For detections in random order: the highest level among earlier candidates with the same ``j`` (-1: none).
    ``cand`` marks candidates; non-candidates get -1."""
    out = np.full(len(cand), -1, np.int64)
    idx = np.flatnonzero(cand)
    if len(idx) < 2:
        return out
    srt = idx[np.argsort(j[idx], kind="stable")]  # grouped by GT, random order inside each group
    g = j[srt]
    start = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(start) - 1
    big = n_levels + 1
    run = np.maximum.accumulate(gid * big + level[srt] + 1)
    prev = np.r_[-1, run[:-1]]
    blk = np.where(start, -1, prev - gid * big - 1)
    out[srt] = blk
    return out


def ap_nc_grid(ov: ClassOverlaps, cls: str, seeds, iou_thrs, score_thrs, ap_mode: str = "11point") -> np.ndarray:
    """AP of one class for every (score threshold, seed, IoU threshold) -> ``(T, S, I)``. The class must have
    positives."""
    score_thrs = np.asarray(score_thrs, dtype=np.float64)
    n = ov.num_det
    out = np.zeros((len(score_thrs), len(seeds), len(iou_thrs)), dtype=np.float64)
    if n == 0:
        return out
    level, first_kept = _levels(ov.scores, n, score_thrs)
    n_levels = int(level.max()) + 1
    ignore = ov.gt_ignore[np.maximum(ov.jmax, 0)] if ov.num_gt else np.zeros(n, bool)
    dtype = ov.protocol.dtype
    kept = level[None, :] >= first_kept[:, None]  # (T, n) in input order
    for s, seed in enumerate(seeds):
        perm = np.argsort(-class_uniform_scores(cls, seed, n), kind="stable")
        lv, jm, ovs, ign_all = level[perm], ov.jmax[perm], ov.ovmax[perm], ignore[perm]
        kept_p = kept[:, perm]
        for i, thr in enumerate(iou_thrs):
            q = ov.protocol.qualifies(ovs, thr)
            ign = q & ign_all
            cand = q & ~ign
            blk = _blockers(cand, jm, lv, n_levels)
            tp = kept_p & cand[None, :] & (blk[None, :] < first_kept[:, None])
            fp = kept_p & ~ign[None, :] & ~tp
            out[:, s, i] = average_precision(np.cumsum(tp, axis=1), np.cumsum(fp, axis=1), ov.num_pos, ap_mode,
                                             dtype)
    return out


@dataclass
class ApNcTable:
    """AP for every (score threshold, seed, IoU threshold, class with positives): ``ap`` is ``(T, S, I, C)``."""

    score_thrs: list[float]
    seeds: list[int]
    iou_thrs: list[float]
    classes: list[str]
    ap: np.ndarray
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def metric_per_seed(self, name: str) -> np.ndarray:
        """``(T, S)``: mean over classes of the mean over the metric's IoU thresholds."""
        idx = [self.iou_thrs.index(t) for t in self.metrics[name]]
        if not self.classes:
            return np.zeros((len(self.score_thrs), len(self.seeds)))
        return self.ap[:, :, idx, :].mean(axis=2).mean(axis=2)

    def summary(self, t_index: int) -> dict:
        """``{metric: {"mean", "std", "per_seed"}}`` and per-class means at score threshold ``t_index``."""
        out = {}
        for name in self.metrics:
            per_seed = self.metric_per_seed(name)[t_index]
            out[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std()),
                         "per_seed": [float(v) for v in per_seed]}
        per_class = {}
        for c_i, c in enumerate(self.classes):
            per_class[c] = {}
            for name, thrs in self.metrics.items():
                idx = [self.iou_thrs.index(t) for t in thrs]
                v = self.ap[t_index][:, idx, c_i].mean(axis=1)  # (S,)
                per_class[c][name] = {"mean": float(v.mean()), "std": float(v.std())}
        return {"metrics": out, "per_class": per_class}


def ap_nc_table(overlaps: dict[str, ClassOverlaps], *, score_thrs=(0.0,), seeds=10, iou_spec=DEFAULT_IOU_SPEC,
                ap_mode: str = "11point") -> ApNcTable:
    """AP_nc over the classes with positives for every score threshold, seed and IoU threshold needed by
    ``iou_spec``. ``seeds`` is a count (seeds ``0..n-1``) or an explicit list."""
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("AP_nc needs at least one seed")
    metrics = parse_iou_spec(iou_spec)
    iou_thrs = sorted({t for thrs in metrics.values() for t in thrs})
    classes = [c for c, ov in overlaps.items() if ov.num_pos > 0]
    score_thrs = [check_score_thr(t) for t in np.atleast_1d(score_thrs)]
    ap = np.zeros((len(score_thrs), len(seed_list), len(iou_thrs), len(classes)))
    for c_i, c in enumerate(classes):
        ap[..., c_i] = ap_nc_grid(overlaps[c], c, seed_list, iou_thrs, score_thrs, ap_mode)
    return ApNcTable(score_thrs, seed_list, iou_thrs, classes, ap, metrics)


def eval_dota_nc(gt, dets, *, score_thr: float = 0.0, seeds=10, iou_thrs: str = DEFAULT_IOU_SPEC,
                 ap_mode: str = "11point", protocol: str = "dota", skip_invalid: bool = False,
                 unknown_images: str = "error", categories=None, unknown_gt_classes: str = "error") -> dict:
    """AP_nc of a Task1 folder (or loaded detections) at one score threshold. Also ``rscovlm eval dota-nc``.

    Returns ``{"score_thr", "seeds", "iou_thrs", "classes", "metrics": {name: {"mean", "std", "per_seed"}},
    "per_class": {class: {name: {"mean", "std"}}}, "protocol", "ap_mode"}`` and what reading left out.
    ``categories``/``unknown_gt_classes``: the ground-truth vocabulary check of
    :func:`rscovlm.eval.dota_map.eval_dota`."""
    from rscovlm.eval.dota_map import compute_overlaps, load_pair

    check_score_thr(score_thr)  # before reading the folders
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    table = ap_nc_table(compute_overlaps(gt, dets, protocol), score_thrs=[score_thr], seeds=seeds,
                        iou_spec=iou_thrs, ap_mode=ap_mode)
    return {"score_thr": float(score_thr), "seeds": table.seeds, "iou_thrs": table.iou_thrs,
            "classes": table.classes, **table.summary(0), "protocol": protocol, "ap_mode": ap_mode,
            "skipped_lines": len(gt.skipped) + len(dets.skipped),
            "dropped_unknown_image": dets.dropped_unknown_image, "missing_det_files": list(dets.missing_files),
            "dropped_unknown_gt_classes": dict(gt.dropped_unknown_classes)}
