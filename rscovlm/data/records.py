"""Unified record formats of the data procedure (paper 3.2.2) and their validation.

Every converter writes one of three kinds; the mixture and the sample builder read only these.

``conversation`` - JSON Lines, one object per line (OpenAI ``messages`` structure, images by path)::

    {"id": "geochat/1234",                      # unique within the file
     "source": "geochat",                       # where it came from (mixture statistics)
     "task": "vqa",                             # free-form task name (e.g. vqa, caption, referring, temporal)
     "messages": [
        {"role": "system", "content": "..."},   # optional, first
        {"role": "user", "content": [{"type": "image", "image": "dir/a.png"},
                                     {"type": "text", "text": "Where is <box:0>?"}]},
        {"role": "assistant", "content": "..."}],   # str, or a list of text parts
     "image_sizes": [[800, 800]],               # optional; [width, height] of each image, in order of appearance
     "boxes": [{"kind": "hbb", "values": [x1, y1, x2, y2], "image": 0}],   # optional
     "meta": {...}}                             # optional, free

  Roles run ``system? (user assistant)+``. Image paths are relative to the image root given with the file (the
  ``--images`` of ``data convert``, the ``images`` of a mixture unit); absolute paths are used as they are.
  Boxes that the source wrote inside the text are stored structurally, in **original pixels** of image ``image``
  (see :mod:`rscovlm.geometry.boxes` for the kinds: hbb ``x1,y1,x2,y2``; obb ``cx,cy,w,h,theta`` radians,
  clockwise on screen, le90; quad 8 numbers, normalized), and the text holds a reference ``<box:N>`` (N = index
  into ``boxes``). The sample builder renders each reference in the model frame of the resize it applied, so
  the coordinates in the text always match the pixels the model saw. ``<zoom:N.x1>`` (``.y1``, ``.x2``,
  ``.y2``) is one coordinate of hbb N written as the zoom tool call writes it (``int(v * frame / original)``,
  the reference's truncation; :func:`rscovlm.protocol.zoom.zoom_box_to_model`), so a zoom-chain record (``rscovlm
  data build-zoom``) holds ``{"bbox": [<zoom:0.x1>, <zoom:0.y1>, <zoom:0.x2>, <zoom:0.y2>]}``. ``image_sizes`` is
  required when ``boxes`` is present.

``detection`` - one COCO JSON file: ``images`` [{id, file_name, width, height}], ``categories`` [{id, name}],
  ``annotations`` [{id, image_id, category_id, segmentation: [[x1, y1, ..., x4, y4]] (one normalized quad,
  original pixels), bbox: [x, y, w, h] (its enclosing box), area (quad area), iscrowd: 0, difficult: 0|1|2}].
  Images without annotations are kept (they teach ``There is none.``).

``grounding`` - JSON Lines with the refGeo fields: ``dataset``, ``image_id`` (file name; the image is
  ``{dataset}/{image_id}`` under the image root unless ``image`` gives the path), ``question`` (the referring
  expression), ``question_id``, ``bbox`` [x1, y1, x2, y2] and optional ``poly`` (4 [x, y] points), both in
  absolute pixels of the original image, ``image_width``, ``image_height``; optional ``source``.

:func:`validate_file` collects every problem of a file as ``file:line: field: message``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Iterator, Literal

from rscovlm.data.textio import BadText, DecodedText, iter_lines, iter_lines_from

RecordKind = Literal["conversation", "detection", "grounding"]
RECORD_KINDS: tuple[str, ...] = ("conversation", "detection", "grounding")
ROLES = ("system", "user", "assistant")
BOX_DIMS = {"hbb": 4, "obb": 5, "quad": 8}
BOX_REF = re.compile(r"<box:(\d+)>")
#: one coordinate of box N in the zoom tool call's form (integers ``int(v * frame / original)``, the reference's)
ZOOM_REF = re.compile(r"<zoom:(\d+)\.(x1|y1|x2|y2)>")
#: slack (pixels) allowed when a box pokes out of its image; real labels (DOTA) do this by a pixel or two
BOUNDS_SLACK = 2.0


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a record: where (file, 1-based line, field path) and what."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class ImageRef:
    """One image reference of one record, as a dataset offers it to the pre-flight image check
    (:mod:`rscovlm.train.preflight`: ``image_references()``)."""

    path: str = field(metadata={"help": "the image file, as it will be opened"})
    where: str = field(metadata={"help": "the record, for messages: 'file:line' (or 'sample i')"})
    key: Hashable = field(metadata={"help": "the record's key for drop_records"})
    size: tuple[int, int] | None = field(default=None, metadata={
        "help": "(width, height) the record states, checked against the file's header (None: not stated)"})


class RecordError(ValueError):
    """A malformed input or record; ``problem`` says where."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


