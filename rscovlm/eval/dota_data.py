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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rscovlm.data import dota_io
from rscovlm.data.dota_io import DotaFormatError, SkippedLine
from rscovlm.data.textio import BadText, read_lines
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


def _token_spans(buf: np.ndarray, is_ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = ~is_ws
    starts[1:] &= is_ws[:-1]
    ends = ~is_ws
    ends[:-1] &= is_ws[1:]
    return np.flatnonzero(starts), np.flatnonzero(ends) + 1


def _gather_tokens(buf: np.ndarray, tok_s: np.ndarray, tok_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-width byte strings of the tokens ``[tok_s, tok_e)`` and their byte positions (for blanking)."""
    length = tok_e - tok_s
    width = max(int(length.max(initial=1)), 1)
    cols = np.arange(width)[None, :]
    inside = cols < length[:, None]
    pos = np.where(inside, tok_s[:, None] + cols, 0)
    data = np.where(inside, buf[pos], 0).astype(np.uint8)
    return data.view(f"S{width}").ravel(), pos[inside]


def _parse_numbers(text: np.ndarray, rows: int, cols: int) -> np.ndarray | None:
    """The whitespace-separated numbers of the bytes ``text`` as a ``(rows, cols)`` float64 array, or ``None``
    when a token is not a number, the count differs or a value is not finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns when it stops at a bad token
        try:
            values = np.fromstring(text.tobytes(), sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != rows * cols or not np.isfinite(values).all():
        return None
    return values.reshape(rows, cols)


def _txt_files(directory: Path, prefix: str) -> list[Path]:
    """``prefix*.txt`` files of ``directory`` sorted by name (what ``sorted(glob)`` gives, without building and
    comparing thousands of Path objects)."""
    with os.scandir(directory) as it:
        names = sorted(e.name for e in it if e.name.endswith(".txt") and e.name.startswith(prefix) and e.is_file())
    return [directory / n for n in names]


def _load_gt_fast(paths: list[Path]) -> GroundTruth | None:
    """All labelTxt files at once on their concatenated bytes, or ``None`` when anything needs the careful
    per-line reader of :mod:`rscovlm.data.dota_io` (which then names the file and line): object lines must have
    10 fields (8 finite numbers, a class, a difficult flag 0/1/2) in plain ASCII; ``imagesource:``/``gsd:``
    header lines are allowed."""
    chunks, file_of_line = [], []
    for k, p in enumerate(paths):
        raw = p.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        chunks.append(raw if raw.endswith(b"\n") or not raw else raw + b"\n")
    sizes = [c.count(b"\n") for c in chunks]
    file_of_line = np.repeat(np.arange(len(paths)), sizes)
    buf = np.frombuffer(b"".join(chunks), np.uint8)
    image_ids = [p.stem for p in paths]
    if len(buf) == 0:
        return GroundTruth(image_ids, {})
    if _needs_careful_reader(buf):
        return None
    is_ws = _WS[buf]
    tok_s, tok_e = _token_spans(buf, is_ws)
    line_starts = np.r_[0, np.flatnonzero(buf == 10)[:-1] + 1]
    line_of_tok = np.searchsorted(line_starts, tok_s, side="right") - 1
    fields = np.bincount(line_of_tok, minlength=len(line_starts))
    header = (fields > 0) & (fields < 9)
    for line in np.flatnonzero(header).tolist():
        text = bytes(buf[line_starts[line]:(line_starts[line + 1] if line + 1 < len(line_starts) else len(buf))])
        key, sep, value = text.decode("ascii").strip().partition(":")
        if not sep or key.strip().lower() not in dota_io.HEADER_KEYS:
            return None
        value = value.strip().lower()
        if key.strip().lower() == "gsd" and value not in ("", "null", "none", "nan"):
            try:
                float(value)
            except ValueError:
                return None
    if np.any((fields != 0) & ~header & (fields != 10)):
        return None
    obj_line = fields == 10
    keep_tok = obj_line[line_of_tok]
    tok_s, tok_e = tok_s[keep_tok], tok_e[keep_tok]
    n = len(tok_s) // 10
    if n == 0:
        return GroundTruth(image_ids, {})
    names, name_pos = _gather_tokens(buf, tok_s[8::10], tok_e[8::10])
    diff_len = tok_e[9::10] - tok_s[9::10]
    diff_byte = buf[tok_s[9::10]]
    if np.any(diff_len != 1) or np.any((diff_byte < 48) | (diff_byte > 50)):
        return None
    numbers = np.full(len(buf), 32, np.uint8)
    coord_tok = np.ones(len(tok_s), bool)
    coord_tok[8::10] = coord_tok[9::10] = False
    sel_s, sel_e = tok_s[coord_tok], tok_e[coord_tok]
    # copy the 8 coordinate tokens of every object line, everything else becomes blank
    width = int((sel_e - sel_s).max())
    cols = np.arange(width)[None, :]
    inside = cols < (sel_e - sel_s)[:, None]
    pos = (sel_s[:, None] + cols)[inside]
    numbers[pos] = buf[pos]
    quads = _parse_numbers(numbers, n, 8)
    if quads is None:
        return None
    difficult = (diff_byte - 48).astype(np.int64)
    image = file_of_line[np.flatnonzero(obj_line)]
    uniq, inverse = np.unique(names, return_inverse=True)
    inverse = inverse.reshape(-1)
    classes = {}
    for k, name in enumerate(uniq):
        sel = inverse == k
        classes[name.decode("ascii")] = ClassGT(np.ascontiguousarray(quads[sel]), image[sel], difficult[sel])
    return GroundTruth(image_ids, dict(sorted(classes.items())))


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


_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_ODD = np.zeros(256, bool)  # bytes where str.split() / str.splitlines() and this fast path could disagree
_ODD[[b for b in range(32) if not _WS[b]] + [11, 12] + list(range(127, 256))] = True  # 11, 12 break lines


def _needs_careful_reader(buf: np.ndarray) -> bool:
    """True when the careful reader's ``str.splitlines()`` could see other lines than the fast path (which breaks
    only at ``\n``): odd bytes (control, ``\x0b``/``\x0c``, non-ASCII) or a ``\r`` not followed by ``\n``."""
    if _ODD[buf].any():
        return True
    cr = np.flatnonzero(buf == 13)
    return bool(len(cr)) and bool(np.any(buf[np.minimum(cr + 1, len(buf) - 1)] != 10) or cr[-1] == len(buf) - 1)


def _read_task1_fast(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """``(unique image ids, index into them per line, scores, quads)`` of a well-formed Task1 file, or ``None``
    when any line needs the careful reader (which then names the bad line): every non-blank line must have
    exactly 10 fields, the last 9 finite numbers, in plain ASCII. Works on the bytes, without a Python loop over
    lines: the id fields are cut out by position and the rest is parsed by numpy in one call."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    buf = np.frombuffer(raw, np.uint8)
    if _needs_careful_reader(buf):
        return None
    is_ws = _WS[buf]
    if is_ws.all():
        return [], np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 8))
    starts = ~is_ws
    starts[1:] &= is_ws[:-1]
    line_starts = np.r_[0, np.flatnonzero(buf == 10) + 1]
    line_starts = line_starts[line_starts < len(buf)]
    fields = np.add.reduceat(starts, line_starts, dtype=np.int64)
    if np.any((fields != 0) & (fields != 10)):
        return None
    ends = ~is_ws
    ends[:-1] &= is_ws[1:]
    tok_s, tok_e = np.flatnonzero(starts)[0::10], np.flatnonzero(ends)[0::10] + 1  # the id field of each line
    length = tok_e - tok_s
    width = int(length.max())
    cols = np.arange(width)[None, :]
    inside = cols < length[:, None]
    pos = np.where(inside, tok_s[:, None] + cols, 0)
    id_bytes = np.where(inside, buf[pos], 0).astype(np.uint8)
    uniq, inverse = np.unique(id_bytes.view(f"S{width}").ravel(), return_inverse=True)
    numbers = buf.copy()
    numbers[pos[inside]] = 32  # blank the ids; what is left is 9 numbers per line
    n = len(tok_s)
    values = _parse_numbers(numbers, n, 9)
    if values is None:
        return None
    return [u.decode("ascii") for u in uniq], inverse.reshape(-1), values[:, 0].copy(), \
        np.ascontiguousarray(values[:, 1:])


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
