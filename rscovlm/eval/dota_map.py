"""DOTA detection AP/mAP under the official devkit protocol and the MMRotate 0.x / 1.x protocols.

Protocols (registry :data:`PROTOCOLS`)
--------------------------------------
``dota`` - the devkit's Task1 evaluation (``dota_evaluation_task1.py``, ``voc_eval``):
  boxes are the quads as written; a ground truth is a candidate for a detection of the same class and image when
  their enclosing boxes, each widened by the devkit's ``+1`` pixel, overlap; IoU is the polygon IoU
  (:mod:`rscovlm.geometry.iou`, the devkit's ``polyiou`` rule). Each detection goes to the candidate with the
  highest IoU (first in file order on ties); it is a TP when ``IoU > thr`` (strict) and that ground truth is not
  taken yet, ignored (neither TP nor FP) when that ground truth is difficult (flag 1 or 2), an FP otherwise
  (repeat matches included). Positives are the non-difficult ground truths. Where both quads have zero area the
  devkit computes ``0/0 = NaN``; a NaN among a detection's candidates makes it an FP, as there.
``mmrotate1x`` - MMRotate 1.x ``DOTAMetric`` (``eval_rbbox_map`` of ``mmrotate/evaluation/functional/mean_ap.py``),
  the convention of the reference's RSCoVLM evaluation: every quad (ground truth and detection) becomes its
  minimum-area rectangle (``qbox2rbox``: OpenCV's ``minAreaRect`` on float32 points - :func:`min_area_rects`),
  **nothing is dropped**; exact IoU of the rotated rectangles, rounded to float32 (what ``box_iou_rotated``
  returns) and compared with the float32 threshold;
  each detection goes to the ground truth with the highest IoU (the first on ties); TP when ``IoU >= thr``, a
  repeat match is an FP; every ground-truth object is positive (difficult and window-cut ones included:
  ``DOTADataset(diff_thr=100)`` ignores nothing); a detection with no overlapping ground truth in an image that
  has some gets IoU 0 with the first one (``argmax`` of a zero row; matters only at threshold 0); precision and
  AP are float32 (``average_precision`` of mmdet, ``11points`` by default as ``DOTAMetric(eval_mode='11points')``),
  mAP the float32 mean over the classes with ground truth.
``mmrotate`` - MMRotate 0.x ``eval_rbbox_map`` with its DOTA loader (``version="le90"``): the same, except that the
  0.x loader drops every quad whose rectangle has a side shorter than 2 px (``poly2obb_np``), ground truth and
  detections alike.

Ranking and ties (``ties=``, registry :data:`TIE_ORDERS`)
----------------------------------------------------------
Detections are ranked by score, descending; the input order of a class is the order of the lines in its
``Task1_{class}.txt`` (for model responses: line order of the responses file, then answer order). Equal scores
are common (Task1 files often carry 3-4 decimals; score-free output scored with every score 1.0 ties
everything) and change AP, so the order among them is fixed one of two ways:

* ``reference`` (default) - exactly the reference tool's ranking: numpy's default ``argsort`` of the negated
  scores, over the detections in input order (devkit: the whole class at once; MMRotate: per image, with
  images in ``image_ids`` order, for matching, then over the concatenated float32 scores for the ranking).
  Deterministic for a given input and numpy build, and equal to the reference tool's result on the same
  machine - but numpy's default sort is not stable and its tie order varies with numpy version and CPU.
* ``stable`` - the reference tool's procedure with a stable sort: equal scores keep their order in the list the
  tool sorts (devkit: input order; MMRotate: image order, then input order inside each image, float32 scores).
  Portable across machines; differs from the reference tools only where their unstable sort reorders ties.
  Score-free detections rank as if every score were equal (1.0).

mAP is the mean AP over the classes that have at least one positive ground truth; the result lists them. IoUs
are computed once per class (:class:`ClassOverlaps`) and reused for every threshold, seed and order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rscovlm.eval.ap import AP_MODES, average_precision_of_flags
from rscovlm._compiled import native
from rscovlm.eval.names import PROTOCOL_SUMMARIES, TIE_ORDERS
from rscovlm.eval.dota_data import (
    ClassDets, ClassGT, Detections, GroundTruth, UnknownGtClasses, UnknownImages, load_gt_dir, load_task1_dir,
)
from rscovlm.geometry.boxes import obb_to_quad, quad_to_obb
from rscovlm.protocol.categories import CategorySet
from rscovlm.geometry.iou import _hbb_of, hbb_overlap_pairs, poly_areas, poly_intersection_pairs

ApMode = Literal["11point", "area"]
ProtocolName = Literal["dota", "mmrotate1x", "mmrotate"]


# ---- protocols ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """How boxes are prepared and matched (see module docstring)."""

    name: str
    strict: bool = field(metadata={"help": "TP needs IoU > thr (True) or IoU >= thr (False)"})
    difficult_ignored: bool = field(metadata={"help": "difficult ground truth is ignored, not positive"})
    candidate_margin: float = field(metadata={"help": "pre-filter: enclosing boxes closer than this are candidates"})
    min_side: float = field(default=0.0, metadata={"help": "drop boxes whose min-area rectangle has a shorter side"})
    rotated_rect: bool = field(default=False, metadata={"help": "match min-area rectangles instead of the quads"})
    zero_iou_default: bool = field(default=False, metadata={
        "help": "a detection without candidates in an image with ground truth gets IoU 0 with its first one"})
    dtype: type = field(default=np.float64, metadata={"help": "precision/AP arithmetic (float32 in MMRotate)"})
    float32_boxes: bool = field(default=False, metadata={
        "help": "IoUs and the IoU threshold in float32, as MMRotate's box_iou_rotated returns and compares them"})
    summary: str = field(default="", metadata={"help": "one line for --help"})

    def prepare(self, quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 8)`` quads -> (boxes used for IoU as quads, indices kept)."""
        if not self.rotated_rect:
            return quads, np.arange(len(quads))
        obb = min_area_rects(quads)
        keep = np.flatnonzero((obb[:, 2] >= self.min_side) & (obb[:, 3] >= self.min_side))
        return rects_to_quads(obb[keep]), keep

    def threshold(self, thr: float) -> float:
        """The IoU threshold as the reference compares it (a float32 IoU against a float32 threshold)."""
        return float(np.float32(thr)) if self.float32_boxes else float(thr)

    def qualifies(self, iou: np.ndarray, thr: float) -> np.ndarray:
        """``iou > thr`` or ``iou >= thr`` (NaN never qualifies)."""
        t = self.threshold(thr)
        with np.errstate(invalid="ignore"):
            return iou > t if self.strict else iou >= t