# ---- reading with line numbers ----------------------------------------------------------------------------

def _json_lines(path: str, lines: Iterator[tuple[int, str | BadText]],
                errors: Literal["raise", "yield"]) -> Iterator[tuple[int, Any]]:
    for line_no, line in lines:
        if isinstance(line, BadText):
            obj = RecordError(Problem(path, line_no, "", line.reason))
        elif not line.strip():
            continue
        else:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                obj = RecordError(Problem(path, line_no, "", f"not valid JSON ({err.msg} at column {err.colno})"))
        if isinstance(obj, RecordError) and errors == "raise":
            raise obj from None
        yield line_no, obj


def iter_jsonl(path: str | os.PathLike, errors: Literal["raise", "yield"] = "raise") -> Iterator[tuple[int, Any]]:
    """``(line_no, object)`` for every non-blank line (streamed). A line that is not JSON, or not UTF-8 text,
    raises :class:`RecordError` naming file and line (and byte offset), or with ``errors="yield"`` comes as
    ``(line_no, RecordError)`` and the lines after it are still read."""
    path = str(path)
    yield from _json_lines(path, iter_lines(path), errors)


def _decode_problem(path: str, bad: BadText) -> RecordError:
    return RecordError(Problem(path, bad.line_no, "", bad.reason))


_WS = re.compile(r"\s*")
_BAD_CHAR = re.compile("[\udc80-\udcff]")  # an undecodable byte, as surrogateescape decodes it


def _line_of(text: str, pos: int, cache: list[int]) -> int:
    # cache = [last_pos, last_line] so that a forward scan counts newlines once
    last_pos, last_line = cache
    line = last_line + text.count("\n", last_pos, pos)
    cache[0], cache[1] = pos, line
    return line


class _ArrayReader:
    """Iterates ``(line_no, element)`` over the JSON array starting at ``text[pos] == '['``, one element at a time
    (nothing but the current element is kept); ``end`` is the position after ``]`` once exhausted.

    With ``doc`` (the decoded file), an element holding bytes that are not UTF-8 raises :class:`RecordError`
    naming line and byte offset, or with ``errors="yield"`` comes as ``(line_no, RecordError)`` and the next
    elements are still read (the array's structure is intact); a syntax error always raises (nothing after it can
    be located), as a decoding error when undecodable bytes caused it."""

    def __init__(self, path: str, text: str, pos: int, cache: list[int], doc: DecodedText | None = None,
                 errors: Literal["raise", "yield"] = "raise"):
        self.path, self.text, self.pos, self.cache = path, text, pos, cache
        self.doc, self.errors = doc, errors
        self.end: int | None = None

    def _broken(self, start: int, at: int, problem: Problem) -> RecordError:
        bad = self.doc.bad_in(start, at + 1) if self.doc is not None else None
        return _decode_problem(self.path, bad) if bad is not None else RecordError(problem)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        path, text, cache = self.path, self.text, self.cache
        dec = json.JSONDecoder()
        pos = _WS.match(text, self.pos + 1).end()
        if text[pos:pos + 1] == "]":
            self.end = pos + 1
            return
        while True:
            line = _line_of(text, pos, cache)
            start = pos
            try:
                obj, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise self._broken(start, err.pos, Problem(path, err.lineno, "",
                                                           f"not valid JSON ({err.msg} at column {err.colno})"))
            bad = self.doc.bad_in(start, pos) if self.doc is not None else None
            if bad is not None:
                if self.errors == "raise":
                    raise _decode_problem(path, bad)
                obj = _decode_problem(path, bad)
            yield line, obj
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] == ",":
                pos = _WS.match(text, pos + 1).end()
                continue
            if text[pos:pos + 1] == "]":
                self.end = pos + 1
                return
            raise self._broken(pos, pos, Problem(path, _line_of(text, pos, cache), "",
                                                 "expected ',' or ']' between array elements"))


def iter_json_array(path: str | os.PathLike, text: str | None = None, start: int = 0,
                    errors: Literal["raise", "yield"] = "raise") -> Iterator[tuple[int, Any]]:
    """``(line_no, element)`` of a top-level JSON array, decoding element by element so that every element
    knows the line it starts on (``json.load`` forgets positions). Read from ``path`` (``text`` not given), the
    file is streamed in bounded memory (:func:`iter_json_array_from`); an element with bytes that are not UTF-8
    raises, or with ``errors="yield"`` comes as a :class:`RecordError`."""
    path = str(path)
    if text is None:
        for line, obj, _ in iter_json_array_from(path, errors=errors):
            yield line, obj
        return
    cache = [0, 1]
    pos = _WS.match(text, start).end()
    if text[pos:pos + 1] != "[":
        raise RecordError(Problem(path, _line_of(text, pos, cache), "", "expected a JSON array '['"))
    yield from _ArrayReader(path, text, pos, cache, None, errors)


