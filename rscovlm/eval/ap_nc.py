"""Confidence-free AP (AP_nc, paper 3.5.2 / 4.4.1), the reference's all-ones AP, and the threshold sweep.

Score modes (``score_mode``, :data:`SCORE_MODES`) - what the detections kept at score threshold ``t`` are ranked by:

``random`` (AP_nc, the default): drop the detections with ``score < t``, give the rest uniform random scores,
  compute AP (under the chosen protocol and AP mode), repeat over seeds, report mean and std (population std,
  ``ddof=0``) over seeds. For seed ``s`` and class ``c`` one uniform number per detection of the class (in input
  order) is drawn from ``numpy.random.default_rng([s, crc32(c)])``; the detections kept at ``t`` use their own
  numbers. So every seed is reproducible on its own, classes do not depend on each other, and all thresholds of
  a sweep see the same draw (common random numbers: the curve over thresholds is smooth, not seed noise).
  Uniform draws never tie (probability 0), so the tie order does not matter.
``ones``: the reference's RSCoVLM evaluation (``eval/metric/dense_det.py`` gives every parsed object score 1.0).
  Detections with ``score > t`` are kept (strict, as LMMRotate's ``map_nc_robustness_cal.py`` hack ``"1"`` does;
  score-free output keeps everything), all get score 1.0, and the ranking is entirely the tie order (``ties``):
  ``stable`` (default) keeps the input order - for model responses the line order of the responses file, then
  the object order inside each answer, i.e. the order of the reference's results list when the file is in its
  order -; ``reference`` applies numpy's default ``argsort`` as MMRotate's ``eval_rbbox_map`` does on this
  machine. On NumPy 2.4 (x86-64) ``argsort`` of an all-equal array returns the identity, so both agree there;
  numpy's older introsort reorders equal keys of arrays longer than 16, so the reference's own order was
  machine-dependent and only the stable order is reproducible. One run, no seeds; metric names ``AP50``,
  ``AP75``, ``AP50:95`` (it is plain AP, not AP_nc).
``random-per-image``: LMMRotate's AP_nc (``playground/map_nc_robustness_cal.py``): keep ``score > t`` (strict),
  then, per image, ``torch.manual_seed(seed)`` and ``torch.rand_like(scores)`` over the image's kept
  detections of all classes in its prediction order - re-seeded for every image, so the k-th detection of every
  image gets the same score. Drawn here without torch, bit-identical to torch's CPU generator (MT19937, 24-bit
  floats; :func:`torch_rand`). The prediction order is each answer's object order for model responses
  (``ClassDets.order``) and, for Task1 files (which do not keep the detector's output order), score descending
  (MMDetection's output order), ties in class order then file order. Ties across images are systematic, so
  ``ties`` matters: ``reference`` reproduces LMMRotate's numbers on the same machine, ``stable`` is portable.
  Default seeds: LMMRotate's ten (:data:`LMMROTATE_SEEDS`). Its report's ``rnd:mean``/``rnd:std`` are not the
  mean/std over the seeds (:func:`lmmrotate_report`); both are given.

Metric names: ``AP_nc50`` (IoU 0.5), ``AP_nc75``, and ``AP_nc50:95`` (mean over IoU 0.50:0.05:0.95, the
COCO-style average). For each seed the class APs are averaged over the IoU thresholds of the metric, then over
the classes with ground truth; mean/std are then taken over seeds.

Speed: IoUs come from :func:`rscovlm.eval.dota_map.compute_overlaps`, once. In ``random`` mode matching is
vectorized: a detection is a TP at threshold ``t`` iff it qualifies, its ground truth is a positive, it is kept
(``score >= t``) and every earlier detection (in random order) qualifying for the same ground truth is dropped
(``score < t``), i.e. the largest score among those earlier ones (its "blocker") is below ``t``. With blockers
computed once per (class, seed, IoU threshold), all score thresholds are one ``(T, n)`` array operation. The
other modes rank once per (threshold, seed, class) and match per IoU threshold.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from rscovlm._compiled import native
from rscovlm.eval.ap import average_precision_of_flags, eleven_point_counts
from rscovlm.eval.names import LMMROTATE_SEEDS, SCORE_MODES
from rscovlm.eval.dota_map import (
    TIE_ORDERS, ClassOverlaps, check_score_thr, matches_in_rank, ranking,
)

DEFAULT_SCORE_THRS = np.round(np.arange(0.0, 0.96, 0.05), 2)  # 0.00, 0.05, ..., 0.95
DEFAULT_IOU_SPEC = "0.5,0.75,0.5:0.95"
DEFAULT_SEED_COUNT = 10


def metric_prefix(score_mode: str = "random") -> str:
    """``AP`` for the all-ones mode (plain AP), ``AP_nc`` for the random ones."""
    return "AP" if score_mode == "ones" else "AP_nc"


def check_score_mode(score_mode: str) -> str:
    if score_mode not in SCORE_MODES:
        raise ValueError(f"unknown score mode {score_mode!r}; expected one of {list(SCORE_MODES)}")
    return score_mode


def resolve_seeds(score_mode: str = "random", seeds=None) -> list[int] | None:
    """The seed list of a run: ``None`` for ``ones`` (nothing is drawn); else ``seeds`` as a count (``0..n-1``)
    or an explicit list, by default :data:`DEFAULT_SEED_COUNT` seeds for ``random`` and
    :data:`LMMROTATE_SEEDS` for ``random-per-image``."""
    check_score_mode(score_mode)
    if score_mode == "ones":
        return None
    if seeds is None:
        seeds = list(LMMROTATE_SEEDS) if score_mode == "random-per-image" else DEFAULT_SEED_COUNT
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"the number of seeds must be at least 1, got {seeds}")
        return list(range(int(seeds)))
    out = []
    for v in seeds:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"seeds must be non-negative integers, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError("AP_nc needs at least one seed")
    return out


def parse_seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (the CLI's ``--seed-list``); a ValueError names the bad item."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise ValueError(f"seed {item!r} is not a non-negative integer")
        out.append(int(item))
    if not out:
        raise ValueError("the seed list is empty")
    return out


def torch_rand(seed: int, n: int) -> np.ndarray:
    """What ``torch.manual_seed(seed); torch.rand(n)`` gives on the CPU (float32), computed with numpy: torch's CPU
    generator is MT19937 seeded like ``init_genrand(seed & 0xffffffff)``, and each float takes the low 24 bits of
    one 32-bit draw times ``2**-24``."""
    state = np.random.RandomState(int(seed) & 0xFFFFFFFF).get_state()
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": state[1], "pos": state[2]}}
    raw = bits.random_raw(int(n)).astype(np.uint64) if n else np.zeros(0, np.uint64)
    return (raw & np.uint64((1 << 24) - 1)).astype(np.float32) * np.float32(2.0 ** -24)


def parse_iou_spec(spec: str | list, prefix: str = "AP_nc") -> dict[str, list[float]]:
    """``"0.5,0.75,0.5:0.95"`` -> ``{"AP_nc50": [0.5], "AP_nc75": [0.75], "AP_nc50:95": [0.5, ..., 0.95]}``
    (names start with ``prefix``).

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
            name = f"{prefix}{round(parts[0] * 100):d}"
        elif len(parts) in (2, 3):
            lo, hi = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 0.05
            if not (step > 0 and hi >= lo):
                raise ValueError(f"IoU range {item!r} needs lo <= hi and a positive step")
            thrs = [round(v, 10) for v in np.arange(lo, hi + step / 2, step)]
            name = f"{prefix}{round(lo * 100):d}:{round(hi * 100):d}"
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
    positives. One random ranking per seed serves every IoU and score threshold; the AP of all score thresholds
    comes from one pass over it (:func:`ap_nc_curves`)."""
    score_thrs = np.asarray(score_thrs, dtype=np.float64)
    n = ov.num_det
    out = np.zeros((len(score_thrs), len(seeds), len(iou_thrs)), dtype=np.float64)
    if n == 0:
        return out
    level, first_kept = _levels(ov.scores, n, score_thrs)
    ignore = ov.gt_ignore[np.maximum(ov.jmax, 0)] if ov.num_gt else np.zeros(n, bool)
    for s, seed in enumerate(seeds):
        perm = np.argsort(-class_uniform_scores(cls, seed, n), kind="stable")
        lv, jm, ovs, ign_all = level[perm], ov.jmax[perm], ov.ovmax[perm], ignore[perm]
        for i, thr in enumerate(iou_thrs):
            out[:, s, i] = ap_nc_curves(lv, jm, ov.protocol.qualifies(ovs, thr), ign_all, first_kept, ov.num_gt,
                                        ov.num_pos, ap_mode, ov.protocol.dtype)
    return out


def ap_nc_curves(level: np.ndarray, gt: np.ndarray, qualified: np.ndarray, ignored_gt: np.ndarray,
                 first_kept: np.ndarray, num_gt: int, num_pos: int, ap_mode: str = "11point",
                 dtype=np.float64) -> np.ndarray:
    """AP for every score threshold ``t`` of detections given in ranking order: ``level`` (dense score level;
    kept at ``t`` when ``level >= first_kept[t]``), ``gt`` (best ground truth), ``qualified`` (its IoU passes),
    ``ignored_gt`` (that ground truth is ignored). Greedy matching: a qualified detection is a TP at ``t`` when it
    is kept and every earlier qualified detection of its ground truth is not (their highest level, its
    "blocker", is below ``first_kept[t]``), ignored when its ground truth is, else an FP. Same numbers as
    :func:`rscovlm.eval.ap.average_precision` of the cumulative counts; compiled when built
    (:mod:`rscovlm._compiled`), numpy otherwise."""
    first_kept = np.asarray(first_kept, np.int64)
    mod = native()
    if mod is not None:
        order = np.argsort(first_kept, kind="stable")  # the kernel takes thresholds by increasing kept level
        out = np.empty(len(first_kept))
        mod.ap_nc_curves(np.ascontiguousarray(level, np.int64), np.ascontiguousarray(gt, np.int64),
                         np.ascontiguousarray(qualified, bool), np.ascontiguousarray(ignored_gt, bool),
                         np.ascontiguousarray(first_kept[order]), eleven_point_counts(num_pos), int(num_gt),
                         int(num_pos), ap_mode == "area", dtype == np.float32, out)
        result = np.empty_like(out)
        result[order] = out
        return result
    ign = qualified & ignored_gt
    cand = qualified & ~ign
    n_levels = int(level.max(initial=0)) + 1
    blk = _blockers(cand, gt, level, n_levels)
    kept = level[None, :] >= first_kept[:, None]
    tp = kept & cand[None, :] & (blk[None, :] < first_kept[:, None])
    fp = kept & ~ign[None, :] & ~tp
    return average_precision_of_flags(tp, fp, num_pos, ap_mode, dtype)


def image_positions(overlaps: dict[str, ClassOverlaps], positions: dict[str, np.ndarray] | None = None
                    ) -> dict[str, np.ndarray]:
    """Each detection's rank in its image's prediction list over all classes (aligned with the detections of
    ``overlaps[c]``): from ``positions`` (``{class: order per input row}``, e.g. answer order) where given, else
    score descending, ties in class order (of ``overlaps``) then input order; score-free detections without
    ``positions`` follow class order, then input order."""
    names = list(overlaps)
    keys, images, cls_idx, rows = [], [], [], []
    for k, c in enumerate(names):
        ov = overlaps[c]
        if positions is not None and positions.get(c) is not None:
            key = np.asarray(positions[c], np.float64)[ov.det_index]
        elif ov.scores is not None:
            key = -np.asarray(ov.scores, np.float64)
        else:
            key = np.zeros(ov.num_det)
        keys.append(key)
        images.append(ov.image)
        cls_idx.append(np.full(ov.num_det, k))
        rows.append(np.arange(ov.num_det))
    if not names:
        return {}
    key, image, ci, row = (np.concatenate(x) for x in (keys, images, cls_idx, rows))
    order = np.lexsort((row, ci, key, image))
    start = np.r_[True, image[order][1:] != image[order][:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - first
    bounds = np.cumsum([0] + [len(x) for x in keys])
    return {c: rank[bounds[k]:bounds[k + 1]] for k, c in enumerate(names)}


def scored_grid(overlaps: dict[str, ClassOverlaps], classes: list[str], *, score_mode: str, seeds: list | None,
                iou_thrs, score_thrs, ap_mode: str = "11point", ties: str = "stable",
                positions: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """AP of ``classes`` for every (score threshold, seed, IoU threshold) under ``ones`` or ``random-per-image``
    -> ``(T, S, I, C)`` (``S = 1`` for ``ones``). See the module docstring."""
    if ties not in TIE_ORDERS:
        raise ValueError(f"unknown tie order {ties!r}; expected one of {TIE_ORDERS}")
    runs = [None] if score_mode == "ones" else list(seeds)
    out = np.zeros((len(score_thrs), len(runs), len(iou_thrs), len(classes)))
    per_image = score_mode == "random-per-image"
    names = list(overlaps)
    pos = image_positions(overlaps, positions) if per_image else None
    for ti, t in enumerate(score_thrs):
        # strict, on float32 scores against a float32 threshold, as LMMRotate's torch tensors compare them
        kept = {c: (np.ones(ov.num_det, bool) if ov.scores is None else ov.scores.astype(np.float32) > np.float32(t))
                for c, ov in overlaps.items()}
        draw_idx = {}
        if per_image:  # rank of each kept detection among its image's kept ones, in prediction order
            kept_all = np.concatenate([kept[c] for c in names])
            key = np.concatenate([pos[c] for c in names])
            image = np.concatenate([overlaps[c].image for c in names])
            order = np.lexsort((key, image))
            k_sorted = kept_all[order].astype(np.int64)
            csum = np.cumsum(k_sorted)
            start = np.r_[True, image[order][1:] != image[order][:-1]]
            base = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
            before = csum - k_sorted - np.where(base > 0, csum[base - 1], 0) if len(order) else csum
            rank = np.empty(len(order), np.int64)
            rank[order] = before
            bounds = np.cumsum([0] + [overlaps[c].num_det for c in names])
            draw_idx = {c: rank[bounds[k]:bounds[k + 1]][kept[c]] for k, c in enumerate(names)}
            need = int(max((int(v.max()) + 1 for v in draw_idx.values() if len(v)), default=0))
        for si, seed in enumerate(runs):
            u = torch_rand(seed, need) if per_image else None
            for ci, c in enumerate(classes):
                ov = overlaps[c]
                k = kept[c]
                n = int(k.sum())
                if n == 0:
                    continue
                scores = u[draw_idx[c]] if per_image else np.ones(n, np.float32)
                sub = ov.subset(k, scores.astype(np.float64))
                match, rank_order = ranking(sub, ties)
                flags = [matches_in_rank(sub, match, rank_order, thr) for thr in iou_thrs]
                out[ti, si, :, ci] = average_precision_of_flags(np.stack([f[0] for f in flags]),
                                                                np.stack([f[1] for f in flags]), ov.num_pos,
                                                                ap_mode, ov.protocol.dtype)
    return out


@dataclass
class ApNcTable:
    """AP for every (score threshold, seed, IoU threshold, class with positives): ``ap`` is ``(T, S, I, C)``
    (``S = 1`` and ``seeds = None`` under ``score_mode="ones"``)."""

    score_thrs: list[float]
    seeds: list[int] | None  # None: the all-ones mode (one run)
    iou_thrs: list[float]
    classes: list[str]
    ap: np.ndarray
    metrics: dict[str, list[float]] = field(default_factory=dict)
    score_mode: str = "random"
    ties: str = "stable"

    def metric_per_seed(self, name: str) -> np.ndarray:
        """``(T, S)``: mean over classes of the mean over the metric's IoU thresholds."""
        idx = [self.iou_thrs.index(t) for t in self.metrics[name]]
        if not self.classes:
            return np.zeros(self.ap.shape[:2])
        return self.ap[:, :, idx, :].mean(axis=2).mean(axis=2)

    def summary(self, t_index: int) -> dict:
        """``{metric: {"mean", "std", "per_seed"}}`` and per-class means at score threshold ``t_index``; under
        ``random-per-image`` also ``lmmrotate_mean``/``lmmrotate_std`` (:func:`lmmrotate_report`)."""
        out = {}
        for name in self.metrics:
            per_seed = self.metric_per_seed(name)[t_index]
            out[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std()),
                         "per_seed": [float(v) for v in per_seed]}
            if self.score_mode == "random-per-image":
                out[name]["lmmrotate_mean"], out[name]["lmmrotate_std"] = lmmrotate_report(per_seed)
        per_class = {}
        for c_i, c in enumerate(self.classes):
            per_class[c] = {}
            for name, thrs in self.metrics.items():
                idx = [self.iou_thrs.index(t) for t in thrs]
                v = self.ap[t_index][:, idx, c_i].mean(axis=1)  # (S,)
                per_class[c][name] = {"mean": float(v.mean()), "std": float(v.std())}
        return {"metrics": out, "per_class": per_class}