def rects_to_quads(obb: np.ndarray) -> np.ndarray:
    """``(N, 5)`` rotated rectangles -> ``(N, 8)`` quads; axis-aligned ones exactly (``cos(pi/2)`` is not 0 in
    floating point)."""
    quads = obb_to_quad(obb)
    turns = obb[:, 4] / (np.pi / 2)
    aligned = np.abs(turns - np.round(turns)) < 1e-12
    if aligned.any():
        odd = (np.round(turns[aligned]).astype(np.int64) % 2) == 1
        cx, cy, w, h = (obb[aligned, i] for i in range(4))
        hx, hy = np.where(odd, h, w) / 2, np.where(odd, w, h) / 2
        quads[aligned] = np.stack([cx - hx, cy - hy, cx + hx, cy - hy, cx + hx, cy + hy, cx - hx, cy + hy], 1)
    return quads


def min_area_rects(quads: np.ndarray) -> np.ndarray:
    """``(N, 8)`` quads -> ``(N, 5)`` minimum-area rectangles ``cx, cy, w, h, theta`` (radians), the way MMRotate
    gets them (1.x ``qbox2rbox``, 0.x loader): OpenCV's ``minAreaRect`` on float32 points, angle ``a / 180 * pi``,
    when OpenCV is installed (it decides near-ties between two candidate rectangles - e.g. for triangles - the same
    way), else :func:`rscovlm.geometry.boxes.quad_to_obb` (the same rectangle except on such ties)."""
    with np.errstate(over="ignore"):  # beyond float32 range: inf, as in the reference's float32 tensors
        pts = np.asarray(quads, dtype=np.float32).reshape(-1, 4, 2)
    try:
        import cv2
    except ImportError:
        return quad_to_obb(pts.reshape(-1, 8).astype(np.float64))
    out = np.empty((len(pts), 5))
    for k, p in enumerate(pts):
        (cx, cy), (w, h), a = cv2.minAreaRect(p)
        out[k] = (cx, cy, w, h, a / 180 * np.pi)
    return out


