"""Merge Task1 detections of split patches back into full-image Task1 files.

Input: a Task1 folder (``Task1_{class}.txt``, lines ``image_id score x1 y1 ... x4 y4``) whose image ids are patch
names ``{stem}__{size}__{x}___{y}`` (see :mod:`rscovlm.dota.split`), coordinates in patch pixels.
Output: a Task1 folder with image id ``stem`` and coordinates in original-image pixels: each box is shifted by
``(x, y)``, then, per image and per class, greedy polygon NMS (:func:`rscovlm.geometry.nms.poly_nms`, DOTA devkit
polygon IoU, a box is dropped when its IoU with a better-scored kept box is ``> iou_thr``; default 0.1 as in
mmrotate's merge) removes the copies that overlapping patches produce. A file is written for every class that
has an input file, empty when nothing is left.

An image id that is not a patch name is an error naming the file and line.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rscovlm.dota.io import (
    TASK1_PREFIX,
    DotaFormatError,
    SkippedLine,
    _Problems,
    read_task1_file,
    task1_class,
    write_task1_dir,
)
from rscovlm.dota.split import parse_patch_name

if TYPE_CHECKING:
    from rscovlm.geometry import ObjectSet


@dataclass
class MergeConfig:
    """Settings of :func:`merge_task1_dir`."""

    iou_thr: float = field(default=0.1, metadata={"help": "per-class polygon NMS IoU threshold (drop when > thr)"})
    workers: int = field(default=1, metadata={"help": "worker processes (one full image per task)"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip (and count) malformed lines instead of "
                                                                "stopping at the first one"})

    def __post_init__(self) -> None:
        if not 0 <= self.iou_thr <= 1:
            raise ValueError(f"iou_thr must be in [0, 1], got {self.iou_thr}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass
class MergeReport:
    """Totals of :func:`merge_task1_dir`: Task1 files and patch detections read, images and detections written
    after NMS, and the lines skipped with ``skip_invalid``."""

    files: int = 0
    patch_detections: int = 0
    images: int = 0
    merged_detections: int = 0
    skipped: list[SkippedLine] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"merged {self.patch_detections} patch detections from {self.files} Task1 files into "
                f"{self.merged_detections} detections on {self.images} images in {self.seconds:.1f} s")
        if self.skipped:
            text += f"\nskipped {len(self.skipped)} invalid lines, first: {self.skipped[0]}"
        return text


def nms_per_class(objects: ObjectSet, iou_thr: float) -> ObjectSet:
    """Per-class :func:`poly_nms`; kept objects ordered by class name, then by descending score."""
    from rscovlm.geometry.nms import poly_nms

    if len(objects) == 0:
        return objects
    quads = objects.boxes.to_quad().data
    labels = np.asarray(objects.labels)
    keep = []
    for label in sorted(set(objects.labels)):
        idx = np.flatnonzero(labels == label)
        keep.append(idx[poly_nms(quads[idx], objects.scores[idx], iou_thr)])
    return objects.select(np.concatenate(keep))


def merge_patch_objects(patches: Mapping[str, ObjectSet], iou_thr: float = 0.1) -> dict[str, ObjectSet]:
    """``{patch_id: ObjectSet in patch pixels}`` -> ``{stem: ObjectSet in image pixels}`` (shift + per-class
    NMS). Raises ``ValueError`` for an id that is not a patch name."""
    from rscovlm.geometry import Boxes

    grouped: dict[str, list[ObjectSet]] = {}
    for patch_id, objects in patches.items():
        parsed = parse_patch_name(patch_id)
        if parsed is None:
            raise ValueError(f"image id {patch_id!r} is not a patch name {{stem}}__{{size}}__{{x}}___{{y}}")
        stem, _size, x, y = parsed
        quads = objects.boxes.to_quad().data + np.array([x, y] * 4, dtype=np.float64)
        grouped.setdefault(stem, []).append(objects.with_boxes(Boxes(quads, "quad")))
    return {stem: nms_per_class(_concat(parts), iou_thr) for stem, parts in sorted(grouped.items())}


def _concat(parts: list[ObjectSet]) -> ObjectSet:
    from rscovlm.geometry import Boxes, ObjectSet

    return ObjectSet(Boxes(np.concatenate([p.boxes.data for p in parts]), "quad"),
                     [lab for p in parts for lab in p.labels],
                     scores=np.concatenate([p.scores for p in parts]))


def _merge_image(item: tuple[str, ObjectSet], iou_thr: float) -> tuple[str, ObjectSet]:
    stem, objects = item
    return stem, nms_per_class(objects, iou_thr)


def read_patch_task1_dir(det_dir: str | os.PathLike, skip_invalid: bool = False
                         ) -> tuple[dict[str, ObjectSet], list[str], list[SkippedLine], int]:
    """Read a patch Task1 folder into ``{stem: ObjectSet}`` already shifted into image pixels (before NMS).
    Returns ``(objects_by_stem, classes, skipped, n_detections)``."""
    from rscovlm.geometry import Boxes, ObjectSet

    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise FileNotFoundError(f"Task1 directory {det_dir} does not exist")
    problems = _Problems(skip_invalid)
    files = sorted(det_dir.glob(f"{TASK1_PREFIX}*.txt"))
    if not files:
        raise FileNotFoundError(f"{det_dir} holds no {TASK1_PREFIX}{{class}}.txt files")
    per_stem: dict[str, tuple[list, list, list]] = {}
    classes, total = [], 0
    for path in files:
        label = task1_class(path)
        classes.append(label)
        ids, scores, quads, line_nos = read_task1_file(path, problems=problems, with_lines=True)
        for image_id, score, quad, line_no in zip(ids, scores, quads, line_nos):
            parsed = parse_patch_name(image_id)
            if parsed is None:
                problems.report(path, line_no, f"image id {image_id!r} is not a patch name "
                                               "{stem}__{size}__{x}___{y}", image_id)
                continue
            stem, _size, x, y = parsed
            entry = per_stem.setdefault(stem, ([], [], []))
            entry[0].append(quad + np.array([x, y] * 4, dtype=np.float64))
            entry[1].append(score)
            entry[2].append(label)
            total += 1
    objects = {stem: ObjectSet(Boxes(np.stack(q), "quad"), labs, scores=np.asarray(s))
               for stem, (q, s, labs) in sorted(per_stem.items())}
    return objects, classes, problems.skipped, total


def merge_task1_dir(det_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: MergeConfig | None = None,
                    progress: bool = True) -> MergeReport:
    """Merge the patch Task1 folder ``det_dir`` into full-image Task1 files in ``out_dir`` (see module doc)."""
    from functools import partial

    from tqdm import tqdm

    cfg = cfg or MergeConfig()
    t0 = time.perf_counter()
    objects, classes, skipped, total = read_patch_task1_dir(det_dir, cfg.skip_invalid)
    report = MergeReport(files=len(classes), patch_detections=total, skipped=skipped)
    work = partial(_merge_image, iou_thr=cfg.iou_thr)
    merged: dict[str, ObjectSet] = {}
    items = sorted(objects.items(), key=lambda kv: -len(kv[1]))  # biggest first for load balance
    with tqdm(total=len(items), unit="img", desc="merge", disable=not progress) as bar:
        if cfg.workers == 1 or len(items) <= 1:
            for item in items:
                stem, kept = work(item)
                merged[stem] = kept
                bar.update()
        else:
            ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            with ctx.Pool(min(cfg.workers, len(items))) as pool:
                for stem, kept in pool.imap_unordered(work, items, chunksize=1):
                    merged[stem] = kept
                    bar.update()
    write_task1_dir(out_dir, merged, classes=classes)
    report.images = len(merged)
    report.merged_detections = sum(len(v) for v in merged.values())
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["MergeConfig", "MergeReport", "merge_patch_objects", "merge_task1_dir", "nms_per_class",
           "read_patch_task1_dir", "DotaFormatError"]
