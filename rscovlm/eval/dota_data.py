"""DOTA ground truth and detections as flat per-class arrays, the input of every detection metric.

Reading goes through :mod:`rscovlm.data.dota_io` (its file:line errors and ``skip_invalid`` counting); Task1
files take a vectorized fast path first and fall back to ``dota_io`` for the exact message when anything in a file
is unusual.

Frames and order
----------------
Boxes are ``(N, 8)`` quads in original-image pixels. Images are indexed by their position in
``GroundTruth.image_ids`` (sorted labelTxt stems). Inside a class, detections keep their input order (Task1 file
line order); that order breaks score ties (see :mod:`rscovlm.eval.dota_map`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rscovlm.data import dota_io
from rscovlm.data.dota_io import DotaFormatError, SkippedLine

UnknownImages = Literal["error", "ignore"]


@dataclass
class ClassGT:
    """Ground truth of one class: ``quads (N, 8)``, ``image (N,)`` index into ``GroundTruth.image_ids``,
    ``difficult (N,)`` DOTA flag (0, 1, 2)."""

    quads: np.ndarray
    image: np.ndarray
    difficult: np.ndarray

    @classmethod
    def empty(cls) -> "ClassGT":
        return cls(np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass
class ClassDets:
    """Detections of one class: ``quads (N, 8)``, ``image (N,)`` index, ``scores (N,)`` or ``None`` (score-free
    output such as a VLM's), in input order."""

    quads: np.ndarray
    image: np.ndarray
    scores: np.ndarray | None

    @classmethod
    def empty(cls, with_scores: bool = True) -> "ClassDets":
        return cls(np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0) if with_scores else None)

    def __len__(self) -> int:
        return len(self.quads)

    def select(self, mask: np.ndarray) -> "ClassDets":
        return ClassDets(self.quads[mask], self.image[mask], None if self.scores is None else self.scores[mask])


@dataclass
class GroundTruth:
    """All ground truth: ``image_ids`` and ``{class: ClassGT}``; ``skipped`` lines (with ``skip_invalid``)."""

    image_ids: list[str]
    classes: dict[str, ClassGT]
    skipped: list[SkippedLine] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.image_ids)}

    def get(self, cls: str) -> ClassGT:
        return self.classes.get(cls) or ClassGT.empty()


@dataclass
class Detections:
    """All detections: ``{class: ClassDets}`` (image indices refer to a :class:`GroundTruth`); ``skipped`` lines,
    ``dropped_unknown_image`` count (with ``unknown_images="ignore"``), ``missing_files`` classes with no
    Task1 file."""

    classes: dict[str, ClassDets]
    skipped: list[SkippedLine] = field(default_factory=list)
    dropped_unknown_image: int = 0
    missing_files: list[str] = field(default_factory=list)

    def get(self, cls: str, with_scores: bool = True) -> ClassDets:
        return self.classes.get(cls) or ClassDets.empty(with_scores)


def load_gt_dir(gt_dir: str | os.PathLike, *, skip_invalid: bool = False) -> GroundTruth:
    """Read a labelTxt folder (one ``{image_id}.txt`` per image) into a :class:`GroundTruth`."""
    labels = dota_io.read_labeltxt_dir(gt_dir, skip_invalid=skip_invalid)
    image_ids = list(labels)
    per_class: dict[str, tuple[list, list, list]] = {}
    skipped: list[SkippedLine] = []
    for idx, image_id in enumerate(image_ids):
        lab = labels[image_id]
        skipped.extend(lab.skipped)
        objs = lab.objects
        quads = objs.boxes.to_quad().data
        diff = objs.difficult if objs.difficult is not None else np.zeros(len(objs), np.int64)
        for k, name in enumerate(objs.labels):
            entry = per_class.setdefault(name, ([], [], []))
            entry[0].append(quads[k])
            entry[1].append(idx)
            entry[2].append(diff[k])
    classes = {name: ClassGT(np.asarray(q, np.float64).reshape(-1, 8), np.asarray(i, np.int64),
                             np.asarray(d, np.int64)) for name, (q, i, d) in sorted(per_class.items())}
    return GroundTruth(image_ids, classes, skipped)


def _read_task1_fast(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(image_ids, scores, quads)`` of a well-formed Task1 file, or ``None`` when any line needs the careful
    reader (which then names the bad line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return np.zeros(0, dtype=str), np.zeros(0), np.zeros((0, 8))
    tokens = text.split()
    if len(tokens) != 10 * len(lines) or any(len(ln.split()) != 10 for ln in lines):
        return None
    arr = np.asarray(tokens).reshape(-1, 10)
    try:
        values = arr[:, 1:].astype(np.float64)
    except ValueError:
        return None
    if not np.isfinite(values).all():
        return None
    return arr[:, 0], values[:, 0].copy(), np.ascontiguousarray(values[:, 1:])


def read_task1_class_file(path: str | os.PathLike, *, skip_invalid: bool = False
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[SkippedLine]]:
    """One ``Task1_{class}.txt`` -> ``(image_ids, scores, quads, skipped)`` in file order."""
    path = Path(path)
    fast = _read_task1_fast(path)
    if fast is not None:
        return (*fast, [])
    problems = dota_io._Problems(skip_invalid)
    ids, scores, quads = dota_io.read_task1_file(path, problems=problems)
    return np.asarray(ids, dtype=str), scores, quads, problems.skipped


def load_task1_dir(det_dir: str | os.PathLike, gt: GroundTruth, *, skip_invalid: bool = False,
                   unknown_images: UnknownImages = "error") -> Detections:
    """Read a Task1 folder against ``gt``'s images.

    A detection on an image that has no labelTxt file is an error naming the file and line (usually a wrong
    folder); with ``unknown_images="ignore"`` such detections are dropped and counted. A class with ground truth
    but no ``Task1_{class}.txt`` has no detections (listed in ``missing_files``); an empty file is no detections
    too."""
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise FileNotFoundError(f"Task1 directory {det_dir} does not exist")
    classes: dict[str, ClassDets] = {}
    skipped: list[SkippedLine] = []
    dropped = 0
    lookup = gt.index
    for path in sorted(det_dir.glob(f"{dota_io.TASK1_PREFIX}*.txt")):
        name = dota_io.task1_class(path)
        ids, scores, quads, skip = read_task1_class_file(path, skip_invalid=skip_invalid)
        skipped.extend(skip)
        image = np.fromiter((lookup.get(i, -1) for i in ids.tolist()), dtype=np.int64, count=len(ids))
        unknown = image < 0
        if unknown.any():
            if unknown_images == "error":
                first = ids[np.flatnonzero(unknown)[0]]
                line_no = _line_of(path, first)
                raise DotaFormatError(path, line_no, f"image {first!r} has no ground-truth file "
                                                     f"({int(unknown.sum())} such detections; "
                                                     f"use unknown_images='ignore' to drop them)")
            dropped += int(unknown.sum())
            keep = ~unknown
            image, scores, quads = image[keep], scores[keep], quads[keep]
        classes[name] = ClassDets(quads, image, scores)
    missing = sorted(c for c in gt.classes if c not in classes)
    return Detections(classes, skipped, dropped, missing)


def _line_of(path: Path, image_id: str) -> int:
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        tokens = line.split()
        if tokens and tokens[0] == image_id:
            return line_no
    return 0