PROTOCOLS: dict[str, Protocol] = {
    "dota": Protocol("dota", strict=True, difficult_ignored=True, candidate_margin=1.0,
                     summary=PROTOCOL_SUMMARIES["dota"]),
    "mmrotate1x": Protocol("mmrotate1x", strict=False, difficult_ignored=False, candidate_margin=0.0,
                           rotated_rect=True, zero_iou_default=True, dtype=np.float32, float32_boxes=True,
                           summary=PROTOCOL_SUMMARIES["mmrotate1x"]),
    "mmrotate": Protocol("mmrotate", strict=False, difficult_ignored=False, candidate_margin=0.0, min_side=2.0,
                         rotated_rect=True, zero_iou_default=True, dtype=np.float32, float32_boxes=True,
                         summary=PROTOCOL_SUMMARIES["mmrotate"]),
}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}") from None


def check_iou_thr(value, name: str = "iou_thr") -> float:
    """``value`` as a float when it is a finite IoU threshold in ``[0, 1]``; else a ValueError naming ``name``
    (a NaN threshold would otherwise match nothing and score a silent 0)."""
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def check_score_thr(value, name: str = "score_thr") -> float:
    """``value`` as a float unless it is NaN (which would drop every detection); any other number is allowed
    (Task1 scores are not bounded)."""
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return v


# ---- overlaps, computed once per class --------------------------------------------------------------------------

@dataclass
class ClassOverlaps:
    """Everything matching needs for one class, independent of thresholds, seeds and ranking.

    ``det_index`` maps the kept detections back to the input rows; ``scores``/``image`` are the kept ones.
    ``ovmax``/``jmax`` are each detection's best IoU and that ground truth (``-inf``/``-1``: no candidate;
    ``NaN``: the devkit's 0/0). ``pair_*`` hold every candidate pair's IoU (for one-to-one matching).
    ``gt_ignore`` marks ground truths that are not positives."""

    protocol: Protocol
    det_index: np.ndarray
    scores: np.ndarray | None
    image: np.ndarray
    ovmax: np.ndarray
    jmax: np.ndarray
    gt_ignore: np.ndarray
    pair_det: np.ndarray
    pair_gt: np.ndarray
    pair_iou: np.ndarray

    @property
    def num_det(self) -> int:
        return len(self.det_index)

    @property
    def num_gt(self) -> int:
        return len(self.gt_ignore)

    @property
    def num_pos(self) -> int:
        return int((~self.gt_ignore).sum())

    def subset(self, keep: np.ndarray, scores: np.ndarray | None) -> "ClassOverlaps":
        """The detections ``keep`` (mask or indices into the kept detections) with new ``scores`` (aligned with
        them); ground truth unchanged. Pair arrays are left out (AP needs only the best matches)."""
        keep = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)
        empty = np.zeros(0, np.int64)
        return ClassOverlaps(self.protocol, self.det_index[keep], scores, self.image[keep], self.ovmax[keep],
                             self.jmax[keep], self.gt_ignore, empty, empty, np.zeros(0))


def _hbb(q: np.ndarray) -> np.ndarray:
    return _hbb_of(q)


def class_overlaps(gt: ClassGT, dets: ClassDets, protocol: str | Protocol = "dota") -> ClassOverlaps:
    """Candidate pairs, their IoUs and each detection's best match for one class (see module docstring)."""
    return _overlaps_of_classes([(gt, dets)], get_protocol(protocol))[0]


def compute_overlaps(gt: GroundTruth, dets: Detections, protocol: str | Protocol = "dota",
                     classes: list[str] | None = None) -> dict[str, ClassOverlaps]:
    """:func:`class_overlaps` for every class with ground truth or detections (sorted)."""
    names = classes if classes is not None else sorted(set(gt.classes) | set(dets.classes))
    with_scores = any(d.scores is not None for d in dets.classes.values()) or not dets.classes
    items = [(gt.get(c), dets.get(c, with_scores)) for c in names]
    return dict(zip(names, _overlaps_of_classes(items, get_protocol(protocol))))


