"""DOTA ground truth and detections as flat per-class arrays, the input of every detection metric.

Reading goes through :mod:`rscovlm.dota.io` (its file:line errors and ``skip_invalid`` counting); Task1
files take a vectorized fast path first and fall back to the careful reader for the exact message when anything in
a file is unusual.

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

from rscovlm.data.textio import BadText, read_lines
from rscovlm.dota import io as dota_io
from rscovlm.dota.io import DotaFormatError, SkippedLine
from rscovlm.protocol.categories import CATEGORY_SETS, CategorySet

UnknownImages = Literal["error", "ignore"]
UnknownGtClasses = Literal["error", "ignore"]
#: ``categories`` value that accepts every ground-truth class (no vocabulary check)
ANY_CLASS = "any"


def resolve_categories(spec: str | CategorySet | None) -> CategorySet | None:
    """The ground-truth vocabulary named by ``spec``: a registered set (``dota-v1.0``, ...), a comma-separated
    list of class names (``plane,ship``), or ``None`` / ``"any"`` for no check."""
    if spec is None or isinstance(spec, CategorySet):
        return spec
    if spec == ANY_CLASS:
        return None
    if spec in CATEGORY_SETS:
        return CATEGORY_SETS[spec]
    names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if "," not in spec or not names:
        raise ValueError(f"unknown category set {spec!r}; expected one of {sorted(CATEGORY_SETS)}, "
                         f"{ANY_CLASS!r} or a comma-separated list of class names")
    return CategorySet("custom", names)


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
    output such as a VLM's), in input order. ``order (N,)`` (optional): each detection's position in its image's
    list of predictions over all classes (a model answer's object order), which per-image random scores follow
    (:mod:`rscovlm.eval.ap_nc`); without it that order comes from the scores."""

    quads: np.ndarray
    image: np.ndarray
    scores: np.ndarray | None
    order: np.ndarray | None = None

    @classmethod
    def empty(cls, with_scores: bool = True) -> "ClassDets":
        return cls(np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0) if with_scores else None)

    def __len__(self) -> int:
        return len(self.quads)

    def select(self, mask: np.ndarray) -> "ClassDets":
        return ClassDets(self.quads[mask], self.image[mask], None if self.scores is None else self.scores[mask],
                         None if self.order is None else self.order[mask])


@dataclass
class GroundTruth:
    """All ground truth: ``image_ids`` and ``{class: ClassGT}``; ``skipped`` lines (with ``skip_invalid``);
    ``dropped_unknown_classes`` ``{class: objects}`` left out because the class is not in the chosen vocabulary
    (with ``unknown_classes="ignore"``)."""

    image_ids: list[str]
    classes: dict[str, ClassGT]
    skipped: list[SkippedLine] = field(default_factory=list)
    dropped_unknown_classes: dict[str, int] = field(default_factory=dict)

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


def _txt_files(directory: Path, prefix: str) -> list[Path]:
    """``prefix*.txt`` files of ``directory`` sorted by name (what ``sorted(glob)`` gives, without building and
    comparing thousands of Path objects)."""
    with os.scandir(directory) as it:
        names = sorted(e.name for e in it if e.name.endswith(".txt") and e.name.startswith(prefix) and e.is_file())
    return [directory / n for n in names]


def _load_gt_fast(paths: list[Path]) -> GroundTruth | None:
    """All labelTxt files at once (:func:`rscovlm.dota.io.parse_labeltxt_bytes`), or ``None`` when anything
    needs the careful per-line reader of :mod:`rscovlm.dota.io` (which then names the file and line)."""
    raws = []
    for p in paths:
        with open(p, "rb") as fh:
            raws.append(fh.read())
    batch = dota_io.parse_labeltxt_bytes(raws)
    if batch is None:
        return None
    image_ids = [p.stem for p in paths]
    order = np.argsort(batch.label, kind="stable")  # grouped by class, file and line order inside
    bounds = np.searchsorted(batch.label[order], np.arange(len(batch.classes) + 1))
    classes = {}
    for k in sorted(range(len(batch.classes)), key=batch.classes.__getitem__):
        idx = order[bounds[k]:bounds[k + 1]]
        classes[batch.classes[k]] = ClassGT(batch.quads[idx], batch.file[idx], batch.difficult[idx])
    return GroundTruth(image_ids, classes)


def load_gt_dir(gt_dir: str | os.PathLike, *, skip_invalid: bool = False,
                categories: str | CategorySet | None = None,
                unknown_classes: UnknownGtClasses = "error") -> GroundTruth:
    """Read a labelTxt folder (one ``{image_id}.txt`` per image) into a :class:`GroundTruth`.

    With ``categories`` (a vocabulary, see :func:`resolve_categories`) a ground-truth class outside it is an
    error naming the file, line, class and vocabulary: it would otherwise become a class of its own with AP 0
    (it has no Task1 file) and lower the mAP. With ``unknown_classes="ignore"`` its objects are dropped and
    counted in ``dropped_unknown_classes``. Class names must be the vocabulary's exact ids (the DOTA file
    spellings, ``small-vehicle``), because Task1 files are matched by exactly that name."""
    if unknown_classes not in ("error", "ignore"):
        raise ValueError(f"unknown_classes must be 'error' or 'ignore', got {unknown_classes!r}")
    vocabulary = resolve_categories(categories)
    gt = _load_gt_files(gt_dir, skip_invalid)
    return gt if vocabulary is None else _check_classes(gt, Path(gt_dir), vocabulary, unknown_classes)


