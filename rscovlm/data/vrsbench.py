"""VRSBench (Li et al., NeurIPS 2024 D&B; HF ``xiang709/VRSBench``) annotation files.

Checked against: github lx709/VRSBench @ 9245e48 ``prepare_eval_all.ipynb`` (the authors' code that builds the
evaluation files from the per-image annotations), ``eval_fianl/compute_metrics.ipynb``, and how the RSCoVLM
reference reads the files (VisionXLab/RSCoVLM @ c507282 ``rscovlm/eval/data/vrsbench.py``,
``data_prepare/format_vrsbench.py``). No released record could be read directly; the field lists below are the
ones that code writes and reads.

**Per-image annotation** (``Annotations_{train,val}/<image stem>.json``, one object)::

    {"image": "P0003_0002.png", "caption": "...",
     "objects": [{"obj_id": 1, "obj_cls": "ship",
                  "obj_corner": [x1, y1, x2, y2, x3, y3, x4, y4],   # 4 corners, 0-1 of width / height
                  "obj_coord": [x1, y1, x2, y2],                    # horizontal box, 0-1
                  "is_unique": true, "obj_position": "...", "obj_size": "small", "referring_sentence": "..."}],
     "qa_pairs": [{"ques_id": 1, "question": "...", "type": "object quantity", "answer": "..."}]}

**Referring evaluation file** (``VRSBench_EVAL_referring.json``, a JSON array)::

    {"image_id": "P0003_0002.png", "question": "<referring sentence>", "ground_truth": "{<12><34><56><78>}",
     "dataset": "RSBench", "question_id": 17, "type": "ref", "unique": true,
     "obj_corner": [...], "obj_cls": "ship", "obj_ids": [0], "size_group": "small"}

  ``ground_truth`` is the object's horizontal box on a **0-100 grid**, computed from ``obj_corner`` as
  ``int(clip(min(xs), 0, 1) * 100)`` ... ``int(clip(max(xs), 0, 1) * 100)`` - truncated, so the grid box lies
  inside the object's box by up to one grid unit. ``obj_corner`` keeps the exact corners (0-1); both are offered
  here in pixels (:meth:`VRSBenchReferring.gt_pixels`, :meth:`VRSBenchReferring.corner_box_pixels`).
  ``compute_metrics.ipynb`` reads ``is_unique`` where the prepared file writes ``unique``: either is accepted.
  Optional ``obb_v1`` ``{<cx><cy><w><h>|<deg>}`` / ``obb_v2`` ``{<x1><y1><x2><y2>|<deg>}`` (degrees in [-90, 90])
  are kept as text.

**VQA / caption evaluation files** (``VRSBench_EVAL_vqa.json``, ``VRSBench_EVAL_Cap.json``): ``image_id``,
``question``, ``ground_truth`` (answer, or caption), ``question_id``, ``type`` (VQA: object existence / position /
quantity / category / color / shape / size / direction, scene type, image, reasoning, rural or urban; caption:
``caption``).

The benchmark registry reads the evaluation files through these readers (:mod:`rscovlm.eval.benchmarks.vrsbench`).
Coordinates in pixels are ``value * width`` (x) and ``value * height`` (y) of the original image, continuous.
Malformed records raise :class:`rscovlm.data.records.RecordError` naming file, line and field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from rscovlm.data.records import Problem, RecordError, iter_records
from rscovlm.data.textio import read_text

GRID_BOX = re.compile(r"^\s*\{\s*<\s*(\d+)\s*>\s*<\s*(\d+)\s*>\s*<\s*(\d+)\s*>\s*<\s*(\d+)\s*>\s*\}\s*$")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class VRSBenchReferring:
    """One referring question: ``gt_grid`` = the file's ``ground_truth`` box (0-100 grid ints), ``obj_corner`` =
    the 4 corners (0-1; None when the file has none), ``raw`` = the record as read, ``line`` = where it starts in
    the file."""

    question_id: Any
    image_id: str
    question: str
    gt_grid: tuple[int, int, int, int]
    obj_corner: tuple[float, ...] | None
    unique: bool | None
    obj_cls: str | None
    size_group: str | None
    raw: dict
    line: int | None = None

    def gt_pixels(self, width: float, height: float) -> tuple[float, float, float, float]:
        """``ground_truth`` in original pixels (``v / 100 * size``)."""
        x1, y1, x2, y2 = self.gt_grid
        return x1 / 100 * width, y1 / 100 * height, x2 / 100 * width, y2 / 100 * height

    def corner_box_pixels(self, width: float, height: float) -> tuple[float, float, float, float]:
        """The horizontal box of ``obj_corner`` (clipped to the image as the benchmark does) in original pixels,
        without the grid's truncation."""
        if self.obj_corner is None:
            raise ValueError(f"question {self.question_id}: no obj_corner")
        xs, ys = self.obj_corner[0::2], self.obj_corner[1::2]
        return (max(min(xs), 0.0) * width, max(min(ys), 0.0) * height, min(max(xs), 1.0) * width,
                min(max(ys), 1.0) * height)

    def corners_pixels(self, width: float, height: float) -> list[float]:
        """``obj_corner`` in original pixels (8 numbers, the file's vertex order)."""
        if self.obj_corner is None:
            raise ValueError(f"question {self.question_id}: no obj_corner")
        return [v * (width if i % 2 == 0 else height) for i, v in enumerate(self.obj_corner)]