def _overlaps_of_classes(items: list[tuple[ClassGT, ClassDets]], proto: Protocol) -> list[ClassOverlaps]:
    """:func:`class_overlaps` of several classes: compiled per class when built; otherwise the candidate pairs of
    all classes are intersected in one call (whose size decides whether numba pays, see
    :func:`rscovlm.geometry.iou.iou_backend`)."""
    prepared = []
    for gt, dets in items:
        g_quads, g_keep = proto.prepare(gt.quads)
        d_quads, d_keep = proto.prepare(dets.quads)
        prepared.append((gt, dets, g_quads, g_keep, d_quads, d_keep, gt.image[g_keep], dets.image[d_keep]))
    mod = native()
    if mod is not None:  # the same computation compiled (rscovlm/_native.c), bitwise equal
        matched = [tuple(np.frombuffer(b, t) for b, t in zip(
            mod.class_overlaps(np.ascontiguousarray(d_quads, np.float64), np.ascontiguousarray(d_image, np.int64),
                               np.ascontiguousarray(g_quads, np.float64), np.ascontiguousarray(g_image, np.int64),
                               float(proto.candidate_margin), bool(proto.float32_boxes)),
            (np.int64, np.int64, np.float64, np.float64, np.int64)))
            for _, _, g_quads, _, d_quads, _, g_image, d_image in prepared]
    else:
        cands = [_candidates(proto, d_quads, d_image, g_quads, g_image)
                 for _, _, g_quads, _, d_quads, _, g_image, d_image in prepared]
        real_d = [d_quads[pi[real]] for (_, _, _, _, d_quads, *_), (pi, _, real) in zip(prepared, cands)]
        real_g = [g_quads[pj[real]] for (_, _, g_quads, *_), (_, pj, real) in zip(prepared, cands)]
        sizes = np.cumsum([0] + [len(x) for x in real_d])
        inter = poly_intersection_pairs(np.concatenate(real_d), np.concatenate(real_g)) if sizes[-1] \
            else np.zeros(0)
        matched = [_best_matches(proto, d_quads, g_quads, pi, pj, real, inter[sizes[k]:sizes[k + 1]])
                   for k, ((_, _, g_quads, _, d_quads, *_), (pi, pj, real)) in enumerate(zip(prepared, cands))]
    out = []
    for (gt, dets, _, g_keep, _, d_keep, g_image, d_image), (pi, pj, iou, ovmax, jmax) in zip(prepared, matched):
        n_det = len(d_keep)
        gt_ignore = (gt.difficult[g_keep] > 0) if proto.difficult_ignored else np.zeros(len(g_keep), bool)
        if proto.zero_iou_default and len(g_keep) and n_det:
            first_gt = np.full(int(max(g_image.max(), d_image.max())) + 1, -1, np.int64)
            first_gt[g_image[::-1]] = np.arange(len(g_image))[::-1]  # lowest GT index of each image
            fg = first_gt[d_image]
            none = (fg >= 0) & ~(ovmax > 0)
            ovmax[none] = 0.0
            jmax[none] = fg[none]
        scores = None if dets.scores is None else dets.scores[d_keep]
        out.append(ClassOverlaps(proto, d_keep, scores, d_image, ovmax, jmax, gt_ignore, pi, pj, iou))
    return out


