"""Score detection straight from model responses (a jsonl written by inference).

Each line is one image::

    {"image_id": "P0003", "response": "120,45,160,45,160,80,120,80 plane\n",
     "resize": {"original": [W, H], "model": [w, h]}, "family": "qwen2_5_vl", "finish_reason": "stop"}

``resize`` is :meth:`rscovlm.resolution.ResizePlan.as_dict` (top-level ``"original"``/``"model"`` keys are
accepted too). ``family`` (optional; default: the ``family`` argument, ``qwen2_5_vl``) names the model family
(:mod:`rscovlm.model.families`) that wrote the response, which fixes the frame its coordinates are in:
``family.box_frame_for(w, h)`` - pixels of the resized input for Qwen2.5-VL, the 0-1000 grid for Qwen2-VL and
Qwen3-VL. ``finish_reason`` (optional; a string or null, as :class:`rscovlm.infer.Generation` and OpenAI-style
servers give it): ``"length"`` marks an answer cut off by the generation budget, counted as truncated.

The response is read by :func:`rscovlm.protocol.detection.parse_detections` - every form a user meets: the
reference's plain and JSON answers (quad, hbb, oriented), Qwen2.5-VL's ``bbox_2d`` JSON, GeoChat, rscovlm's
earlier forms - with the boxes in that frame, mapped back to the original frame, turned into quads and scored
against labelTxt ground truth with the score-free metrics: AP (``score_mode``: random scores = AP_nc, all ones =
the reference's evaluation, LMMRotate's per-image draws; :mod:`rscovlm.eval.ap_nc`) and mF1
(:mod:`rscovlm.eval.f1`). The report includes the fraction of object fragments that could not be read
(``unparsed_fraction``, unknown labels included), the answers per form (``forms``; ``object_forms``: objects per
form), labels mapped through the prompt set's synonym table (only with ``map_synonyms``; counted in
``synonym_labels``, never silently), truncated answers (``n_truncated``), responses that hit a reading limit
(``n_over_limits``: longer than the readers read, too many pieces, JSON nested too deep; what lies beyond is
counted as unreadable), boxes that came out non-finite (dropped and counted), and ground-truth images without a
response (scored as "no detections"). Reading a response never fails: any text is scored.

Order: images are ranked in the order of their lines in the file and objects in answer order (the reference's
results list is in its inference order, each image's objects in answer order); this is what ties follow under
``score_mode="ones"`` and what per-image draws follow.

A malformed jsonl line (bad JSON, missing field, bad resize, unknown family, bad finish_reason, duplicate image
id) raises an error naming ``file:line``; with ``skip_invalid=True`` it is skipped and counted. A response for an
image without ground truth is an error unless ``unknown_images="ignore"`` (then dropped and counted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.data.records import RecordError, iter_jsonl
from rscovlm.dota.io import SkippedLine
from rscovlm.eval.ap_nc import DEFAULT_IOU_SPEC, ap_nc_table, det_positions, resolve_seeds
from rscovlm.eval.dota_data import ClassDets, ClassGT, Detections, GroundTruth, load_gt_dir
from rscovlm.eval.dota_map import TIE_ORDERS, compute_overlaps, get_protocol
from rscovlm.eval.f1 import check_f1_mode, f1_from_overlaps, lmmrotate_f1
from rscovlm.model.families import ModelFamily, families, family_for
from rscovlm.protocol.categories import CategorySet, get_category_set
from rscovlm.protocol.detection import ParseResult, parse_detections
from rscovlm.protocol.prompt_sets import DEFAULT_PROMPT_SET, get_prompt_set
from rscovlm.resolution import ResizePlan


class ResponseFormatError(ValueError):
    """A bad line in a responses jsonl; the message starts with ``file:line``."""


@dataclass
class ResponseStats:
    """Parsing counts over a responses file: fragments (one per object the model tried to write), unreadable
    ones, unknown labels, labels mapped through the synonym table, non-finite boxes, ``There is none.`` answers,
    answers per form and objects per form, truncated answers (``finish_reason == "length"``) and answers without a
    finish reason, responses that hit a reading limit (:mod:`rscovlm.protocol.readers`; the text beyond it is
    among the unreadable fragments), and what was left out."""

    n_responses: int = 0
    n_fragments: int = 0
    n_unparsed: int = 0
    n_unknown_labels: int = 0
    n_synonym_labels: int = 0
    synonym_labels: dict[str, int] = field(default_factory=dict)
    n_nonfinite_boxes: int = 0
    n_none_answers: int = 0
    n_over_limits: int = 0
    n_truncated: int = 0
    n_finish_unknown: int = 0
    forms: dict[str, int] = field(default_factory=dict)
    object_forms: dict[str, int] = field(default_factory=dict)
    images_without_response: int = 0
    dropped_unknown_image: int = 0
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def unparsed_fraction(self) -> float:
        return (self.n_unparsed + self.n_unknown_labels) / self.n_fragments if self.n_fragments else 0.0

    def add(self, parsed: ParseResult, finish_reason: str | None) -> None:
        self.n_responses += 1
        self.n_fragments += parsed.n_fragments
        self.n_unparsed += len(parsed.unparsed)
        self.n_unknown_labels += len(parsed.unknown_labels)
        self.n_none_answers += int(parsed.none)
        self.n_over_limits += int(bool(parsed.limits))
        self.n_truncated += int(finish_reason == "length")
        self.n_finish_unknown += int(finish_reason is None)
        self.forms[parsed.form] = self.forms.get(parsed.form, 0) + 1
        for form, n in parsed.forms.items():
            self.object_forms[form] = self.object_forms.get(form, 0) + n
        for label, cls in parsed.synonym_labels:
            key = f"{label} -> {cls}"
            self.synonym_labels[key] = self.synonym_labels.get(key, 0) + 1
        self.n_synonym_labels += len(parsed.synonym_labels)

    def to_dict(self) -> dict:
        return {"n_responses": self.n_responses, "n_fragments": self.n_fragments, "n_unparsed": self.n_unparsed,
                "n_unknown_labels": self.n_unknown_labels, "unparsed_fraction": self.unparsed_fraction,
                "n_synonym_labels": self.n_synonym_labels, "synonym_labels": dict(sorted(self.synonym_labels.items())),
                "n_nonfinite_boxes": self.n_nonfinite_boxes, "n_none_answers": self.n_none_answers,
                "n_over_limits": self.n_over_limits, "n_truncated": self.n_truncated,
                "n_finish_unknown": self.n_finish_unknown, "forms": dict(sorted(self.forms.items())),
                "object_forms": dict(sorted(self.object_forms.items())),
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


def read_response(response: str, plan: ResizePlan, family: ModelFamily, categories: CategorySet,
                  synonyms: dict | None = None) -> tuple[ParseResult, np.ndarray]:
    """One detection answer -> its parse result and the ``(K, 8)`` quads of the readable objects mapped to the
    original frame (coordinates read in ``family.box_frame_for`` of the resize ``plan``; an obb becomes its quad
    before the per-axis scaling, so its mapped shape is exact). ``synonyms``: a synonym table (``{class: [word,
    ...]}``) that maps labels outside the vocabulary (listed in ``synonym_labels``)."""
    parsed = parse_detections(response, frame=family.box_frame_for(*plan.model_size), categories=categories,
                              synonyms=synonyms)
    if len(parsed.objects) == 0:
        return parsed, np.zeros((0, 8))
    return parsed, parsed.objects.boxes.to_quad().to_frame(plan.original).data  # exact: quads scale per axis


def _finish_reason(record: dict) -> str | None:
    value = record.get("finish_reason")
    if value is not None and not isinstance(value, str):
        raise ValueError(f'"finish_reason" must be a string or null, got {value!r}')
    return value


def synonym_table(prompt_set: str | None, categories: str) -> dict:
    """The synonym table of ``prompt_set`` for the dataset of vocabulary ``categories`` (``dota-v1.0`` ->
    ``dota``)."""
    dataset = categories.split("-")[0]
    try:
        return get_prompt_set(prompt_set).synonyms(dataset)
    except KeyError as err:
        raise ValueError(str(err.args[0]) if err.args else str(err)) from None


def images_in_order(gt: GroundTruth, first: list[str]) -> tuple[GroundTruth, np.ndarray]:
    """``gt`` with its images renumbered: ``first`` (ids of ``gt``, in order) then the others in their order.
    Returns the new ground truth and ``new_index[old_index]``."""
    seen = set(first)
    ids = list(first) + [i for i in gt.image_ids if i not in seen]
    new_of_old = np.empty(len(gt.image_ids), np.int64)
    new_of_old[[gt.index[i] for i in ids]] = np.arange(len(ids))
    classes = {c: ClassGT(g.quads, new_of_old[g.image], g.difficult) for c, g in gt.classes.items()}
    return GroundTruth(ids, classes, gt.skipped, gt.dropped_unknown_classes), new_of_old


def load_responses(path: str | os.PathLike, gt: GroundTruth, *, categories: str = "dota-v1.0",
                   skip_invalid: bool = False, unknown_images: str = "error", family: str = "qwen2_5_vl",
                   synonyms: dict | None = None) -> tuple[Detections, ResponseStats, GroundTruth]:
    """Parse a responses jsonl into score-free :class:`Detections` (quads, original frame) against ``gt``;
    ``family``: the model family of lines without a ``family`` field (see module docstring); ``synonyms``: a
    synonym table for labels outside the vocabulary. Returns the detections, the statistics and the ground
    truth with its images renumbered in the order of the file (:func:`images_in_order`), which the
    detections' image indices refer to; each detection's ``order`` is its position in its answer."""
    path = Path(path)
    cats = get_category_set(categories)
    default_family = _family(family)
    stats = ResponseStats()
    per_class: dict[str, tuple[list, list, list]] = {}
    seen: set[str] = set()
    file_order: list[str] = []
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
            finish = _finish_reason(record)
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
        file_order.append(image_id)
        parsed, quads = read_response(response, plan, line_family, cats, synonyms)
        stats.add(parsed, finish)
        objs = parsed.objects
        finite = np.isfinite(quads).all(axis=1)
        stats.n_nonfinite_boxes += int((~finite).sum())
        img = gt.index[image_id]
        for k in np.flatnonzero(finite):
            entry = per_class.setdefault(objs.labels[k], ([], [], []))
            entry[0].append(quads[k])
            entry[1].append(img)
            entry[2].append(int(k))
    stats.images_without_response = len(set(gt.image_ids) - seen)
    gt, new_of_old = images_in_order(gt, file_order)
    classes = {c: ClassDets(np.asarray(q, np.float64).reshape(-1, 8), new_of_old[np.asarray(i, np.int64)], None,
                            np.asarray(o, np.int64))
               for c, (q, i, o) in sorted(per_class.items())}
    return Detections(classes, stats.skipped, stats.dropped_unknown_image), stats, gt


def eval_responses(responses: str | os.PathLike, gt, *, iou_thr: float = 0.5, seeds=None,
                   iou_thrs: str = DEFAULT_IOU_SPEC, ap_mode: str = "11point", protocol: str = "mmrotate1x",
                   score_mode: str = "random", ties: str = "stable", f1_mode: str = "one-to-one",
                   categories: str = "dota-v1.0", skip_invalid: bool = False, unknown_images: str = "error",
                   family: str = "qwen2_5_vl", unknown_gt_classes: str = "error", map_synonyms: bool = False,
                   prompt_set: str | None = DEFAULT_PROMPT_SET) -> dict:
    """AP (``metrics``/``per_class``, as :func:`rscovlm.eval.ap_nc.eval_dota_nc` with ``score_mode``, ``seeds``
    and ``ties``), mF1 at ``iou_thr`` (``f1``; ``f1_mode`` one-to-one or lmmrotate) and parsing statistics
    (``parsing``) of a responses jsonl; ``skipped_lines`` counts the label and jsonl lines left out with
    ``skip_invalid``; ``family``: the model family that wrote lines without a ``family`` field;
    ``map_synonyms``: map labels outside ``categories`` through the synonym table of ``prompt_set`` (counted in
    ``parsing.synonym_labels``); ``prompt_set`` is recorded in the result. Ground-truth classes outside
    ``categories`` are an error naming file:line, or with ``unknown_gt_classes="ignore"`` dropped and counted
    (``dropped_unknown_gt_classes``). Also ``rscovlm eval responses``."""
    _family(family)  # bad settings fail before the ground truth is read
    get_protocol(protocol)
    resolve_seeds(score_mode, seeds)
    check_f1_mode(f1_mode)
    if ties not in TIE_ORDERS:
        raise ValueError(f"unknown tie order {ties!r}; expected one of {TIE_ORDERS}")
    prompt_set_name = get_prompt_set(prompt_set).name
    synonyms = synonym_table(prompt_set, categories) if map_synonyms else None
    if not isinstance(gt, GroundTruth):
        gt = load_gt_dir(gt, skip_invalid=skip_invalid, categories=categories, unknown_classes=unknown_gt_classes)
    dets, stats, gt = load_responses(responses, gt, categories=categories, skip_invalid=skip_invalid,
                                     unknown_images=unknown_images, family=family, synonyms=synonyms)
    overlaps = compute_overlaps(gt, dets, protocol)
    table = ap_nc_table(overlaps, score_thrs=[0.0], seeds=seeds, iou_spec=iou_thrs, ap_mode=ap_mode,
                        score_mode=score_mode, ties=ties, positions=det_positions(dets))
    if f1_mode == "lmmrotate":
        f1 = lmmrotate_f1(gt, dets, list(get_category_set(categories).classes), iou_thr=iou_thr)
    else:
        f1 = {**f1_from_overlaps(overlaps, iou_thr=iou_thr), "f1_mode": "one-to-one"}
    return {"classes": table.classes, **table.summary(0), "seeds": table.seeds, "iou_thrs": table.iou_thrs,
            "score_mode": score_mode, "ties": ties, "f1": f1, "parsing": stats.to_dict(), "protocol": protocol,
            "ap_mode": ap_mode, "family": family, "prompt_set": prompt_set_name, "map_synonyms": map_synonyms,
            "skipped_lines": len(gt.skipped) + len(stats.skipped),
            "dropped_unknown_image": stats.dropped_unknown_image,
            "dropped_unknown_gt_classes": dict(gt.dropped_unknown_classes)}
