"""Read and write DOTA label files and Task1 result folders.

labelTxt (one file per image, UTF-8, ``\\n`` or ``\\r\\n`` line ends)::

    imagesource:GoogleEarth          <- optional header line
    gsd:0.146343590398               <- optional header line (``gsd:null`` = unknown)
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

One object per line: the 4 polygon corners in original-image pixels (x right, y down, origin at the top-left
corner of the top-left pixel), the category name, and the difficult flag (0, 1, or 2 for objects cut by a split
window; a line without the flag means 0, as in the DOTA devkit). Blank lines are ignored.

Task1 result folder: one file ``Task1_{class}.txt`` per category, one detection per line::

    image_id score x1 y1 x2 y2 x3 y3 x4 y4

Bad lines (bytes that are not UTF-8, wrong number of fields, numbers that do not parse, NaN/inf, a difficult
flag that is not 0/1/2, a class outside ``vocabulary`` when one is given) raise :class:`DotaFormatError` naming
the file and the line (and, for undecodable bytes, the byte offset).
With ``skip_invalid=True`` they are skipped instead and listed in the result's ``skipped`` so the caller can
report them.

Reading is done in one pass over a file's bytes (:func:`parse_task1_bytes`, :func:`parse_labeltxt_bytes`: no
Python object per line; the compiled parser of :mod:`rscovlm._compiled` when it is built, else numpy), which
accepts only text that is certainly well formed - printable ASCII, ``\n`` or ``\r\n`` line ends, plain decimal
numbers - and gives the numbers ``float()`` gives. Anything else (or any error) goes to the careful line-by-line
reader, which names the bad line, so both give the same arrays and the same errors.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

from rscovlm._compiled import native
from rscovlm.data.textio import BOM, BadText, read_lines

if TYPE_CHECKING:  # the geometry package is imported where objects are built: the split workers need arrays only
    from rscovlm.geometry import Frame, ObjectSet

TASK1_PREFIX = "Task1_"
HEADER_KEYS = ("imagesource", "gsd")
DIFFICULT_VALUES = (0, 1, 2)


class DotaFormatError(ValueError):
    """A malformed line in a DOTA file; ``path`` and ``line_no`` (1-based, 0 = the file as a whole) say where."""

    def __init__(self, path: str | os.PathLike, line_no: int, reason: str, line: str | None = None):
        self.path = str(path)
        self.line_no = line_no
        self.reason = reason
        where = f"{self.path}:{line_no}" if line_no else self.path
        text = f"{where}: {reason}"
        if line is not None:
            text += f": {line.strip()[:200]!r}"
        self.line = line
        super().__init__(text)

    def __reduce__(self):  # keep the fields when the error crosses a process boundary (worker pools)
        return type(self), (self.path, self.line_no, self.reason, self.line)


@dataclass(frozen=True)
class SkippedLine:
    """A line left out under ``skip_invalid=True``."""

    path: str
    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.reason}"


@dataclass
class DotaLabels:
    """Contents of one labelTxt file: the objects (quads, original frame) and the header values."""

    objects: ObjectSet
    imagesource: str | None = None
    gsd: float | None = None
    path: str | None = None
    skipped: list[SkippedLine] = field(default_factory=list)


class Task1Detections(dict):
    """``{image_id: ObjectSet}`` read from a Task1 folder (quads with scores), plus ``skipped`` lines."""

    def __init__(self, *args, skipped: list[SkippedLine] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped: list[SkippedLine] = list(skipped or [])


# ---- number parsing / formatting --------------------------------------------------------------------------

def _finite_floats(tokens: list[str]) -> list[float] | str:
    """Parse ``tokens`` as finite floats; on failure return the reason (a string)."""
    values = []
    for tok in tokens:
        try:
            v = float(tok)
        except ValueError:
            return f"{tok!r} is not a number"
        if not math.isfinite(v):
            return f"{tok!r} is not a finite number"
        values.append(v)
    return values


def format_number(value: float) -> str:
    """Shortest text that reads back to the same float; integral values without a decimal point (``1054``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _read_lines(path: Path) -> list[str | BadText]:
    # a byte-order mark is tolerated; splitlines() handles \n, \r\n and a missing final newline; a line that is
    # not UTF-8 comes as a BadText, reported (or skipped) in file order like any other bad line
    return read_lines(path, bom=True)


class _Problems:
    """Raise on the first bad line, or collect them when skipping is the caller's choice."""

    def __init__(self, skip_invalid: bool):
        self.skip_invalid = skip_invalid
        self.skipped: list[SkippedLine] = []

    def report(self, path: Path, line_no: int, reason: str, line: str) -> None:
        if not self.skip_invalid:
            raise DotaFormatError(path, line_no, reason, line)
        self.skipped.append(SkippedLine(str(path), line_no, reason))


# ---- fast readers: whole files, one pass over the bytes -----------------------------------------------------

def _without_bom(raw: bytes) -> bytes:
    return raw[len(BOM):] if raw.startswith(BOM) else raw


_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_ODD = np.zeros(256, bool)  # bytes where str.split() / str.splitlines() and the fast readers could disagree
_ODD[[b for b in range(32) if not _WS[b]] + [11, 12] + list(range(127, 256))] = True  # 11, 12 break lines


def _needs_careful_reader(buf: np.ndarray) -> bool:
    """True when the careful reader's ``str.splitlines()`` could see other lines than the fast path (which breaks
    only at ``\n``): odd bytes (control, ``\x0b``/``\x0c``, non-ASCII) or a ``\r`` not followed by ``\n``."""
    if _ODD[buf].any():
        return True
    cr = np.flatnonzero(buf == 13)
    return bool(len(cr)) and bool(np.any(buf[np.minimum(cr + 1, len(buf) - 1)] != 10) or cr[-1] == len(buf) - 1)


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


def _sorted_ids(ids: list[str], inverse: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Unique ids sorted (as ``numpy.unique`` gives them), ``inverse`` re-pointed."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    return [ids[i] for i in order], rank[inverse] if len(ids) else inverse


def parse_task1_bytes(raw: bytes) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A ``Task1_{class}.txt`` file's bytes -> ``(image ids (unique, sorted), each detection's index into them,
    scores (N,), quads (N, 8), 1-based line numbers (N,))`` in file order, or ``None`` when anything needs the
    careful reader (every non-blank line must have exactly 10 fields, the last 9 plain finite numbers)."""
    raw = _without_bom(raw)
    mod = native()
    if mod is not None:
        got = mod.parse_task1(raw)
        if got is None:
            return None
        n, ids, values, inverse, line_no = got
        values = np.frombuffer(values, np.float64).reshape(n, 9)
        ids, inv = _sorted_ids(ids, np.frombuffer(inverse, np.int64))
        return ids, inv, values[:, 0].copy(), np.ascontiguousarray(values[:, 1:]), np.frombuffer(line_no, np.int64)
    return _task1_numpy(raw)


def _task1_numpy(raw: bytes):
    buf = np.frombuffer(raw, np.uint8)
    if _needs_careful_reader(buf):
        return None
    is_ws = _WS[buf]
    if is_ws.all():
        return [], np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 8)), np.zeros(0, np.int64)
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
    values = _parse_numbers(numbers, len(tok_s), 9)
    if values is None:
        return None
    line_no = np.searchsorted(line_starts, tok_s, side="right")  # 1-based: line_starts[k] starts line k + 1
    return [u.decode("ascii") for u in uniq], inverse.reshape(-1).astype(np.int64), values[:, 0].copy(), \
        np.ascontiguousarray(values[:, 1:]), line_no.astype(np.int64)


@dataclass
class LabelTxtBatch:
    """labelTxt files read together: ``quads (N, 8)`` as written, ``file (N,)`` index of each object's file,
    ``difficult (N,)``, ``label (N,)`` index into ``classes`` (class names in order of first appearance), and per
    file its ``imagesource`` / ``gsd`` header values (``None`` when absent)."""

    quads: np.ndarray
    file: np.ndarray
    difficult: np.ndarray
    label: np.ndarray
    classes: list[str]
    imagesource: list[str | None]
    gsd: list[float | None]


def _header_values(n_files: int, headers: list[tuple[int, str, str]]):
    """``imagesource``/``gsd`` per file from ``(file, key, value)`` header lines, as the careful reader reads them
    (the last line wins; ``gsd`` ``null``/``none``/``nan``/empty is ``None``); ``None`` when a gsd is no number."""
    imagesource: list[str | None] = [None] * n_files
    gsd: list[float | None] = [None] * n_files
    for f, key, value in headers:
        if key == "imagesource":
            imagesource[f] = value
        elif value.lower() in ("", "null", "none", "nan"):
            gsd[f] = None
        else:
            try:
                gsd[f] = float(value)
            except ValueError:
                return None
    return imagesource, gsd


def parse_labeltxt_bytes(raws: list[bytes]) -> LabelTxtBatch | None:
    """The bytes of labelTxt files -> one :class:`LabelTxtBatch`, or ``None`` when anything needs the careful
    reader: object lines must be ``x1 y1 ... x4 y4 class [difficult]`` (8 plain finite numbers, a difficult flag
    0/1/2 or none), lines of fewer fields ``imagesource:`` / ``gsd:`` headers."""
    raws = [_without_bom(r) for r in raws]
    mod = native()
    if mod is None:
        return _labeltxt_numpy(raws)
    cap = sum(r.count(b"\n") for r in raws) + len(raws)
    quads = np.empty((cap, 8))
    file, difficult, label = (np.empty(cap, np.int64) for _ in range(3))
    got = mod.parse_labeltxt(raws, quads, file, difficult, label)
    if got is None:
        return None
    n, classes, headers = got
    values = _header_values(len(raws), headers)
    if values is None:
        return None
    return LabelTxtBatch(quads[:n], file[:n], difficult[:n], label[:n], classes, *values)


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


def _labeltxt_numpy(raws: list[bytes]) -> LabelTxtBatch | None:
    """:func:`parse_labeltxt_bytes` with numpy on the concatenated bytes (object lines need all 10 fields here)."""
    chunks = [r if r.endswith(b"\n") or not r else r + b"\n" for r in raws]
    file_of_line = np.repeat(np.arange(len(raws)), [c.count(b"\n") for c in chunks])
    buf = np.frombuffer(b"".join(chunks), np.uint8)
    empty = LabelTxtBatch(np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          [], [None] * len(raws), [None] * len(raws))
    if len(buf) == 0:
        return empty
    if _needs_careful_reader(buf):
        return None
    is_ws = _WS[buf]
    tok_s, tok_e = _token_spans(buf, is_ws)
    line_starts = np.r_[0, np.flatnonzero(buf == 10)[:-1] + 1]
    line_of_tok = np.searchsorted(line_starts, tok_s, side="right") - 1
    fields = np.bincount(line_of_tok, minlength=len(line_starts))
    header = (fields > 0) & (fields < 9)
    headers = []
    for line in np.flatnonzero(header).tolist():
        text = bytes(buf[line_starts[line]:(line_starts[line + 1] if line + 1 < len(line_starts) else len(buf))])
        key, sep, value = text.decode("ascii").strip().partition(":")
        if not sep or key.strip().lower() not in HEADER_KEYS:
            return None
        headers.append((int(file_of_line[line]), key.strip().lower(), value.strip()))
    values = _header_values(len(raws), headers)
    if values is None:
        return None
    empty.imagesource, empty.gsd = values
    if np.any((fields != 0) & ~header & (fields != 10)):
        return None
    obj_line = fields == 10
    keep_tok = obj_line[line_of_tok]
    tok_s, tok_e = tok_s[keep_tok], tok_e[keep_tok]
    n = len(tok_s) // 10
    if n == 0:
        return empty
    names, _ = _gather_tokens(buf, tok_s[8::10], tok_e[8::10])
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
    uniq, inverse = np.unique(names, return_inverse=True)
    return LabelTxtBatch(quads, file_of_line[np.flatnonzero(obj_line)].astype(np.int64),
                         (diff_byte - 48).astype(np.int64), inverse.reshape(-1).astype(np.int64),
                         [u.decode("ascii") for u in uniq], empty.imagesource, empty.gsd)


# ---- labelTxt ------------------------------------------------------------------------------------------------

@dataclass
class LabelArrays:
    """Plain contents of a labelTxt file: ``quads`` (N, 8) float64 as written, ``labels``, ``difficult`` (N,)."""

    quads: np.ndarray
    labels: list[str]
    difficult: np.ndarray
    imagesource: str | None
    gsd: float | None
    skipped: list[SkippedLine]


def read_labeltxt(path: str | os.PathLike, *, vocabulary: Collection[str] | None = None,
                  skip_invalid: bool = False, frame: Frame | None = None) -> DotaLabels:
    """Read one labelTxt file into quads (``Boxes`` kind ``quad``, in ``frame`` if given) with labels and
    difficult flags. Vertex order is kept as written (no normalization)."""
    from rscovlm.geometry import Boxes, ObjectSet

    arr = read_labeltxt_arrays(path, vocabulary=vocabulary, skip_invalid=skip_invalid)
    objects = ObjectSet(Boxes(arr.quads, "quad", frame), arr.labels, difficult=arr.difficult)
    return DotaLabels(objects, arr.imagesource, arr.gsd, str(path), arr.skipped)


def read_labeltxt_arrays(path: str | os.PathLike, *, vocabulary: Collection[str] | None = None,
                         skip_invalid: bool = False) -> LabelArrays:
    """:func:`read_labeltxt` without building geometry objects (same parsing and errors)."""
    path = Path(path)
    fast = parse_labeltxt_bytes([path.read_bytes()])
    if fast is not None:
        labels = [fast.classes[i] for i in fast.label.tolist()]
        if vocabulary is None or all(c in vocabulary for c in fast.classes):
            return LabelArrays(np.ascontiguousarray(fast.quads), labels, fast.difficult.copy(), fast.imagesource[0],
                               fast.gsd[0], [])
    problems = _Problems(skip_invalid)
    imagesource: str | None = None
    gsd: float | None = None
    coords: list[list[float]] = []
    labels: list[str] = []
    difficult: list[int] = []
    for line_no, line in enumerate(_read_lines(path), start=1):
        if isinstance(line, BadText):
            problems.report(path, line_no, line.reason, line.text)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        key, sep, value = stripped.partition(":")
        if sep and key.strip().lower() in HEADER_KEYS and len(stripped.split()) < 9:
            key, value = key.strip().lower(), value.strip()
            if key == "imagesource":
                imagesource = value
            elif value.lower() in ("", "null", "none", "nan"):
                gsd = None
            else:
                try:
                    gsd = float(value)
                except ValueError:
                    problems.report(path, line_no, f"gsd {value!r} is not a number", line)
            continue
        tokens = stripped.split()
        if len(tokens) not in (9, 10):
            problems.report(path, line_no, f"expected 'x1 y1 ... x4 y4 class [difficult]' (9 or 10 fields), "
                                           f"got {len(tokens)} fields", line)
            continue
        values = _finite_floats(tokens[:8])
        if isinstance(values, str):
            problems.report(path, line_no, values, line)
            continue
        label = tokens[8]
        if vocabulary is not None and label not in vocabulary:
            problems.report(path, line_no, f"unknown class {label!r}", line)
            continue
        diff = 0
        if len(tokens) == 10:
            try:
                diff = int(tokens[9])
            except ValueError:
                diff = -1
            if diff not in DIFFICULT_VALUES:
                problems.report(path, line_no, f"difficult flag {tokens[9]!r} is not one of 0, 1, 2", line)
                continue
        coords.append(values)
        labels.append(label)
        difficult.append(diff)
    return LabelArrays(np.asarray(coords, dtype=np.float64).reshape(-1, 8), labels,
                       np.asarray(difficult, dtype=np.int64), imagesource, gsd, problems.skipped)


def read_labeltxt_dir(directory: str | os.PathLike, *, vocabulary: Collection[str] | None = None,
                      skip_invalid: bool = False) -> dict[str, DotaLabels]:
    """Read every ``*.txt`` in ``directory`` into ``{stem: DotaLabels}`` (sorted by stem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"label directory {directory} does not exist")
    return {p.stem: read_labeltxt(p, vocabulary=vocabulary, skip_invalid=skip_invalid)
            for p in sorted(directory.glob("*.txt"))}


def _quad_rows(objects: ObjectSet) -> np.ndarray:
    return objects.boxes.to_quad().data


def write_labeltxt(path: str | os.PathLike, objects: ObjectSet, *, imagesource: str | None = None,
                   gsd: float | None = None, newline: str = "\n") -> None:
    """Write ``objects`` as a labelTxt file (boxes converted to quads; difficult 0 when the set has none).

    Header lines are written only for the values given. ``newline="\\r\\n"`` reproduces the original DOTA
    files byte for byte."""
    quads = _quad_rows(objects)
    diffs = objects.difficult if objects.difficult is not None else np.zeros(len(objects), dtype=np.int64)
    lines = []
    if imagesource is not None:
        lines.append(f"imagesource:{imagesource}")
    if gsd is not None:
        lines.append(f"gsd:{gsd!r}" if isinstance(gsd, float) else f"gsd:{gsd}")
    for quad, label, diff in zip(quads, objects.labels, diffs):
        if not label or any(c.isspace() for c in label):
            raise ValueError(f"class name {label!r} cannot be written to a labelTxt line")
        lines.append(" ".join(format_number(v) for v in quad) + f" {label} {int(diff)}")
    text = "".join(line + newline for line in lines)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


# ---- Task1 result folders --------------------------------------------------------------------------------

def read_task1_file(path: str | os.PathLike, *, skip_invalid: bool = False, problems: _Problems | None = None,
                    with_lines: bool = False) -> tuple:
    """One ``Task1_{class}.txt``: ``(image_ids, scores (N,), quads (N,8))`` in file order, plus the 1-based
    line number of each detection when ``with_lines``.

    Well-formed files take a vectorized path (one numpy conversion for the whole file); when it finds any
    problem the file is re-read line by line to name the first bad line (or to skip the bad lines)."""
    path = Path(path)
    problems = problems or _Problems(skip_invalid)
    fast = parse_task1_bytes(path.read_bytes())
    if fast is not None:
        uniq, inverse, scores, quads, line_nos = fast
        ids = [uniq[i] for i in inverse.tolist()]
        if with_lines:
            return ids, scores, quads, line_nos.tolist()
        return ids, scores, quads
    lines = _read_lines(path)
    fast = _task1_fast(lines)
    if fast is not None:
        ids, arr, line_nos = fast
    else:
        ids, rows, line_nos = [], [], []
        for line_no, line in enumerate(lines, start=1):
            if isinstance(line, BadText):
                problems.report(path, line_no, line.reason, line.text)
                continue
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 10:
                problems.report(path, line_no, f"expected 'image_id score x1 y1 ... x4 y4' (10 fields), "
                                               f"got {len(tokens)} fields", line)
                continue
            values = _finite_floats(tokens[1:])
            if isinstance(values, str):
                problems.report(path, line_no, values, line)
                continue
            ids.append(tokens[0])
            line_nos.append(line_no)
            rows.append(values)
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 9)
    if with_lines:
        return ids, arr[:, 0].copy(), arr[:, 1:].copy(), line_nos
    return ids, arr[:, 0].copy(), arr[:, 1:].copy()


