"""Visual grounding Acc@0.5 (GeoGround protocol).

The first predicted box, mapped back to original pixels, is compared with the ground-truth box by IoU in
continuous coordinates (``(x2 - x1) * (y2 - y1)``, no ``+1`` pixel terms - those inflate published numbers);
a hit needs IoU strictly greater than the threshold; an answer without a readable box is a miss.
"""

from __future__ import annotations

import re

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


# ---- released scorers ------------------------------------------------------------------------------------------

def reference_iou(box1, box2) -> float:
    """IoU as VisionXLab/RSCoVLM computes it for GeoGround (``rscovlm/eval/metric/metric.py::iou``): the
    intersection with the ``-1 ... +1`` pixel convention, the union from ``(x2 - x1) * (y2 - y1)`` areas (no
    ``+1``). A zero union raises ZeroDivisionError there; here it is 0.0."""
    inter_x1, inter_y1 = max(box1[0], box2[0]), max(box1[1], box2[1])
    inter_x2, inter_y2 = min(box1[2] - 1, box2[2] - 1), min(box1[3] - 1, box2[3] - 1)
    if inter_x1 < inter_x2 and inter_y1 < inter_y2:
        inter = (inter_x2 - inter_x1 + 1) * (inter_y2 - inter_y1 + 1)
    else:
        inter = 0
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - inter
    return float(inter) / union if union else 0.0


def vrsbench_iou(gt, pred) -> tuple[float, float, float]:
    """``(iou, intersection, union)`` of VRSBench's ``eval_utils.computeIoU`` (``+1`` pixel terms, boxes as
    given, no reordering; a zero union raises ZeroDivisionError there, which its notebook counts as an invalid
    answer)."""
    x1, y1, x2, y2 = gt
    x3, y3, x4, y4 = pred
    inter = max(0, min(x2, x4) - max(x1, x3) + 1) * max(0, min(y2, y4) - max(y1, y3) + 1)
    union = (x2 - x1 + 1) * (y2 - y1 + 1) + (x4 - x3 + 1) * (y4 - y3 + 1) - inter
    return inter / union, inter, union


