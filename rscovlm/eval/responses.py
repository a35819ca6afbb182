"""Score detection straight from model responses (a jsonl written by inference).

Each line is one image::

    {"image_id": "P0003", "response": "plane: (12,30),(40,30),(40,60),(12,60)",
     "resize": {"original": [W, H], "model": [w, h]}, "family": "qwen2_5_vl"}

``resize`` is :meth:`rscovlm.resolution.ResizePlan.as_dict` (top-level ``"original"``/``"model"`` keys are
accepted too). ``family`` (optional; default: the ``family`` argument, ``qwen2_5_vl``) names the model family
(:mod:`rscovlm.model.families`) that wrote the response, which fixes the frame its coordinates are in:
``family.box_frame_for(w, h)`` - pixels of the resized input for Qwen2.5-VL, the 0-1000 grid for Qwen2-VL and
Qwen3-VL. The response is read by :func:`rscovlm.protocol.detection.parse_detections` with the boxes in that
frame, mapped back to the original frame, turned into quads and scored against labelTxt ground truth
with the score-free metrics: AP_nc (random scores; no threshold) and mF1. The report includes the fraction of
object fragments that could not be read (``unparsed_fraction``, unknown labels included), responses that hit a
reading limit (``n_over_limits``: longer than the readers read, too many pieces, JSON nested too deep; what lies
beyond is counted as unreadable), boxes that came out non-finite (dropped and counted), and ground-truth images
without a response (scored as "no detections"). Reading a response never fails: any text is scored.

A malformed jsonl line (bad JSON, missing field, bad resize, unknown family, duplicate image id) raises an error
naming ``file:line``; with ``skip_invalid=True`` it is skipped and counted. A response for an image without ground
truth is an error unless ``unknown_images="ignore"`` (then dropped and counted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.data.dota_io import SkippedLine
from rscovlm.data.records import RecordError, iter_jsonl
from rscovlm.eval.ap_nc import DEFAULT_IOU_SPEC, ap_nc_table
from rscovlm.eval.dota_data import ClassDets, Detections, GroundTruth, load_gt_dir
from rscovlm.eval.dota_map import compute_overlaps
from rscovlm.eval.f1 import f1_from_overlaps
from rscovlm.model.families import ModelFamily, families, family_for
from rscovlm.protocol.categories import CategorySet, get_category_set
from rscovlm.protocol.detection import ParseResult, parse_detections
from rscovlm.resolution import ResizePlan


class ResponseFormatError(ValueError):
    """A bad line in a responses jsonl; the message starts with ``file:line``."""


@dataclass
class ResponseStats:
    """Parsing counts over a responses file: fragments (one per object the model tried to write), unreadable
    ones, unknown labels, non-finite boxes, ``There is none.`` answers, responses that hit a reading limit
    (:mod:`rscovlm.protocol.readers`; the text beyond it is among the unreadable fragments), and what was left
    out."""

    n_responses: int = 0
    n_fragments: int = 0
    n_unparsed: int = 0
    n_unknown_labels: int = 0
    n_nonfinite_boxes: int = 0
    n_none_answers: int = 0
    n_over_limits: int = 0
    images_without_response: int = 0
    dropped_unknown_image: int = 0
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def unparsed_fraction(self) -> float:
        return (self.n_unparsed + self.n_unknown_labels) / self.n_fragments if self.n_fragments else 0.0

    def to_dict(self) -> dict:
        return {"n_responses": self.n_responses, "n_fragments": self.n_fragments, "n_unparsed": self.n_unparsed,
                "n_unknown_labels": self.n_unknown_labels, "unparsed_fraction": self.unparsed_fraction,
                "n_nonfinite_boxes": self.n_nonfinite_boxes, "n_none_answers": self.n_none_answers,
                "n_over_limits": self.n_over_limits,
                "images_without_response": self.images_without_response,
                "dropped_unknown_image": self.dropped_unknown_image, "skipped_lines": len(self.skipped)}


def _plan_of(record: dict) -> ResizePlan:
    data = record.get("resize", record)
    if not isinstance(data, dict) or "original" not in data or "model" not in data:
        raise ValueError('needs "resize": {"original": [W, H], "model": [w, h]}')
    try:
        return ResizePlan.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f'bad "resize" {data!r}: {err}') from None


def _family(name) -> ModelFamily:
    try:
        return family_for(name)
    except (KeyError, TypeError):
        raise ValueError(f"family {name!r} is not a registered model family; known: {sorted(families())}") from None


def read_response(response: str, plan: ResizePlan, family: ModelFamily,
                  categories: CategorySet) -> tuple[ParseResult, np.ndarray]:
    """One detection answer -> its parse result and the ``(K, 8)`` quads of the readable objects mapped to the
    original frame (coordinates read in ``family.box_frame_for`` of the resize ``plan``; an obb becomes its quad
    before the per-axis scaling, so its mapped shape is exact)."""
    parsed = parse_detections(response, frame=family.box_frame_for(*plan.model_size), categories=categories)
    if len(parsed.objects) == 0:
        return parsed, np.zeros((0, 8))
    return parsed, parsed.objects.boxes.to_quad().to_frame(plan.original).data  # exact: quads scale per axis


def load_responses(path: str | os.PathLike, gt: GroundTruth, *, categories: str = "dota-v1.0",
                   skip_invalid: bool = False, unknown_images: str = "error",
                   family: str = "qwen2_5_vl") -> tuple[Detections, ResponseStats]:
    """Parse a responses jsonl into score-free :class:`Detections` (quads, original frame) against ``gt``;
    ``family``: the model family of lines without a ``family`` field (see module docstring)."""
    path = Path(path)
    cats = get_category_set(categories)
    default_family = _family(family)
    stats = ResponseStats()
    per_class: dict[str, tuple[list, list]] = {}
    seen: set[str] = set()
    for line_no, record in iter_jsonl(path, errors="yield"):
        try:
            if isinstance(record, RecordError):
                raise ValueError(record.problem.message)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            image_id = record.get("image_id")
            if not isinstance(image_id, str) or not image_id:
                raise ValueError('missing "image_id" (a string)')
            response = record.get("response")
            if not isinstance(response, str):
                raise ValueError('missing "response" (a string)')
            plan = _plan_of(record)
            line_family = default_family if record.get("family") is None else _family(record["family"])
            if image_id in seen:
                raise ValueError(f"image {image_id!r} has a second response")
        except (ValueError, TypeError, KeyError) as err:
            if not skip_invalid:
                raise ResponseFormatError(f"{path}:{line_no}: {err}") from None
            stats.skipped.append(SkippedLine(str(path), line_no, str(err)))
            continue
        seen.add(image_id)
        if image_id not in gt.index:
            if unknown_images == "error":
                raise ResponseFormatError(f"{path}:{line_no}: image {image_id!r} has no ground-truth file "
                                          f"(unknown_images='ignore' or --unknown-images ignore drops such "
                                          f"responses)")
            stats.dropped_unknown_image += 1
            continue
        stats.n_responses += 1
        parsed, quads = read_response(response, plan, line_family, cats)
        stats.n_fragments += parsed.n_fragments
        stats.n_unparsed += len(parsed.unparsed)
        stats.n_unknown_labels += len(parsed.unknown_labels)
        stats.n_none_answers += int(parsed.none)
        stats.n_over_limits += int(bool(parsed.limits))
        objs = parsed.objects
        finite = np.isfinite(quads).all(axis=1)
        stats.n_nonfinite_boxes += int((~finite).sum())
        img = gt.index[image_id]
        for k in np.flatnonzero(finite):
            entry = per_class.setdefault(objs.labels[k], ([], []))
            entry[0].append(quads[k])
            entry[1].append(img)
    stats.images_without_response = len(set(gt.image_ids) - seen)
    classes = {c: ClassDets(np.asarray(q, np.float64).reshape(-1, 8), np.asarray(i, np.int64), None)
               for c, (q, i) in sorted(per_class.items())}
    return Detections(classes, stats.skipped, stats.dropped_unknown_image), stats


def eval_responses(responses: str | os.PathLike, gt, *, iou_thr: float = 0.5, seeds=10,
                   iou_thrs: str = DEFAULT_IOU_SPEC, ap_mode: str = "11point", protocol: str = "dota",
                   categories: str = "dota-v1.0", skip_invalid: bool = False, unknown_images: str = "error",
                   family: str = "qwen2_5_vl", unknown_gt_classes: str = "error") -> dict:
    """AP_nc (``metrics``/``per_class``, as :func:`rscovlm.eval.ap_nc.eval_dota_nc`), mF1 at ``iou_thr``
    (``f1``) and parsing statistics (``parsing``) of a responses jsonl; ``skipped_lines`` counts the label and
    jsonl lines left out with ``skip_invalid``; ``family``: the model family that wrote lines without a
    ``family`` field. Ground-truth classes outside ``categories`` are an error naming file:line, or with
    ``unknown_gt_classes="ignore"`` dropped and counted (``dropped_unknown_gt_classes``). Also
    ``rscovlm eval responses``."""
    _family(family)  # a bad name fails before the ground truth is read
    if not isinstance(gt, GroundTruth):
        gt = load_gt_dir(gt, skip_invalid=skip_invalid, categories=categories, unknown_classes=unknown_gt_classes)
    dets, stats = load_responses(responses, gt, categories=categories, skip_invalid=skip_invalid,
                                 unknown_images=unknown_images, family=family)
    overlaps = compute_overlaps(gt, dets, protocol)
    table = ap_nc_table(overlaps, score_thrs=[0.0], seeds=seeds, iou_spec=iou_thrs, ap_mode=ap_mode)
    return {"classes": table.classes, **table.summary(0), "seeds": table.seeds, "iou_thrs": table.iou_thrs,
            "f1": f1_from_overlaps(overlaps, iou_thr=iou_thr), "parsing": stats.to_dict(), "protocol": protocol,
            "ap_mode": ap_mode, "family": family, "skipped_lines": len(gt.skipped) + len(stats.skipped),
            "dropped_unknown_image": stats.dropped_unknown_image,
            "dropped_unknown_gt_classes": dict(gt.dropped_unknown_classes)}