def _task1_fast(lines: list[str | BadText]) -> tuple[list[str], np.ndarray, list[int]] | None:
    """All non-blank lines with 10 fields and finite numbers -> ``(ids, (N, 9) values, line numbers)``; else
    ``None`` (the caller then reports line by line)."""
    if any(isinstance(line, BadText) for line in lines):
        return None
    line_nos = [i for i, line in enumerate(lines, start=1) if line and not line.isspace()]
    tokens = [lines[i - 1].split() for i in line_nos]
    if any(len(t) != 10 for t in tokens):
        return None
    if not tokens:
        return [], np.zeros((0, 9)), []
    table = np.array(tokens, dtype=object)
    try:
        values = table[:, 1:].astype(np.float64)
    except (ValueError, TypeError):
        return None
    if not np.isfinite(values).all():
        return None
    return table[:, 0].tolist(), values, line_nos


def task1_class(path: str | os.PathLike) -> str:
    """Category name of a ``Task1_{class}.txt`` file name."""
    name = Path(path).name
    if not (name.startswith(TASK1_PREFIX) and name.endswith(".txt")) or len(name) <= len(TASK1_PREFIX) + 4:
        raise DotaFormatError(path, 0, "not a Task1 result file name (expected Task1_{class}.txt)")
    return name[len(TASK1_PREFIX):-4]