def _corners(value, path: str, line: int, field: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    flat = value
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        flat = [c for p in value for c in p]  # 4 [x, y] points
    if not isinstance(flat, list) or len(flat) != 8 or not all(_num(v) for v in flat):
        raise RecordError(Problem(path, line, field, f"expected 4 corners (8 numbers, 0-1), got {value!r}"))
    return tuple(float(v) for v in flat)


def read_vrsbench_referring(path: str | os.PathLike) -> list[VRSBenchReferring]:
    """The questions of ``VRSBench_EVAL_referring.json`` (JSON array or JSON Lines)."""
    path = str(path)
    out = []
    for line, rec in iter_records(path):
        if not isinstance(rec, dict):
            raise RecordError(Problem(path, line, "", "expected a JSON object"))
        for key in ("image_id", "question", "ground_truth"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise RecordError(Problem(path, line, key, f"required non-empty string, got {rec.get(key)!r}"))
        m = GRID_BOX.match(rec["ground_truth"])
        if m is None:
            raise RecordError(Problem(path, line, "ground_truth", f"expected {{<x1><y1><x2><y2>}} on the 0-100 "
                                                                  f"grid, got {rec['ground_truth']!r}"))
        box = tuple(int(v) for v in m.groups())
        if not (0 <= box[0] <= box[2] <= 100 and 0 <= box[1] <= box[3] <= 100):
            raise RecordError(Problem(path, line, "ground_truth", f"{rec['ground_truth']} is no box on the "
                                                                  f"0-100 grid"))
        unique = rec.get("unique", rec.get("is_unique"))
        out.append(VRSBenchReferring(rec.get("question_id"), rec["image_id"], rec["question"], box,
                                     _corners(rec.get("obj_corner"), path, line, "obj_corner"),
                                     None if unique is None else bool(unique), rec.get("obj_cls"),
                                     rec.get("size_group"), rec, line))
    return out


def read_vrsbench_eval(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """``(line, record)`` of a VQA or caption evaluation file, checked for ``image_id``, ``question`` and
    ``ground_truth`` (a string, or a list of strings for captions)."""
    path = str(path)
    out = []
    for line, rec in iter_records(path):
        if not isinstance(rec, dict):
            raise RecordError(Problem(path, line, "", "expected a JSON object"))
        for key in ("image_id", "question"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise RecordError(Problem(path, line, key, f"required non-empty string, got {rec.get(key)!r}"))
        gt = rec.get("ground_truth")
        if not (isinstance(gt, str) or (isinstance(gt, list) and gt and all(isinstance(g, str) for g in gt))):
            raise RecordError(Problem(path, line, "ground_truth", f"expected a string (or list), got {gt!r}"))
        out.append((line, rec))
    return out


def read_vrsbench_annotation(path: str | os.PathLike) -> dict:
    """One per-image annotation file, checked: ``image``; every object's ``obj_corner`` (8 numbers in 0-1, or 4
    points), ``obj_cls`` and ``referring_sentence`` (when present); ``qa_pairs`` with question and answer.
    ``obj_corner`` comes back flat (8 numbers)."""
    path = str(path)
    try:
        rec = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise RecordError(Problem(path, err.lineno, "", f"not valid JSON ({err.msg} at column {err.colno})")) \
            from None
    if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
        raise RecordError(Problem(path, 1, "image", "expected an object with the image file name"))
    for i, obj in enumerate(rec.get("objects") or []):
        f = f"objects[{i}]"
        if not isinstance(obj, dict):
            raise RecordError(Problem(path, None, f, "expected an object"))
        obj["obj_corner"] = list(_corners(obj.get("obj_corner"), path, None, f"{f}.obj_corner") or [])
        if not isinstance(obj.get("obj_cls"), str):
            raise RecordError(Problem(path, None, f"{f}.obj_cls", f"required class name, got {obj.get('obj_cls')!r}"))
    for i, qa in enumerate(rec.get("qa_pairs") or []):
        if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "answer" not in qa:
            raise RecordError(Problem(path, None, f"qa_pairs[{i}]", "expected {question, answer, type}"))
    return rec