def lmmrotate_report(per_seed) -> tuple[float, float]:
    """The ``rnd:mean`` / ``rnd:std`` that LMMRotate's ``map_nc_robustness_cal.py`` writes: its final pass takes
    every ``rnd:*`` column of a threshold's row, which by then holds the seeds' values plus the ``rnd:max``,
    ``rnd:min`` and ``rnd:mean`` of its first pass - so its mean and (population) std are over those n + 3 values,
    not over the n seeds (the plain ``mean``/``std`` next to it)."""
    v = [float(x) for x in per_seed]
    v = v + [max(v), min(v), sum(v) / len(v)]
    return float(np.mean(v)), float(np.std(v))


def ap_nc_table(overlaps: dict[str, ClassOverlaps], *, score_thrs=(0.0,), seeds=None, iou_spec=DEFAULT_IOU_SPEC,
                ap_mode: str = "11point", score_mode: str = "random", ties: str = "stable",
                positions: dict[str, np.ndarray] | None = None) -> ApNcTable:
    """AP_nc (or all-ones AP) over the classes with positives for every score threshold, seed and IoU threshold
    needed by ``iou_spec``. ``seeds``: a count (seeds ``0..n-1``), an explicit list, or ``None`` for the mode's
    default (:func:`resolve_seeds`). ``ties``: the order of equal scores under ``ones`` and
    ``random-per-image`` (:mod:`rscovlm.eval.dota_map`). ``positions``: ``{class: each input row's position in
    its image's prediction list}`` for ``random-per-image`` (see :func:`image_positions`)."""
    seed_list = resolve_seeds(score_mode, seeds)
    if ties not in TIE_ORDERS:
        raise ValueError(f"unknown tie order {ties!r}; expected one of {TIE_ORDERS}")
    metrics = parse_iou_spec(iou_spec, metric_prefix(score_mode))
    iou_thrs = sorted({t for thrs in metrics.values() for t in thrs})
    classes = [c for c, ov in overlaps.items() if ov.num_pos > 0]
    score_thrs = [check_score_thr(t) for t in np.atleast_1d(score_thrs)]
    if score_mode == "random":
        ap = np.zeros((len(score_thrs), len(seed_list), len(iou_thrs), len(classes)))
        for c_i, c in enumerate(classes):
            ap[..., c_i] = ap_nc_grid(overlaps[c], c, seed_list, iou_thrs, score_thrs, ap_mode)
    else:
        ap = scored_grid(overlaps, classes, score_mode=score_mode, seeds=seed_list, iou_thrs=iou_thrs,
                         score_thrs=score_thrs, ap_mode=ap_mode, ties=ties, positions=positions)
    return ApNcTable(score_thrs, seed_list, iou_thrs, classes, ap, metrics, score_mode, ties)