def _check_classes(gt: GroundTruth, directory: Path, vocabulary: CategorySet,
                   unknown_classes: UnknownGtClasses) -> GroundTruth:
    unknown = {c: g for c, g in gt.classes.items() if c not in vocabulary.classes}
    if not unknown:
        return gt
    if unknown_classes == "ignore":
        gt.classes = {c: g for c, g in gt.classes.items() if c not in unknown}
        gt.dropped_unknown_classes = {c: len(g.quads) for c, g in unknown.items()}
        return gt
    first_image = min(int(g.image.min()) for g in unknown.values())
    path = directory / f"{gt.image_ids[first_image]}.txt"
    line_no, label = _first_line_with_class(path, set(unknown))
    counts = ", ".join(f"{c} ({len(g.quads)})" for c, g in unknown.items())
    hint = vocabulary.canonical(label)
    hint = f"; did you mean {hint!r}?" if hint else ""
    shown = ", ".join(vocabulary.classes) if vocabulary.name == "custom" else vocabulary.name
    raise DotaFormatError(path, line_no, f"ground-truth class {label!r} is not in the vocabulary ({shown}){hint} "
                                         f"[objects of classes outside it: {counts}; choose the vocabulary with "
                                         f"--categories, or drop and count them with --unknown-gt-classes ignore]")


def _first_line_with_class(path: Path, classes: set[str]) -> tuple[int, str]:
    for line_no, line in enumerate(read_lines(path, bom=True), start=1):
        tokens = line.split() if isinstance(line, str) else []
        if len(tokens) in (9, 10) and tokens[8] in classes:
            return line_no, tokens[8]
    return 0, sorted(classes)[0]  # not reached: the class came from this file


def _load_gt_files(gt_dir: str | os.PathLike, skip_invalid: bool) -> GroundTruth:
    directory = Path(gt_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"label directory {directory} does not exist")
    files = _txt_files(directory, "")
    if not files:  # almost always the wrong folder (e.g. the dataset root instead of labelTxt/)
        raise FileNotFoundError(f"label directory {directory} holds no .txt label files")
    fast = _load_gt_fast(files)
    if fast is not None:
        return fast
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


def _read_task1_fast(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """``(unique image ids, index into them per line, scores, quads)`` of a well-formed Task1 file, or ``None``
    when any line needs the careful reader (:func:`rscovlm.dota.io.parse_task1_bytes`)."""
    with open(path, "rb") as fh:
        got = dota_io.parse_task1_bytes(fh.read())
    return None if got is None else got[:4]


def read_task1_class_file(path: str | os.PathLike, *, skip_invalid: bool = False
                          ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[SkippedLine]]:
    """One ``Task1_{class}.txt`` -> ``(unique image ids, per-line index into them, scores, quads, skipped)`` in
    file order."""
    path = Path(path)
    fast = _read_task1_fast(path)
    if fast is not None:
        return (*fast, [])
    problems = dota_io._Problems(skip_invalid)
    ids, scores, quads = dota_io.read_task1_file(path, problems=problems)
    uniq, inverse = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
    return uniq.tolist(), inverse.reshape(-1).astype(np.int64), scores, quads, problems.skipped


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
    for path in _txt_files(det_dir, dota_io.TASK1_PREFIX):
        name = dota_io.task1_class(path)
        uniq, inverse, scores, quads, skip = read_task1_class_file(path, skip_invalid=skip_invalid)
        skipped.extend(skip)
        image = np.asarray([lookup.get(i, -1) for i in uniq], dtype=np.int64)[inverse] if uniq else inverse
        unknown = image < 0
        if unknown.any():
            if unknown_images == "error":
                first = uniq[inverse[np.flatnonzero(unknown)[0]]]
                line_no = _line_of(path, first)
                raise DotaFormatError(path, line_no, f"image {first!r} has no ground-truth file "
                                                     f"({int(unknown.sum())} such detections; "
                                                     f"unknown_images='ignore' or --unknown-images ignore drops them)")
            dropped += int(unknown.sum())
            keep = ~unknown
            image, scores, quads = image[keep], scores[keep], quads[keep]
        classes[name] = ClassDets(quads, image, scores)
    missing = sorted(c for c in gt.classes if c not in classes)
    return Detections(classes, skipped, dropped, missing)


def _line_of(path: Path, image_id: str) -> int:
    for line_no, line in enumerate(read_lines(path, bom=True), start=1):
        if isinstance(line, BadText):  # skipped and counted by the reader
            continue
        tokens = line.split()
        if tokens and tokens[0] == image_id:
            return line_no
    return 0