@dataclass(frozen=True)
class ArrayCursor:
    """Where a streamed JSON array stands: ``offset`` = the byte just after the last element read (or after
    ``[``, ``first`` true), ``line`` = the line of that byte. A reader started at a cursor goes on from there."""

    offset: int
    line: int
    first: bool = False

    def to_json(self) -> list:
        return [self.offset, self.line, self.first]

    @classmethod
    def from_json(cls, value) -> "ArrayCursor":
        return cls(int(value[0]), int(value[1]), bool(value[2]))


_CHUNK = 1 << 20
_UTF8_LEAD = re.compile(rb"[\xc0-\xff][\x80-\xbf]{0,2}\Z")


class _ArrayStream:
    """The elements of a top-level JSON array, read in chunks: memory holds one element plus a chunk, whatever
    the file's size. Byte offsets and lines are tracked for every element (errors name them; cursors resume)."""

    def __init__(self, path: str, errors: Literal["raise", "yield"], start: ArrayCursor | None):
        self.path, self.errors = path, errors
        self.fh = open(path, "rb")
        self.pending = b""  # bytes read but not yet decoded (an incomplete UTF-8 sequence at the chunk's end)
        self.text = ""
        self.pos = 0  # char index into text; byte / line of that position:
        self.byte, self.line = 0, 1
        self.eof = False
        self.read_size = _CHUNK
        if start is None:
            self._open_array()
            self.first = True
        else:
            self.fh.seek(start.offset)
            self.byte, self.line, self.first = start.offset, start.line, start.first

    # ---- buffer ----------------------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Read one more chunk into ``text``; False at the end of the file."""
        if self.eof:
            return False
        data = self.fh.read(self.read_size)
        if len(self.text) - self.pos > self.read_size:
            self.read_size *= 2  # a long element: read more per call so its re-decoding stays linear overall
        if not data:
            self.eof = True
            if self.pending:
                self.text = self.text[self.pos:] + self.pending.decode("utf-8", "surrogateescape")
                self.pos, self.pending = 0, b""
                return True
            return False
        data = self.pending + data
        m = _UTF8_LEAD.search(data[-3:])  # keep a multi-byte sequence cut by the chunk for the next read
        cut = len(data) - (len(m.group()) if m else 0)
        self.pending = data[cut:]
        self.text = self.text[self.pos:] + data[:cut].decode("utf-8", "surrogateescape")
        self.pos = 0
        return True

    def _advance(self, end: int) -> None:
        """Move ``pos`` to ``end``, keeping byte offset and line in step."""
        chunk = self.text[self.pos:end]
        self.byte += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogateescape"))
        self.line += chunk.count("\n")
        self.pos = end

    def _skip_ws(self) -> str:
        """The next non-blank character (``""`` at the end of the file), ``pos`` moved onto it."""
        while True:
            end = _WS.match(self.text, self.pos).end()
            self._advance(end)
            if end < len(self.text):
                return self.text[end]
            if not self._fill():
                return ""

    # ---- problems ------------------------------------------------------------------------------------------------
    def _bad_byte(self, start: int, end: int) -> RecordError | None:
        m = _BAD_CHAR.search(self.text, start, end)
        if m is None:
            return None
        head = self.text[start:m.start()]
        offset = self.byte + len(head.encode("utf-8", "surrogateescape"))
        line_no = self.line + head.count("\n")
        a = self.text.rfind("\n", 0, m.start()) + 1
        b = self.text.find("\n", m.start())
        shown = self.text[a:b if b >= 0 else len(self.text)].rstrip("\r")
        bad = BadText(line_no, offset, ord(m.group()) - 0xDC00,
                      shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        return _decode_problem(self.path, bad)

    def _syntax(self, at: int, message: str) -> RecordError:
        bad = self._bad_byte(self.pos, min(at + 1, len(self.text)))
        if bad is not None:
            return bad
        line = self.line + self.text.count("\n", self.pos, at)
        return RecordError(Problem(self.path, line, "", message))

    def _open_array(self) -> None:
        self._fill()
        if self.text.startswith("\ufeff"):
            raise RecordError(Problem(self.path, 1, "", "starts with a byte-order mark; expected a JSON array '['"))
        c = self._skip_ws()
        if c != "[":
            raise self._syntax(self.pos, "expected a JSON array '['")
        self._advance(self.pos + 1)

    # ---- elements --------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, Any, ArrayCursor]]:
        dec = json.JSONDecoder()
        try:
            while True:
                c = self._skip_ws()
                if not self.first:
                    if c == "]":
                        return
                    if c != ",":
                        raise self._syntax(self.pos, "expected ',' or ']' between array elements" if c else
                                           "the file ends inside the JSON array (no closing ']')")
                    self._advance(self.pos + 1)
                    c = self._skip_ws()
                elif c == "]":
                    return
                if not c:
                    raise self._syntax(self.pos, "the file ends inside the JSON array (no closing ']')")
                self.first = False
                while True:
                    try:
                        obj, end = dec.raw_decode(self.text, self.pos)
                    except json.JSONDecodeError as err:
                        truncated = err.pos >= len(self.text) - 8 or err.msg.startswith("Unterminated string")
                        if not self.eof and truncated and self._fill():
                            continue
                        col = err.pos - self.text.rfind("\n", 0, err.pos)
                        raise self._syntax(err.pos, f"not valid JSON ({err.msg} at column {col})") from None
                    if len(self.text) - end < 64 and not self.eof and self._fill():
                        continue  # a number cut by the chunk's end ("-2." of "-2.5") decodes as a shorter one
                    break
                self.read_size = _CHUNK
                line = self.line
                bad = self._bad_byte(self.pos, end)
                if bad is not None:
                    if self.errors == "raise":
                        raise bad
                    obj = bad
                self._advance(end)
                yield line, obj, ArrayCursor(self.byte, self.line)
        finally:
            self.fh.close()


def iter_json_array_from(path: str | os.PathLike, errors: Literal["raise", "yield"] = "raise",
                         start: ArrayCursor | None = None) -> Iterator[tuple[int, Any, ArrayCursor]]:
    """``(line_no, element, cursor)`` of a top-level JSON array file, streamed in bounded memory; ``cursor`` is
    the position after the element (pass it as ``start`` to go on from there, e.g. after an interruption).
    Errors as in :func:`iter_json_array`; a syntax error always raises (nothing after it can be located)."""
    return iter(_ArrayStream(str(path), errors, start))


def _starts_with_bracket(path: str) -> bool:
    """Whether the first non-blank character of the file is ``[`` (a JSON array, not JSON Lines)."""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 16)
            if not block:
                return False
            rest = block.lstrip(b" \t\r\n\x0b\x0c")
            if rest:
                return rest[:1] == b"["