def det_positions(dets) -> dict[str, np.ndarray] | None:
    """``{class: ClassDets.order}`` of loaded detections that carry an answer order, else ``None``."""
    out = {c: d.order for c, d in dets.classes.items() if d.order is not None}
    return out or None


def eval_dota_nc(gt, dets, *, score_thr: float = 0.0, seeds=None, iou_thrs: str = DEFAULT_IOU_SPEC,
                 ap_mode: str = "11point", protocol: str = "mmrotate1x", score_mode: str = "random",
                 ties: str = "stable", skip_invalid: bool = False, unknown_images: str = "error", categories=None,
                 unknown_gt_classes: str = "error") -> dict:
    """AP_nc (``score_mode``: ``random``, ``random-per-image``) or all-ones AP (``ones``) of a Task1 folder (or
    loaded detections) at one score threshold. Also ``rscovlm eval dota-nc``.

    Returns ``{"score_thr", "score_mode", "ties", "seeds", "iou_thrs", "classes", "metrics": {name: {"mean",
    "std", "per_seed"}}, "per_class": {class: {name: {"mean", "std"}}}, "protocol", "ap_mode"}`` and what
    reading left out. ``categories``/``unknown_gt_classes``: the ground-truth vocabulary check of
    :func:`rscovlm.eval.dota_map.eval_dota`."""
    from rscovlm.eval.dota_map import compute_overlaps, get_protocol, load_pair

    check_score_thr(score_thr)  # before reading the folders
    get_protocol(protocol)
    resolve_seeds(score_mode, seeds)
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    table = ap_nc_table(compute_overlaps(gt, dets, protocol), score_thrs=[score_thr], seeds=seeds,
                        iou_spec=iou_thrs, ap_mode=ap_mode, score_mode=score_mode, ties=ties,
                        positions=det_positions(dets))
    return {"score_thr": float(score_thr), "score_mode": score_mode, "ties": ties, "seeds": table.seeds,
            "iou_thrs": table.iou_thrs, "classes": table.classes, **table.summary(0), "protocol": protocol,
            "ap_mode": ap_mode, "skipped_lines": len(gt.skipped) + len(dets.skipped),
            "dropped_unknown_image": dets.dropped_unknown_image, "missing_det_files": list(dets.missing_files),
            "dropped_unknown_gt_classes": dict(gt.dropped_unknown_classes)}