def _candidates(proto: Protocol, d_quads: np.ndarray, d_image: np.ndarray, g_quads: np.ndarray,
                g_image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs ``(pi, pj)`` (numpy path) and which of them overlap positively (``real``: intersected)."""
    d_hbb, g_hbb = _hbb(d_quads), _hbb(g_quads)
    pi, pj = hbb_overlap_pairs(d_hbb, g_hbb, margin=proto.candidate_margin, groups_a=d_image, groups_b=g_image)
    hd, hg = d_hbb[pi], g_hbb[pj]
    real = (np.minimum(hd[:, 2], hg[:, 2]) > np.maximum(hd[:, 0], hg[:, 0])) & (
        np.minimum(hd[:, 3], hg[:, 3]) > np.maximum(hd[:, 1], hg[:, 1]))
    return pi, pj, real


def _best_matches(proto: Protocol, d_quads: np.ndarray, g_quads: np.ndarray, pi: np.ndarray, pj: np.ndarray,
                  real: np.ndarray, inter_real: np.ndarray):
    """IoUs of the candidate pairs and each detection's best match (numpy path; see :func:`class_overlaps`)."""
    n_det = len(d_quads)
    inter = np.zeros(len(pi))
    inter[real] = inter_real
    union = poly_areas(d_quads)[pi] + poly_areas(g_quads)[pj] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    if proto.float32_boxes:  # box_iou_rotated returns float32: its argmax and threshold see float32 values
        with np.errstate(over="ignore"):
            iou = iou.astype(np.float32).astype(np.float64)
    ovmax = np.full(n_det, -np.inf)
    jmax = np.full(n_det, -1, np.int64)
    if len(pi):
        key = np.where(np.isnan(iou), -np.inf, iou)
        order = np.lexsort((pj, -key, pi))  # per detection: best IoU first, then lowest GT index
        starts = np.flatnonzero(np.r_[True, pi[order][1:] != pi[order][:-1]])
        dets_with = pi[order][starts]
        jmax[dets_with] = pj[order][starts]
        ovmax[dets_with] = key[order][starts]
        has_nan = np.zeros(n_det, bool)
        has_nan[pi[np.isnan(iou)]] = True
        ovmax[has_nan] = np.nan
    return pi, pj, iou, ovmax, jmax


# ---- matching and AP -------------------------------------------------------------------------------------------

TieOrder = Literal["reference", "stable"]


def rank_by_score(scores: np.ndarray | None, n: int) -> np.ndarray:
    """Score-descending order, ties in input order; input order when there are no scores."""
    if scores is None:
        return np.arange(n)
    return np.argsort(-scores, kind="stable")


def ranking(ov: "ClassOverlaps", ties: TieOrder = "reference") -> tuple[np.ndarray, np.ndarray]:
    """``(matching order, ranking order)`` of the detections of ``ov`` (see "Ranking and ties" above)."""
    if ties not in TIE_ORDERS:
        raise ValueError(f"unknown tie order {ties!r}; expected one of {TIE_ORDERS}")
    if not ov.protocol.rotated_rect:  # devkit: np.argsort(-confidence) over the class file
        order = rank_by_score(ov.scores, ov.num_det) if ties == "stable" or ov.scores is None \
            else np.argsort(-ov.scores)
        return order, order
    s32 = np.ones(ov.num_det, np.float32) if ov.scores is None else ov.scores.astype(np.float32)
    by_image = np.argsort(ov.image, kind="stable")  # images in order, detections in input order inside
    if ties == "stable":  # per image and overall the same stable order: one list serves both
        order = by_image[np.argsort(-s32[by_image], kind="stable")]
        return order, order
    return per_image_order(ov.image, s32, by_image), by_image[np.argsort(-s32[by_image])]


def per_image_order(image: np.ndarray, s32: np.ndarray, by_image: np.ndarray) -> np.ndarray:
    """MMRotate's matching order: images in index order, inside each ``np.argsort(-scores)`` of its detections
    in input order. Where an image has no equal scores that is the stable order (one vectorized sort); only
    images with ties get numpy's own argsort, on exactly the array MMRotate sorts."""
    if len(by_image) == 0:
        return by_image
    img = image[by_image]
    neg = -s32[by_image]
    srt = np.lexsort((neg, img))  # stable: by image, then score descending, ties in input order
    match = by_image[srt]
    same = (img[srt][1:] == img[srt][:-1]) & (neg[srt][1:] == neg[srt][:-1])
    if same.any():
        bounds = np.flatnonzero(np.r_[True, img[1:] != img[:-1], True])
        tied = set(img[srt][1:][same].tolist())
        for a, b in zip(bounds[:-1], bounds[1:]):
            if int(img[a]) in tied:
                seg = by_image[a:b]
                match[a:b] = seg[np.argsort(-s32[seg])]  # the same key, so the image keeps its slots
    return match


def ranked_matches(ov: "ClassOverlaps", iou_thr: float, ties: TieOrder = "reference"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """TP/FP flags of ``ov``'s detections in ranking order (matching done in the matching order)."""
    match, rank = ranking(ov, ties)
    return matches_in_rank(ov, match, rank, iou_thr)


def matches_in_rank(ov: "ClassOverlaps", match: np.ndarray, rank: np.ndarray, iou_thr: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_ranked` in ``match`` order, the flags returned in ``rank`` order."""
    tp_m, fp_m = match_ranked(ov, match, iou_thr)
    if match is rank:
        return tp_m, fp_m
    tp = np.zeros(ov.num_det, bool)
    fp = np.zeros(ov.num_det, bool)
    tp[match], fp[match] = tp_m, fp_m
    return tp[rank], fp[rank]


def match_ranked(ov: ClassOverlaps, order: np.ndarray, iou_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of the detections in ``order`` -> ``(tp, fp)`` boolean arrays aligned with ``order``.

    A detection whose best ground truth qualifies (``>``/``>=`` thr) is TP when it is the first in ``order`` to
    take it, ignored when that ground truth is ignored; everything else is FP."""
    ovs = ov.ovmax[order]
    j = ov.jmax[order]
    qualified = ov.protocol.qualifies(ovs, iou_thr)
    ignored = qualified & ov.gt_ignore[np.maximum(j, 0)] if ov.num_gt else np.zeros(len(order), bool)
    cand = np.flatnonzero(qualified & ~ignored)
    tp = np.zeros(len(order), bool)
    if len(cand):
        _, first = np.unique(j[cand], return_index=True)
        tp[cand[first]] = True
    fp = ~tp & ~ignored
    return tp, fp


def ap_from_matches(tp: np.ndarray, fp: np.ndarray, num_pos: int, mode: str, dtype) -> float:
    """AP of boolean TP/FP flags in ranking order (``num_pos`` positives)."""
    return float(average_precision_of_flags(tp, fp, num_pos, mode, dtype)[0])


@dataclass
class ClassAP:
    """One class at one IoU threshold: ``num_gt`` positives (the recall denominator), ``num_det`` detections
    scored, ``num_tp`` of them true positives; ``recall``/``precision`` at the end of the ranked list."""

    ap: float
    num_gt: int
    num_det: int
    num_tp: int
    recall: float
    precision: float


@dataclass
class DotaMapResult:
    """``mAP`` over ``classes`` (those with positives); ``per_class`` for them; ``classes_without_gt`` holds the
    detection counts of the others. ``num_gt`` counts positives (the recall denominator)."""

    mAP: float
    classes: list[str]
    per_class: dict[str, ClassAP]
    classes_without_gt: dict[str, int]
    protocol: str
    iou_thr: float
    ap_mode: str
    skipped_lines: int = 0
    dropped_unknown_image: int = 0
    missing_det_files: list[str] = field(default_factory=list)
    dropped_unknown_gt_classes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "mAP": self.mAP,
            "classes": list(self.classes),
            "per_class": {c: {"ap": r.ap, "num_gt": r.num_gt, "num_det": r.num_det, "num_tp": r.num_tp,
                              "recall": r.recall, "precision": r.precision} for c, r in self.per_class.items()},
            "classes_without_gt": {c: {"num_det": n} for c, n in self.classes_without_gt.items()},
            "protocol": self.protocol, "iou_thr": self.iou_thr, "ap_mode": self.ap_mode,
            "skipped_lines": self.skipped_lines, "dropped_unknown_image": self.dropped_unknown_image,
            "missing_det_files": list(self.missing_det_files),
            "dropped_unknown_gt_classes": dict(self.dropped_unknown_gt_classes),
        }

    def table(self) -> str:
        rows = [f"{'class':<22}{'AP':>8}{'num_gt':>9}{'num_det':>9}{'recall':>9}"]
        for c in self.classes:
            r = self.per_class[c]
            rows.append(f"{c:<22}{100 * r.ap:>8.2f}{r.num_gt:>9}{r.num_det:>9}{100 * r.recall:>9.2f}")
        for c, n in self.classes_without_gt.items():
            rows.append(f"{c:<22}{'-':>8}{0:>9}{n:>9}{'-':>9}  (no ground truth: not in mAP)")
        rows.append(f"{'mAP':<22}{100 * self.mAP:>8.2f}   ({len(self.classes)} classes, protocol {self.protocol}, "
                    f"IoU {self.iou_thr}, {self.ap_mode})")
        return "\n".join(rows)


def map_from_overlaps(overlaps: dict[str, ClassOverlaps], iou_thr: float = 0.5, ap_mode: str = "11point",
                      ties: TieOrder = "reference", mean_order: list[str] | None = None) -> DotaMapResult:
    """Per-class AP and mAP from precomputed overlaps (scores required). ``mean_order``: the class order the
    mean is summed in (the reference's label order; a float32 mean depends on it in the last bit), classes not
    in it last; default the order of ``overlaps``."""
    iou_thr = check_iou_thr(iou_thr)
    if ap_mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {ap_mode!r}; expected one of {sorted(AP_MODES)}")
    per_class: dict[str, ClassAP] = {}
    without: dict[str, int] = {}
    proto = None
    for c, ov in overlaps.items():
        proto = ov.protocol
        if ov.num_pos == 0:
            without[c] = ov.num_det
            continue
        tp, fp = ranked_matches(ov, iou_thr, ties)
        ap = ap_from_matches(tp, fp, ov.num_pos, ap_mode, ov.protocol.dtype)
        ntp, nfp = int(tp.sum()), int(fp.sum())
        per_class[c] = ClassAP(ap, ov.num_pos, ov.num_det, ntp, ntp / ov.num_pos, ntp / max(ntp + nfp, 1))
    classes = list(per_class)
    rank = {c: i for i, c in enumerate(mean_order or [])}
    summed = sorted(classes, key=lambda c: rank.get(c, len(rank)))  # stable: the rest keep their order
    aps = np.array([per_class[c].ap for c in summed], dtype=proto.dtype if proto else np.float64)
    m = float(aps.mean()) if len(aps) else 0.0
    return DotaMapResult(m, classes, per_class, without, proto.name if proto else "dota", iou_thr, ap_mode)


def eval_dota(gt: GroundTruth | str | os.PathLike, dets: Detections | str | os.PathLike, *, iou_thr: float = 0.5,
              ap_mode: ApMode = "11point", protocol: ProtocolName = "dota", ties: TieOrder = "reference",
              skip_invalid: bool = False, unknown_images: UnknownImages = "error",
              categories: str | CategorySet | None = None,
              unknown_gt_classes: UnknownGtClasses = "error") -> DotaMapResult:
    """DOTA mAP of a Task1 folder (or loaded :class:`Detections`) against a labelTxt folder (or
    :class:`GroundTruth`). Also ``rscovlm eval dota``. ``categories``: the ground-truth vocabulary (a class
    outside it is an error, or with ``unknown_gt_classes="ignore"`` dropped and counted; ``None``: no check)."""
    check_iou_thr(iou_thr)  # before reading the folders
    gt, dets = load_pair(gt, dets, skip_invalid=skip_invalid, unknown_images=unknown_images, categories=categories,
                         unknown_gt_classes=unknown_gt_classes)
    order = list(categories.classes) if isinstance(categories, CategorySet) else None
    if order is None and isinstance(categories, str):
        from rscovlm.eval.dota_data import resolve_categories

        vocab = resolve_categories(categories)
        order = list(vocab.classes) if vocab is not None else None
    result = map_from_overlaps(compute_overlaps(gt, dets, protocol), iou_thr, ap_mode, ties, mean_order=order)
    result.protocol = get_protocol(protocol).name
    result.skipped_lines = len(gt.skipped) + len(dets.skipped)
    result.dropped_unknown_image = dets.dropped_unknown_image
    result.missing_det_files = list(dets.missing_files)
    result.dropped_unknown_gt_classes = dict(gt.dropped_unknown_classes)
    return result


def load_pair(gt, dets, *, skip_invalid: bool = False, unknown_images: UnknownImages = "error",
              categories: str | CategorySet | None = None, unknown_gt_classes: UnknownGtClasses = "error"
              ) -> tuple[GroundTruth, Detections]:
    """Load ground truth / detections given as folders; pass loaded objects through. ``categories`` and
    ``unknown_gt_classes``: the ground-truth vocabulary check of :func:`rscovlm.eval.dota_data.load_gt_dir`
    (applied when ``gt`` is a folder)."""
    if not isinstance(gt, GroundTruth):
        gt = load_gt_dir(gt, skip_invalid=skip_invalid, categories=categories, unknown_classes=unknown_gt_classes)
    if not isinstance(dets, Detections):
        dets = load_task1_dir(dets, gt, skip_invalid=skip_invalid, unknown_images=unknown_images)
    return gt, dets