def continuous_iou(a, b) -> tuple[float, float, float]:
    """``(iou, intersection, union)`` of two hbb in continuous coordinates (no ``+1``); a box with ``x2 <= x1`` or
    ``y2 <= y1`` has no area (IoU 0 unless both are empty: then 0 as well)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return (inter / union if union > 0 else 0.0), inter, union


_INTS = re.compile(r"\d+")
_SIGNED = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def vrsbench_ints(text: str) -> list[int]:
    """The integers VRSBench's notebook reads from a box text: ``re.findall(r'\\d+', text)`` (signs and decimal
    points are lost: ``-3.5`` -> ``[3, 5]``)."""
    return [int(t) for t in _INTS.findall(text)]


def first_box_numbers(text: str) -> list[float] | None:
    """The first four numbers of a box text, signs and decimals kept (``{<12.5><-3><40><50>}`` ->
    ``[12.5, -3.0, 40.0, 50.0]``); None when there are fewer than four."""
    nums = [float(t) for t in _SIGNED.findall(text)[:4]]
    return nums if len(nums) == 4 else None


VRSBENCH_VG_RULES = {
    "official": "VRSBench compute_metrics.ipynb: integers by regex \\d+ (signs and decimals lost), the first four "
                "of answer and ground truth, IoU with +1-pixel terms, hit when IoU >= thr; an answer with fewer "
                "than four integers (or a zero union) is invalid and still counts in the denominator",
    "strict": "the first four numbers (signed decimals) of answer and ground truth, continuous IoU without +1, hit "
              "when IoU >= thr; an answer without four numbers is a miss (IoU 0) in the denominator",
}


def score_vrsbench_referring(lines: list[dict], rule: str = "official", thresholds=(0.5, 0.7)) -> dict:
    """VRSBench visual-grounding metrics of output lines ``{"image_id", "ground_truth", "answer", "is_unique"?}``
    (boxes as text on VRSBench's 0-100 grid, e.g. ``{<12><30><40><66>}``).

    As the notebook: lines whose ``is_unique`` (or ``unique``) is present and not in ``{0, 1}`` are left out
    (counted in ``filtered``; the notebook requires the field, a line without it is kept here). Returns
    ``{"Acc@0.5", "Acc@0.7", "meanIoU", "cumIoU"}`` in percent (as VRSBench prints them), ``total``, ``valid``,
    ``invalid`` (official: answers the notebook prints as invalid; strict: answers without a box) and ``rule``."""
    if rule not in VRSBENCH_VG_RULES:
        raise ValueError(f"unknown VRSBench grounding rule {rule!r}; expected one of {list(VRSBENCH_VG_RULES)}")
    counts = [0] * len(thresholds)
    total = valid = filtered = 0
    cum_i = cum_u = sum_iou = 0.0
    for line in lines:
        unique = line.get("is_unique", line.get("unique", 1))
        if unique not in (0, 1):
            filtered += 1
            continue
        total += 1
        gt_text, answer = str(line["ground_truth"]), str(line.get("answer") or "")
        if rule == "official":
            gt, pred = vrsbench_ints(gt_text)[:4], vrsbench_ints(answer)[:4]
            try:
                iou, inter, union = vrsbench_iou(gt, pred)
            except (ValueError, ZeroDivisionError):
                continue
        else:
            gt, pred = first_box_numbers(gt_text), first_box_numbers(answer)
            if gt is None:
                raise ValueError(f"ground truth {gt_text!r} of {line.get('image_id')!r} holds no box")
            if pred is None:
                cum_u += continuous_iou(gt, gt)[2]
                continue
            iou, inter, union = continuous_iou(gt, pred)
        valid += 1
        sum_iou += iou
        cum_i += inter
        cum_u += union
        for k, thr in enumerate(thresholds):
            counts[k] += iou >= thr
    pct = (lambda x: 100.0 * x / total if total else None)  # noqa: E731
    out = {f"Acc@{thr}": pct(c) for thr, c in zip(thresholds, counts)}
    out.update({"meanIoU": pct(sum_iou), "cumIoU": 100.0 * cum_i / cum_u if cum_u else None, "total": total,
                "valid": valid, "invalid": total - valid, "filtered": filtered, "rule": rule})
    return out


GEOGROUND_RULES = {
    "official": "the GeoGround protocol as VisionXLab/RSCoVLM scores it (eval/metric/geoground.py; GeoGround's own "
                "scorer is not public): the first box of the answer read by the reference's parser (plain: the "
                "first line must start with four non-negative integers and a label; json: the first [n, n, n, n]; "
                "nothing readable = [0, 0, 0, 0]), rescaled to original pixels, the reference's IoU (intersection "
                "with -1/+1 pixel terms, union without), hit when IoU > 0.5",
    "strict": "the first box in any form the tolerant reader knows (signed decimals kept), rescaled to original "
              "pixels, continuous IoU without +1, hit when IoU > 0.5; no box = miss",
}


def geoground_hit(text: str, gt_box, plan, rule: str = "official", form: str | None = "plain",
                  family=None, thr: float = 0.5) -> tuple[bool, float, bool]:
    """``(hit, iou, readable)`` of one grounding answer. ``gt_box`` is ``[x1, y1, x2, y2]`` in original pixels,
    ``plan`` the :class:`rscovlm.resolution.ResizePlan` of the image the model saw, ``form`` the prompt's form (the
    reference reads plain and JSON answers by different rules), ``family`` the model family (frame of the answer's
    numbers; default Qwen2.5-VL: pixels of the resized input)."""
    from rscovlm.geometry.boxes import Frame
    from rscovlm.protocol.grounding import read_grounding

    if rule not in GEOGROUND_RULES:
        raise ValueError(f"unknown grounding rule {rule!r}; expected one of {list(GEOGROUND_RULES)}")
    mw, mh = plan.model_size
    frame = family.box_frame_for(mw, mh) if family is not None else Frame.model(mw, mh)
    read = read_grounding(text, "hbb", "reference" if rule == "official" else "auto",
                          form if rule == "official" else None)
    readable = bool(read.values)
    if rule == "official":
        if read.normalized:  # the reference asserts on normalized answers; counted as a miss
            return False, 0.0, readable
        v = read.values[0] if readable else (0.0, 0.0, 0.0, 0.0)
        box = Boxes(np.asarray([v], float), "hbb", frame).to_frame(plan.original).data[0]
        iou = reference_iou([float(v) for v in box], list(gt_box))
        return bool(iou > thr), iou, readable
    if not readable:
        return False, 0.0, False
    box = read.boxes(frame)[:1].to_frame(plan.original).data[0]
    iou = continuous_iou([float(v) for v in box], list(gt_box))[0]
    return bool(iou > thr), float(iou), True