def iter_records(path: str | os.PathLike, errors: Literal["raise", "yield"] = "raise") -> Iterator[tuple[int, Any]]:
    """Records of a JSON array file or a JSON Lines file (decided by the first non-blank character). ``errors``
    as in :func:`iter_jsonl` (lines or elements that are not JSON or not UTF-8); in a JSON array nothing after a
    syntax error can be trusted, so that always raises. Both are streamed (bounded memory)."""
    for line, obj, _ in iter_records_from(path, errors):
        yield line, obj


def iter_records_from(path: str | os.PathLike, errors: Literal["raise", "yield"] = "raise",
                      start: list | None = None) -> Iterator[tuple[int, Any, list]]:
    """:func:`iter_records` with a resume position: ``(line_no, record, cursor)``, ``cursor`` a JSON-able list
    that, passed as ``start``, goes on after that record (JSON array: :class:`ArrayCursor`; JSON Lines: the
    byte offset and line number of the next line)."""
    path = str(path)
    if _starts_with_bracket(path):
        for line, obj, cur in iter_json_array_from(path, errors, None if start is None else
                                                   ArrayCursor.from_json(start)):
            yield line, obj, cur.to_json()
        return
    offset, first_line = (0, 1) if start is None else (int(start[0]), int(start[1]))
    ends: dict[int, int] = {}

    def lines() -> Iterator[tuple[int, str | BadText]]:
        for n, text, nxt in iter_lines_from(path, offset, first_line):
            ends[n] = nxt
            yield n, text

    for line_no, obj in _json_lines(path, lines(), errors):
        nxt = ends[line_no]
        ends.clear()  # blank lines skipped by _json_lines leave their entries behind
        yield line_no, obj, [nxt, line_no + 1]