def read_task1_dir(directory: str | os.PathLike, skip_invalid: bool = False, *,
                   vocabulary: Collection[str] | None = None) -> Task1Detections:
    """Read every ``Task1_*.txt`` in ``directory`` into ``{image_id: ObjectSet}`` (quads with scores; objects
    ordered by class file name, then by line). Image ids are sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Task1 directory {directory} does not exist")
    problems = _Problems(skip_invalid)
    all_ids, all_scores, all_quads, all_labels = [], [], [], []
    for path in sorted(directory.glob(f"{TASK1_PREFIX}*.txt")):
        label = task1_class(path)
        if vocabulary is not None and label not in vocabulary:
            if not skip_invalid:
                raise DotaFormatError(path, 0, f"unknown class {label!r} in the file name")
            problems.skipped.append(SkippedLine(str(path), 0, f"unknown class {label!r} (whole file)"))
            continue
        ids, scores, quads = read_task1_file(path, problems=problems)
        all_ids += ids
        all_scores.append(scores)
        all_quads.append(quads)
        all_labels += [label] * len(ids)
    from rscovlm.geometry import Boxes, ObjectSet

    out = Task1Detections(skipped=problems.skipped)
    if not all_ids:
        return out
    scores = np.concatenate(all_scores)
    quads = np.concatenate(all_quads)
    labels = np.asarray(all_labels, dtype=object)
    names, inverse = np.unique(np.asarray(all_ids), return_inverse=True)  # sorted image ids
    order = np.argsort(inverse, kind="stable")  # grouped by image, file/line order inside a group
    bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1))
    for k, image_id in enumerate(names.tolist()):
        idx = order[bounds[k]:bounds[k + 1]]
        out[image_id] = ObjectSet(Boxes(quads[idx], "quad"), labels[idx].tolist(), scores=scores[idx])
    return out


def write_task1_dir(directory: str | os.PathLike, detections_by_image: Mapping[str, ObjectSet], *,
                    classes: Iterable[str] | None = None) -> list[Path]:
    """Write ``{image_id: ObjectSet}`` (scores required; boxes converted to quads) as ``Task1_{class}.txt``
    files. Files are written for the classes that occur and for every name in ``classes`` (empty files for
    classes without detections, which the DOTA evaluation expects). Returns the written paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {c: [] for c in (classes or [])}
    for image_id in sorted(detections_by_image):
        objects = detections_by_image[image_id]
        if not image_id or any(c.isspace() for c in image_id):
            raise ValueError(f"image id {image_id!r} cannot be written to a Task1 line")
        if len(objects) and objects.scores is None:
            raise ValueError(f"detections of image {image_id!r} have no scores; Task1 lines need one per box")
        quads = _quad_rows(objects)
        for quad, label, score in zip(quads, objects.labels, objects.scores if len(objects) else []):
            if not label or any(c.isspace() or c in "/\\" for c in label):
                raise ValueError(f"class name {label!r} cannot be used in a Task1 file name")
            lines.setdefault(label, []).append(
                f"{image_id} {format_number(score)} " + " ".join(format_number(v) for v in quad))
    written = []
    for label in sorted(lines):
        path = directory / f"{TASK1_PREFIX}{label}.txt"
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines[label]))
        written.append(path)
    return written