def read_coco(path: str | os.PathLike) -> tuple[dict, dict[str, list[int]]]:
    """Load a COCO file and the start line of every element of ``images``, ``annotations``, ``categories``.
    A file that is not UTF-8 text raises :class:`RecordError` naming the line and byte offset."""
    path = str(path)
    doc = DecodedText(path)
    bad = doc.first_bad()
    if bad is not None:
        raise _decode_problem(path, bad)
    text = doc.text
    dec = json.JSONDecoder()
    cache = [0, 1]
    lines: dict[str, list[int]] = {}
    out: dict[str, Any] = {}
    pos = _WS.match(text).end()
    if pos >= len(text) or text[pos] != "{":
        raise RecordError(Problem(path, 1, "", "a COCO file must hold one JSON object"))
    pos = _WS.match(text, pos + 1).end()
    while pos < len(text) and text[pos] != "}":
        try:
            key, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise RecordError(Problem(path, err.lineno, "", f"not valid JSON ({err.msg} at column {err.colno})"))
        pos = _WS.match(text, pos).end()
        if pos >= len(text) or text[pos] != ":":
            raise RecordError(Problem(path, _line_of(text, pos, cache), str(key), "expected ':'"))
        pos = _WS.match(text, pos + 1).end()
        if isinstance(key, str) and key in ("images", "annotations", "categories") and text[pos:pos + 1] == "[":
            reader = _ArrayReader(path, text, pos, cache)
            items = list(reader)
            pos = reader.end
            out[key], lines[key] = [obj for _, obj in items], [line for line, _ in items]
        else:
            try:
                value, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise RecordError(Problem(path, err.lineno, str(key), f"not valid JSON ({err.msg})"))
            out[key] = value
        pos = _WS.match(text, pos).end()
        if text[pos:pos + 1] == ",":
            pos = _WS.match(text, pos + 1).end()
    return out, lines


# ---- field checks ------------------------------------------------------------------------------------------

def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(value, n: int, field: str, errs: list) -> list[float] | None:
    if not isinstance(value, list) or len(value) != n:
        errs.append((field, f"expected a list of {n} numbers, got {_short(value)}"))
        return None
    if not all(_is_num(v) for v in value):
        errs.append((field, f"expected finite numbers, got {_short(value)}"))
        return None
    return [float(v) for v in value]


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_box(kind, values, width: float | None, height: float | None, field: str, errs: list) -> None:
    """Append problems of one structured box (kind, values in original pixels) to ``errs``."""
    if kind not in BOX_DIMS:
        errs.append((f"{field}.kind", f"unknown box kind {kind!r}; expected hbb, obb or quad"))
        return
    v = _numbers(values, BOX_DIMS[kind], f"{field}.values", errs)
    if v is None:
        return
    if kind == "hbb" and (v[0] > v[2] or v[1] > v[3]):
        errs.append((f"{field}.values", f"hbb needs x1 <= x2 and y1 <= y2, got {v}"))
    if kind == "obb" and (v[2] <= 0 or v[3] <= 0):
        errs.append((f"{field}.values", f"obb needs positive width and height, got {v}"))
    if width is None or height is None:
        return
    if kind == "obb":
        xs, ys = [v[0]], [v[1]]
    else:
        xs, ys = v[0::2], v[1::2]
    if min(xs) < -BOUNDS_SLACK or max(xs) > width + BOUNDS_SLACK or min(ys) < -BOUNDS_SLACK \
            or max(ys) > height + BOUNDS_SLACK:
        errs.append((f"{field}.values", f"{kind} {v} lies outside the {width:g} x {height:g} image"))


def _check_size(value, field: str, errs: list) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2 or not all(_is_num(v) and v > 0 for v in value):
        errs.append((field, f"expected [width, height] with positive numbers, got {_short(value)}"))
        return None
    return float(value[0]), float(value[1])


def content_parts(content) -> list[dict]:
    """Message content as a list of parts (a plain string is one text part)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content


def message_images(messages: list[dict]) -> list[str]:
    """Image paths of a conversation, in order of appearance."""
    return [p["image"] for m in messages for p in content_parts(m["content"]) if p.get("type") == "image"]


def validate_conversation(rec) -> list[tuple[str, str]]:
    """``(field, message)`` for every problem of one conversation record (empty list = valid)."""
    errs: list[tuple[str, str]] = []
    if not isinstance(rec, dict):
        return [("", f"expected a JSON object, got {_short(rec)}")]
    for key in ("id", "source", "task"):
        if not isinstance(rec.get(key), str) or not rec.get(key):
            errs.append((key, f"required non-empty string, got {_short(rec.get(key))}"))
    messages = rec.get("messages")
    n_images = 0
    refs: set[int] = set()
    zoom_refs: set[int] = set()
    if not isinstance(messages, list) or not messages:
        errs.append(("messages", "required non-empty list of messages"))
    else:
        roles = []
        for i, msg in enumerate(messages):
            f = f"messages[{i}]"
            if not isinstance(msg, dict):
                errs.append((f, "expected an object with role and content"))
                continue
            role = msg.get("role")
            if role not in ROLES:
                errs.append((f"{f}.role", f"expected one of {ROLES}, got {_short(role)}"))
            roles.append(role)
            content = msg.get("content")
            if isinstance(content, str):
                parts = [{"type": "text", "text": content}]
            elif isinstance(content, list) and content:
                parts = content
            else:
                errs.append((f"{f}.content", "expected a string or a non-empty list of parts"))
                continue
            for j, part in enumerate(parts):
                pf = f"{f}.content[{j}]"
                if not isinstance(part, dict):
                    errs.append((pf, "expected an object with a type"))
                elif part.get("type") == "text":
                    if not isinstance(part.get("text"), str) or not part["text"].strip():
                        errs.append((f"{pf}.text", "required non-empty string"))
                    else:
                        refs.update(int(m) for m in BOX_REF.findall(part["text"]))
                        zoom_refs.update(int(m) for m, _ in ZOOM_REF.findall(part["text"]))
                elif part.get("type") == "image":
                    if role == "assistant":
                        errs.append((pf, "assistant messages cannot hold images"))
                    if not isinstance(part.get("image"), str) or not part["image"]:
                        errs.append((f"{pf}.image", "required image path"))
                    n_images += 1
                else:
                    errs.append((f"{pf}.type", f"expected 'text' or 'image', got {_short(part.get('type'))}"))
        body = roles[1:] if roles and roles[0] == "system" else roles
        if "system" in body:
            errs.append(("messages", "a system message may only come first"))
        if not body or body[0] != "user" or body[-1] != "assistant" or any(
                a == b for a, b in zip(body, body[1:])):
            errs.append(("messages", f"roles must run system? (user assistant)+, got {roles}"))
    sizes = rec.get("image_sizes")
    checked_sizes: list[tuple[float, float] | None] = []
    if sizes is not None:
        if not isinstance(sizes, list) or len(sizes) != n_images:
            errs.append(("image_sizes", f"expected {n_images} [width, height] pairs (one per image)"))
        else:
            checked_sizes = [_check_size(s, f"image_sizes[{i}]", errs) for i, s in enumerate(sizes)]
    boxes = rec.get("boxes")
    if boxes is not None:
        if not isinstance(boxes, list):
            errs.append(("boxes", "expected a list"))
            boxes = []
        if boxes and sizes is None:
            errs.append(("image_sizes", "required when the record has boxes"))
        for i, box in enumerate(boxes):
            f = f"boxes[{i}]"
            if not isinstance(box, dict):
                errs.append((f, "expected an object {kind, values, image}"))
                continue
            img = box.get("image", 0)
            if not isinstance(img, int) or isinstance(img, bool) or not 0 <= img < max(n_images, 1) \
                    or n_images == 0:
                errs.append((f"{f}.image", f"image index {img!r} out of range for {n_images} image(s)"))
                size = None
            else:
                size = checked_sizes[img] if img < len(checked_sizes) else None
            check_box(box.get("kind"), box.get("values"), *(size or (None, None)), f, errs)
        for r in sorted(refs):
            if r >= len(boxes):
                errs.append(("messages", f"<box:{r}> refers to a missing box ({len(boxes)} boxes)"))
        for r in sorted(zoom_refs):
            if r >= len(boxes):
                errs.append(("messages", f"<zoom:{r}.*> refers to a missing box ({len(boxes)} boxes)"))
            elif isinstance(boxes[r], dict) and boxes[r].get("kind") != "hbb":
                errs.append((f"boxes[{r}].kind", "a box written as a zoom tool call (<zoom:N.*>) must be hbb"))
    elif refs or zoom_refs:
        errs.append(("boxes", f"text refers to {len(refs)} box(es) but the record has no 'boxes'"))
    if "meta" in rec and not isinstance(rec["meta"], dict):
        errs.append(("meta", "expected an object"))
    return errs


def validate_grounding(rec) -> list[tuple[str, str]]:
    """``(field, message)`` for every problem of one refGeo-style grounding record."""
    if not isinstance(rec, dict):
        return [("", f"expected a JSON object, got {_short(rec)}")]
    errs: list[tuple[str, str]] = []
    for key in ("dataset", "image_id", "question"):
        if not isinstance(rec.get(key), str) or not rec.get(key, "").strip():
            errs.append((key, f"required non-empty string, got {_short(rec.get(key))}"))
    if "question_id" in rec and not isinstance(rec["question_id"], (str, int)):
        errs.append(("question_id", f"expected a string or an integer, got {_short(rec['question_id'])}"))
    size = []
    for key in ("image_width", "image_height"):
        v = rec.get(key)
        if not _is_num(v) or v <= 0:
            errs.append((key, f"required positive number, got {_short(v)}"))
        else:
            size.append(float(v))
    w, h = size if len(size) == 2 else (None, None)
    check_box("hbb", rec.get("bbox"), w, h, "bbox", errs)
    errs[:] = [(f.replace("bbox.values", "bbox"), m) for f, m in errs]
    if rec.get("poly") is not None:
        poly = rec["poly"]
        if not isinstance(poly, list) or len(poly) != 4 or not all(
                isinstance(p, list) and len(p) == 2 for p in poly):
            errs.append(("poly", f"expected 4 [x, y] points, got {_short(poly)}"))
        else:
            sub: list = []
            check_box("quad", [c for p in poly for c in p], w, h, "poly", sub)
            errs.extend((f.replace("poly.values", "poly"), m) for f, m in sub)
    if "image" in rec and (not isinstance(rec["image"], str) or not rec["image"]):
        errs.append(("image", "expected an image path"))
    return errs


def validate_coco(coco: dict, lines: dict[str, list[int]], path: str) -> list[Problem]:
    """Every problem of a COCO detection file (ids, references, quad segmentation, bbox consistency)."""
    probs: list[Problem] = []

    def add(section: str, i: int | None, field: str, msg: str) -> None:
        line = lines.get(section, [None] * (i + 1 if i is not None else 0))[i] if i is not None else None
        probs.append(Problem(path, line, f"{section}[{i}].{field}" if i is not None else field, msg))

    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            add(key, None, key, "required list")
    if probs:
        return probs
    image_sizes: dict[Any, tuple[float, float] | None] = {}
    for i, img in enumerate(coco["images"]):
        if not isinstance(img, dict):
            add("images", i, "", "expected an object")
            continue
        iid = img.get("id")
        if not isinstance(iid, (int, str)) or isinstance(iid, bool):
            add("images", i, "id", f"expected an integer or string id, got {_short(iid)}")
        elif iid in image_sizes:
            add("images", i, "id", f"duplicate image id {iid!r}")
        if not isinstance(img.get("file_name"), str) or not img.get("file_name"):
            add("images", i, "file_name", "required image path")
        w, h = img.get("width"), img.get("height")
        ok = _is_num(w) and w > 0 and _is_num(h) and h > 0
        if not ok:
            add("images", i, "width", f"width and height must be positive numbers, got {_short([w, h])}")
        if isinstance(iid, (int, str)):
            image_sizes[iid] = (float(w), float(h)) if ok else None
    cat_ids = set()
    for i, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            add("categories", i, "id", "expected {id: int, name: str}")
            continue
        if cat["id"] in cat_ids:
            add("categories", i, "id", f"duplicate category id {cat['id']}")
        cat_ids.add(cat["id"])
    ann_ids = set()
    for i, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict):
            add("annotations", i, "", "expected an object")
            continue
        aid = ann.get("id")
        if aid in ann_ids:
            add("annotations", i, "id", f"duplicate annotation id {aid!r}")
        ann_ids.add(aid)
        if ann.get("image_id") not in image_sizes:
            add("annotations", i, "image_id", f"no image with id {ann.get('image_id')!r}")
        if ann.get("category_id") not in cat_ids:
            add("annotations", i, "category_id", f"no category with id {ann.get('category_id')!r}")
        seg = ann.get("segmentation")
        errs: list = []
        if not isinstance(seg, list) or len(seg) != 1:
            errs.append(("segmentation", "expected one polygon [[x1, y1, ..., x4, y4]]"))
        else:
            # no bounds check: objects cut by a split window legitimately extend beyond their patch
            check_box("quad", seg[0], None, None, "segmentation[0]", errs)
        bbox = _numbers(ann.get("bbox"), 4, "bbox", errs)
        if bbox is not None and (bbox[2] < 0 or bbox[3] < 0):
            errs.append(("bbox", f"width and height must be >= 0, got {bbox}"))
        elif bbox is not None and not errs:
            xs, ys = seg[0][0::2], seg[0][1::2]
            env = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            if max(abs(a - b) for a, b in zip(env, bbox)) > 1.0:
                errs.append(("bbox", f"{bbox} is not the enclosing box {env} of the segmentation"))
        if not _is_num(ann.get("area")) or ann.get("area") < 0:
            errs.append(("area", f"required number >= 0, got {_short(ann.get('area'))}"))
        if ann.get("difficult", 0) not in (0, 1, 2):
            errs.append(("difficult", f"expected 0, 1 or 2, got {_short(ann.get('difficult'))}"))
        for field, msg in errs:
            add("annotations", i, field.replace("segmentation[0].values", "segmentation[0]"), msg)
    return probs


def detect_kind(path: str | os.PathLike) -> RecordKind:
    """Guess the record kind of a file: a JSON object with ``images`` is COCO detection; JSON Lines whose first
    record has ``messages`` are conversations, with ``bbox`` grounding."""
    path = str(path)
    with open(path, "rb") as fh:  # undecodable bytes are reported by the reader that follows, with their line
        head = fh.read(1 << 16).decode("utf-8", "replace").lstrip()
    first_line = head.split("\n", 1)[0]
    try:
        first = json.loads(first_line)
    except json.JSONDecodeError:
        return "detection" if head.startswith("{") else "conversation"
    if isinstance(first, dict) and "messages" in first:
        return "conversation"
    if isinstance(first, dict) and "bbox" in first:
        return "grounding"
    if isinstance(first, dict) and "images" in first:
        return "detection"
    return "conversation"


def validate_file(path: str | os.PathLike, kind: RecordKind | None = None,
                  image_root: str | os.PathLike | None = None) -> list[Problem]:
    """All problems of a record file (every line, every field). With ``image_root`` the image files must exist."""
    path = str(path)
    kind = kind or detect_kind(path)
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")
    probs: list[Problem] = []
    try:
        if kind == "detection":
            coco, lines = read_coco(path)
            probs = validate_coco(coco, lines, path)
            if image_root is not None and isinstance(coco.get("images"), list):
                for i, img in enumerate(coco["images"]):
                    name = img.get("file_name") if isinstance(img, dict) else None
                    if isinstance(name, str) and not os.path.exists(os.path.join(image_root, name)):
                        probs.append(Problem(path, lines["images"][i], f"images[{i}].file_name",
                                             f"image not found under {image_root}: {name}"))
            return probs
        check = validate_conversation if kind == "conversation" else validate_grounding
        ids: dict = {}
        for line_no, rec in iter_jsonl(path, errors="yield"):
            if isinstance(rec, RecordError):
                probs.append(rec.problem)
                continue
            for field, msg in check(rec):
                probs.append(Problem(path, line_no, field, msg))
            if not isinstance(rec, dict):
                continue
            key = rec.get("id")
            if kind == "conversation" and isinstance(key, str):
                if key in ids:
                    probs.append(Problem(path, line_no, "id", f"duplicate id {key!r} (first on line {ids[key]})"))
                ids.setdefault(key, line_no)
            if image_root is not None:
                for img, field in _record_images(rec, kind):
                    if not os.path.exists(os.path.join(image_root, img)):
                        probs.append(Problem(path, line_no, field, f"image not found under {image_root}: {img}"))
    except RecordError as err:
        probs.append(err.problem)
    return probs


def _record_images(rec: dict, kind: str) -> list[tuple[str, str]]:
    if kind == "grounding":
        if isinstance(rec.get("image"), str):
            return [(rec["image"], "image")]
        if isinstance(rec.get("dataset"), str) and isinstance(rec.get("image_id"), str):
            return [(grounding_image_path(rec), "image_id")]
        return []
    out = []
    for i, msg in enumerate(rec.get("messages") or []):
        if isinstance(msg, dict) and isinstance(msg.get("content"), list):
            for j, part in enumerate(msg["content"]):
                if isinstance(part, dict) and part.get("type") == "image" and isinstance(part.get("image"), str):
                    out.append((part["image"], f"messages[{i}].content[{j}].image"))
    return out


def grounding_image_path(rec: dict) -> str:
    """Image path of a grounding record relative to the image root (refGeo layout ``{dataset}/{image_id}``)."""
    return rec.get("image") or f"{rec['dataset']}/{rec['image_id']}"


def write_jsonl(path: str | os.PathLike, records) -> int:
    """Write records as JSON Lines (UTF-8, no ASCII escaping); returns the count."""
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            n += 1
    return n


def write_coco(path: str | os.PathLike, coco: dict) -> None:
    """Write a COCO file with one image / annotation / category per line (readable diffs, exact line numbers
    in validation messages)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{\n")
        extra = [k for k in coco if k not in ("images", "annotations", "categories")]
        for k in extra:
            fh.write(f"{json.dumps(k)}: {json.dumps(coco[k], ensure_ascii=False)},\n")
        for n, key in enumerate(("images", "categories", "annotations")):
            items = coco.get(key, [])
            fh.write(f'"{key}": [')
            for i, item in enumerate(items):
                fh.write("\n  " + json.dumps(item, ensure_ascii=False, separators=(",", ":")))
                if i + 1 < len(items):
                    fh.write(",")
            fh.write("\n]" if items else "]")
            fh.write(",\n" if n < 2 else "\n")
        fh.write("}\n")
