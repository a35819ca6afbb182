"""Answer text -> box candidates: the readers behind :func:`~rscovlm.protocol.detection.parse_detections` and
:func:`~rscovlm.protocol.grounding.parse_grounding`.

:func:`read_answer` never raises and runs in time linear in the length of the answer. It returns every piece of
the answer as a :class:`Candidate`: a box (label, kind, values) or a fragment it could not read (``kind`` None),
so that a caller can account for all of it. Which boxes a caller keeps (vocabulary, box kind) is its own business.

Forms
-----
Each box is reported with the form it was written in (:attr:`Candidate.form`); :attr:`Reading.form` joins the
forms of the readable boxes (``reference-plain+bbox_2d-json``), or says ``none``, ``empty``, ``unreadable`` (no
readable box) or ``not text``.

* ``none``: the whole answer is ``There is none.`` (the paper) or ``There are none.`` (the reference), any case,
  the period optional.
* ``reference-plain``: a line that starts with comma-separated numbers, then whitespace and the label (the rest
  of the line): ``120,45,160,45,160,80,120,80 plane`` (quad, 8 numbers), ``x1,y1,x2,y2 label`` (hbb, 4),
  ``cx,cy,w,h,a label`` (obb, 5, angle in degrees) - :mod:`rscovlm.protocol.reference`. Numbers may carry a sign
  and decimals (at most 20 digits before and after the point); spaces around the commas are allowed. A line of
  another count of numbers is read as an rscovlm-plain line (numbered prose such as ``2. plane: ...``); a line
  without a label is a box without a label (a grounding answer).
* JSON: a list of objects, one per box, ``{"<box key>": [...], "label": "plane"}``; the key names the kind and
  the form (:data:`JSON_BOX_KEYS`): ``bbox_2d-json`` for ``bbox_2d`` (hbb: Qwen2.5-VL's native answers and the
  reference's hbb form), ``reference-json`` for ``quadrant bbox`` (quad) and ``oriented bbox`` (obb, degrees),
  ``rscovlm-json`` for ``quad_2d`` and ``rbox_2d``. Each top-level ``{...}`` is read on its own, so a truncated
  or partly broken list still yields its complete objects; everything else in the text (apart from ``[``,
  ``]``, commas and whitespace) is reported. A value must be a list of ``BOX_DIMS[kind]`` JSON numbers (not
  booleans) that are finite as floats (the reference keeps the first 8 of a longer quad list; here it is
  reported).
* ``geochat``: GeoChat's ``{<x1><y1><x2><y2>|<angle>}``, boxes optionally preceded by ``<p>label</p>``
  (a label holds until the next one) and concatenated (``{...}{...}``). Coordinates are on GeoChat's 0-100 grid
  of the image (:attr:`Candidate.grid` = 100; the parsers map them into the caller's frame); ``x1,y1,x2,y2`` is
  the box before rotation about its centre and ``angle`` is in degrees, positive = COUNTER-clockwise on screen
  (GeoChat's demo draws the box with ``cv2.getRotationMatrix2D(centre, angle)``), so the candidate is the obb
  ``(cx, cy, x2 - x1, y2 - y1, -angle)`` in rscovlm's convention (positive = clockwise); without an angle, or
  with angle 0, it is the hbb ``(x1, y1, x2, y2)``. The rest of a block that holds GeoChat boxes is read as
  plain text (lines of the other forms are read, prose is reported).
* ``rscovlm-plain``: lines of ``label: box; box; ...``. A box is two ``(x,y)`` vertices (hbb), four (quad), or
  one ``(cx,cy,w,h,angle)`` group (obb); vertices are joined by commas. Numbers are read only from these groups:
  ASCII digits, an optional sign, decimal point and exponent (at most 20 digits before and after the point).
  Each ``label:`` starts a new category, on a new line or inside one (``plane: (..),(..); ship: (..),(..)``); a
  label holds for the rest of its line and is never carried over to the next line. Objects are separated by
  ``;`` (a second box after a box needs a ``;`` or a new label, else it is reported). Text after a complete box
  (``plane: (10,10),(20,20) at 3 o'clock``) is reported as its own unread fragment and the box is kept; a box
  that continues after its last group (``(1,1),(2,2),(3``: cut-off output) is reported whole. A box without a
  label is reported, except with ``captions=True`` (grounding), where any text before the first box of a piece
  (``the plane at (10,20),(30,40)``) is its caption.
* Fenced blocks (```` ```json ... ``` ````, the closing fence optional): every block is read by the reader whose
  form it has; text outside the fences is read too (prose there is reported, boxes are read), so mixed answers
  lose nothing. A block is GeoChat when it holds ``{<number``, JSON when it starts with ``[`` or ``{``, else
  plain (reference and rscovlm lines, line by line).

New forms are added by putting a :class:`Reader` into :data:`READERS` ahead of ``plain`` (which takes any text).

Limits (what lies beyond a limit is reported as unread, never dropped silently)
------------------------------------------------------------------------------
* :data:`MAX_CHARS` (131,072) characters of an answer are read; the rest is one unread fragment.
* :data:`MAX_PIECES` (4,096) pieces are read (a fenced block, a ``;``-separated piece of a plain line, a box, a
  top-level JSON object or the text between two of them); the rest of the answer is one unread fragment.
* :data:`MAX_JSON_DEPTH` (32): a JSON object nested deeper than this (brackets and braces) is one unread fragment.
* A plain-form number has at most 20 digits before and after the point and a 3-digit exponent; a box with a
  longer one is unread. A label must not contain ``[ ] { } "``.

These are far beyond real answers (a 1,024-token answer is about 4,000 characters and 40 objects) and keep the
worst case of any answer, a megabyte included, at a few tens of milliseconds.

Each limit hit is named in :attr:`Reading.limits`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from rscovlm.geometry.boxes import BOX_DIMS, BoxKind

MAX_CHARS = 131_072
MAX_PIECES = 4_096
MAX_JSON_DEPTH = 32

JSON_BOX_KEYS: dict[str, BoxKind] = {"bbox_2d": "hbb", "quad_2d": "quad", "rbox_2d": "obb",
                                     "quadrant bbox": "quad", "oriented bbox": "obb"}
JSON_KEY_FORMS: dict[str, str] = {"bbox_2d": "bbox_2d-json", "quad_2d": "rscovlm-json", "rbox_2d": "rscovlm-json",
                                  "quadrant bbox": "reference-json", "oriented bbox": "reference-json"}
GEOCHAT_GRID = 100.0
_VERTICES_KIND: dict[int, BoxKind] = {2: "hbb", 4: "quad"}
_COUNT_KIND: dict[int, BoxKind] = {4: "hbb", 5: "obb", 8: "quad"}


class Candidate(NamedTuple):
    """One piece of an answer: a box (``kind`` and ``values`` set; ``label`` as written, or None; obb angles in
    degrees) or, with ``kind`` None, a fragment that could not be read. ``raw`` is its text, for reports;
    ``form`` the form the box was written in; ``grid``: the values are on a ``grid`` x ``grid`` frame of the
    image (GeoChat's 0-100) instead of the caller's frame."""

    raw: str
    label: str | None = None
    kind: BoxKind | None = None
    values: tuple[float, ...] | None = None
    form: str | None = None
    grid: float | None = None


@dataclass
class Reading:
    """What :func:`read_answer` found: ``form`` (the forms of the readable boxes joined by ``+`` in order of
    appearance, e.g. ``reference-plain``; ``none`` for an explicit empty answer, ``empty`` for blank text,
    ``unreadable`` when no box could be read, ``not text`` for a non-string), the candidates in text order and the
    limits that were hit."""

    form: str
    candidates: list[Candidate] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)


class ReadContext:
    """Shared state of one reading: the candidates, the piece budget and the ``captions`` option."""

    def __init__(self, captions: bool):
        self.captions = captions
        self.out: list[Candidate] = []
        self.left = MAX_PIECES
        self.limits: list[str] = []

    def take(self) -> bool:
        """Spend one piece of the budget; False (and the limit noted) when none is left."""
        if self.left > 0:
            self.left -= 1
            return True
        if not self.limits or not self.limits[-1].startswith("more than"):
            self.limits.append(f"more than {MAX_PIECES} pieces")
        return False

    def junk(self, raw: str) -> None:
        self.out.append(Candidate(raw))


@dataclass(frozen=True)
class Reader:
    """A text form: ``claims(block)`` says whether a (stripped, non-empty) block has this form; ``read(block, ctx)``
    appends its candidates to ``ctx.out`` and returns None, or the offset in ``block`` where it stopped because
    ``ctx.take()`` refused (the caller reports the rest). Both must run in linear time and never raise."""

    form: str
    claims: Callable[[str], bool]
    read: Callable[[str, ReadContext], int | None]


# ---- numbers --------------------------------------------------------------------------------------------------

_NUM = r"[-+]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,3})?"
_NUM_RE = re.compile(_NUM)


def _floats(numbers: list[str]) -> tuple[float, ...] | None:
    values = tuple(map(float, numbers))  # bounded digits: float() cannot fail or take long
    return values if all(map(math.isfinite, values)) else None


def _json_values(value, dims: int) -> tuple[float, ...] | None:
    if type(value) is not list or len(value) != dims or not all(type(x) in (int, float) for x in value):
        return None  # (booleans are not numbers here)
    try:
        values = tuple(map(float, value))
    except OverflowError:  # an integer beyond the float range
        return None
    return values if all(map(math.isfinite, values)) else None


# ---- none -----------------------------------------------------------------------------------------------------

_NONE = re.compile(r"there\s++(?:is|are)\s++none\.?", re.I)


def is_none_answer(text: str) -> bool:
    """True for ``There is none.`` / ``There are none.`` (any case, surrounding whitespace, period optional)."""
    text = text.strip()
    return len(text) < 100 and _NONE.fullmatch(text) is not None


# ---- plain ----------------------------------------------------------------------------------------------------

_PIECE = re.compile(r"[^;\s][^;\n]*+")  # a non-blank piece of a line, up to ';' or the end of the line
_HEAD = re.compile(r"[^()]*+")  # label / caption / prose before a box
_V = rf"\(\s*+{_NUM}\s*+,\s*+{_NUM}\s*+\)"
# a box: vertices joined by commas, or one five-number group; it must not run on into another group
_BOX_TEXT = rf"(?:{_V}(?:\s*+,\s*+{_V})*+|\(\s*+{_NUM}(?:\s*+,\s*+{_NUM}){{4}}\s*+\))"
_BOX = re.compile(rf"{_BOX_TEXT}(?!\s*+,?\s*+\()")
_LABEL_FORBIDDEN = re.compile(r"[\[\]{}\"]")
_FILLER = " \t\r\n,."  # stray separators around boxes and at the end of a piece are not content
# the usual piece, `label: box` or `box`, read in one match (the general loop below gives the same result)
_SIMPLE = re.compile(rf"(?:(?P<label>[^():;\[\]{{}}\"]*+):)?[\s,.]*+(?P<box>{_BOX_TEXT})[\s,.]*+")


def _box(text: str) -> tuple[BoxKind | None, tuple[float, ...] | None]:
    n_groups = text.count("(")
    numbers = _NUM_RE.findall(text) if n_groups <= 4 else []
    if n_groups == 1 and len(numbers) == 5:
        kind = "obb"
    else:
        kind = _VERTICES_KIND.get(n_groups)
    if kind is None:
        return None, None
    values = _floats(numbers)
    return (kind, values) if values is not None else (None, None)


# a reference line: comma-separated numbers, then (after whitespace) the label, the rest of the line
_REF_NUM = r"[-+]?+(?:[0-9]{1,20}+(?:\.[0-9]{1,20}+)?+|\.[0-9]{1,20}+)"
_REF_LINE = re.compile(rf"(?P<nums>{_REF_NUM}(?:[ \t]*+,[ \t]*+{_REF_NUM})*+)(?:[ \t]++(?P<label>[^\n]*+))?")
_REF_NUM_RE = re.compile(_REF_NUM)
_LINE = re.compile(r"[^\n]++")


def _reference_line(line: str) -> Candidate | None:
    """A reference-plain box from a stripped line, or None when the line is not one (wrong count of numbers)."""
    if line[0] not in "0123456789+-.":
        return None
    m = _REF_LINE.fullmatch(line)
    if m is None:
        return None
    numbers = _REF_NUM_RE.findall(m.group("nums"))
    kind = _COUNT_KIND.get(len(numbers))
    if kind is None:
        return None
    label = (m.group("label") or "").strip(_FILLER) or None
    values = _floats(numbers)
    if values is None:
        return Candidate(line)
    return Candidate(line, label, kind, values, "reference-plain")


def _read_plain(text: str, ctx: ReadContext) -> int | None:
    text = text.replace("\r", "\n")  # same length: offsets stay valid
    for line in _LINE.finditer(text):
        stripped = line.group().strip()
        if not stripped:
            continue
        ref = _reference_line(stripped)
        if ref is not None:
            if not ctx.take():
                return line.start()
            ctx.out.append(ref)
            continue
        label: str | None = None  # labels do not carry over from one line to the next
        for piece in _PIECE.finditer(line.group()):
            stop, label = _read_piece(piece.group(), label, ctx)
            if stop is not None:
                return line.start() + piece.start() + stop
    return None


def _v0_candidate(raw: str, label: str | None, box: str) -> Candidate:
    kind, values = _box(box)
    return Candidate(raw, label, kind, values, "rscovlm-plain" if kind is not None else None)


def _read_piece(piece: str, label: str | None, ctx: ReadContext) -> tuple[int | None, str | None]:
    """Candidates of one ``;``-separated piece; returns (offset where the budget ran out or None, label after it)."""
    simple = _SIMPLE.fullmatch(piece)
    if simple is not None:
        if not ctx.take():
            return 0, label
        box = simple.group("box")
        raw = piece.strip(_FILLER)
        if simple.group("label") is not None:
            label = simple.group("label").strip(_FILLER) or None
        elif label is not None:
            raw = f"{label}: {raw}"
        ctx.out.append(_v0_candidate(raw, label, box))
        return None, label
    pos, after_box, n = 0, False, len(piece)
    while pos < n:
        if not ctx.take():
            return pos, label
        head = _HEAD.match(piece, pos)
        head_text = head.group()
        colon = head_text.rfind(":")
        caption = head_text.strip(_FILLER)
        if colon >= 0:  # a new label
            name = head_text[:colon].strip(_FILLER)
            caption = head_text[colon + 1:].strip(_FILLER)
            label = name if name and not _LABEL_FORBIDDEN.search(name) else None
            after_box = False
        box = _BOX.match(piece, head.end())
        if box is None:
            rest = piece[pos:].strip(_FILLER)
            if rest:  # text after a box, a label without a box, or a box that does not parse
                ctx.junk(rest)
            return None, label
        raw = piece[pos:box.end()].strip(_FILLER)
        pos = box.end()
        if caption and (after_box or colon >= 0 or not ctx.captions):
            ctx.junk(raw)  # prose before a box (not allowed after a label or another box)
            continue
        if after_box:
            ctx.junk(raw)  # a second box without ';' or a new label
            continue
        after_box = True
        name = label if colon >= 0 or label is not None else (caption or None)
        if colon < 0 and not caption and label is not None:
            raw = f"{label}: {raw}"  # the line's label, for the report
        ctx.out.append(_v0_candidate(raw, name, box.group()))
    return None, label


# ---- json -----------------------------------------------------------------------------------------------------

def _floor_walk(step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running level before / after each step, never below 0 (a step below 0 is ignored)."""
    total = np.cumsum(step)
    after = total - np.minimum(np.minimum.accumulate(total), 0)
    before = np.empty_like(after)
    before[:1] = 0
    before[1:] = after[:-1]
    return before, after


_JSON_TOKEN = re.compile(r'\\\\|\\"|["{}\[\]]')  # a backslash pair, an escaped quote, a special character
_SMALL_JSON = 2048


def _json_objects_small(body: str, limit: int) -> tuple[list[int], list[int], list[int]]:
    """:func:`_json_objects` by a loop over the special characters: the same result, faster on short answers."""
    starts: list[int] = []
    ends: list[int] = []
    depths: list[int] = []
    in_string, braces, nest, base, deepest = False, 0, 0, 0, 0
    for m in _JSON_TOKEN.finditer(body):
        ch = m.group()
        if len(ch) == 2:
            continue
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "{" or ch == "[":
            if ch == "{":
                if braces == 0:
                    if len(starts) == limit:
                        break
                    starts.append(m.start())
                    base = deepest = nest
                braces += 1
            nest += 1
            deepest = max(deepest, nest)
        else:
            nest -= nest > 0
            if ch == "}" and braces:
                braces -= 1
                if braces == 0:
                    ends.append(m.end())
                    depths.append(deepest - base)
    if len(ends) < len(starts):
        ends.append(len(body))
        depths.append(deepest - base)
    return starts, ends, depths


def _json_objects(body: str, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, depths)`` of the first ``limit`` top-level ``{...}`` of ``body``: end exclusive
    (``len(body)`` when it is never closed), depth = deepest nesting of brackets and braces inside. Strings are
    skipped (a quote after an odd run of backslashes is not a delimiter); stray closing brackets are ignored.
    Vectorized over the special characters, so linear and fast on megabytes."""
    c = np.frombuffer(body.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(c)
    pos = np.flatnonzero((c == 0x22) | (c == 0x5C) | (c == 0x7B) | (c == 0x7D) | (c == 0x5B) | (c == 0x5D))
    c = c[pos]  # from here on only the special characters, in order
    quote = c == 0x22
    backslash = c == 0x5C
    if backslash.any():  # a quote after an odd run of backslashes is escaped
        chained = backslash[:-1] & (pos[:-1] + 1 == pos[1:])  # a backslash right before the next special
        idx = np.arange(len(chained))
        run = idx - np.maximum.accumulate(np.where(chained, -1, idx))  # chained backslashes ending at each one
        quote[1:] &= np.where(chained, run, 0) % 2 == 0
    structural = (np.cumsum(quote) - quote) % 2 == 0
    structural &= ~quote
    open_brace, close_brace = structural & (c == 0x7B), structural & (c == 0x7D)
    before, after = _floor_walk(open_brace.astype(np.int32) - close_brace)
    starts = np.flatnonzero(open_brace & (before == 0))[:limit]
    if not len(starts):
        return starts, starts, starts
    closes = np.flatnonzero(close_brace & (before == 1) & (after == 0))
    ends = np.full(len(starts), len(c))  # in specials; char_ends in characters
    char_ends = np.full(len(starts), n)
    if len(closes):
        k = np.searchsorted(closes, starts)
        found = k < len(closes)
        ends[found] = closes[k[found]] + 1
        char_ends[found] = pos[closes[k[found]]] + 1
    nest_before, nest_after = _floor_walk((open_brace | (structural & (c == 0x5B))).astype(np.int32)
                                          - (close_brace | (structural & (c == 0x5D))))
    bounds = np.empty(2 * len(starts), np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    depths = np.maximum.reduceat(np.append(nest_after, 0), bounds)[0::2] - nest_before[starts]
    return pos[starts], char_ends, depths


_JSON_FILLER = " \t\r\n,[]"


def _read_json(text: str, ctx: ReadContext) -> int | None:
    if len(text) < _SMALL_JSON:
        starts, ends, depths = _json_objects_small(text, ctx.left + 1)
    else:
        starts, ends, depths = (a.tolist() for a in _json_objects(text, ctx.left + 1))
    decode = json.JSONDecoder().decode
    pos = 0
    for s, e, depth in zip(starts, ends, depths):
        if not ctx.take():
            return pos
        gap = text[pos:s].strip(_JSON_FILLER)
        if gap:
            ctx.junk(gap)
            if not ctx.take():
                return s
        raw = text[s:e]
        pos = e
        if depth > MAX_JSON_DEPTH:
            if f"JSON nested deeper than {MAX_JSON_DEPTH}" not in ctx.limits:
                ctx.limits.append(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            ctx.junk(raw)
            continue
        try:
            item = decode(raw)
        except (ValueError, RecursionError):  # broken or cut-off object; integers beyond Python's digit limit
            ctx.junk(raw)
            continue
        ctx.out.append(_json_candidate(item, raw))
    gap = text[pos:].strip(_JSON_FILLER)
    if gap:
        if not ctx.take():
            return pos
        ctx.junk(gap)
    return None


def _json_candidate(item, raw: str) -> Candidate:
    if not isinstance(item, dict):
        return Candidate(raw)
    keys = [k for k in JSON_BOX_KEYS if k in item]
    label = item.get("label")
    label = label if isinstance(label, str) else None
    if len(keys) != 1:
        return Candidate(raw, label)
    kind = JSON_BOX_KEYS[keys[0]]
    values = _json_values(item[keys[0]], BOX_DIMS[kind])
    if values is None:
        return Candidate(raw, label)
    return Candidate(raw, label, kind, values, JSON_KEY_FORMS[keys[0]])


# ---- geochat --------------------------------------------------------------------------------------------------

_GEO_HINT = re.compile(r"\{\s*+<\s*+[-+]?+[0-9.]")
_GEO_N = rf"\s*+<\s*+({_NUM})\s*+>"
_GEO_TOKEN = re.compile(rf"<p>(?P<label>[^<>\n]{{0,200}}+)</p>|\{{{_GEO_N}{_GEO_N}{_GEO_N}{_GEO_N}"
                        rf"\s*+(?:\|{_GEO_N}\s*+)?\}}")
_GEO_FILLER = " \t\r\n,.;"


def _geochat_candidate(m: re.Match, raw: str, label: str | None) -> Candidate:
    numbers = [g for g in m.groups()[1:] if g is not None]
    values = _floats(numbers)
    if values is None:
        return Candidate(raw)
    x1, y1, x2, y2 = values[:4]
    angle = values[4] if len(values) == 5 else 0.0
    if angle == 0.0:
        return Candidate(raw, label, "hbb", (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), "geochat",
                         GEOCHAT_GRID)
    obb = ((x1 + x2) / 2, (y1 + y2) / 2, abs(x2 - x1), abs(y2 - y1), -angle)
    return Candidate(raw, label, "obb", obb, "geochat", GEOCHAT_GRID)


def _read_geochat(text: str, ctx: ReadContext) -> int | None:
    """GeoChat boxes; the text between them is read as plain text (other forms' lines are read, prose is
    reported), except that with ``captions`` the prose right before an unlabelled box is its caption."""
    label: str | None = None
    pos = 0
    for m in _GEO_TOKEN.finditer(text):
        gap = text[pos:m.start()]
        caption = None
        if m.group("label") is None and ctx.captions and label is None:
            caption = gap.strip(_GEO_FILLER) or None
        elif gap.strip(_GEO_FILLER):
            stop = _read_plain(gap, ctx)
            if stop is not None:
                return pos + stop
        if not ctx.take():
            return m.start()
        pos = m.end()
        if m.group("label") is not None:
            label = m.group("label").strip() or None
            continue
        name = label if label is not None else caption
        raw = m.group() if name is None else f"{name}: {m.group()}"
        ctx.out.append(_geochat_candidate(m, raw, name))
    if text[pos:].strip(_GEO_FILLER):
        stop = _read_plain(text[pos:], ctx)
        if stop is not None:
            return pos + stop
    return None


# ---- the registry and the front door --------------------------------------------------------------------------

READERS: list[Reader] = [
    Reader("none", is_none_answer, lambda block, ctx: None),
    Reader("geochat", lambda block: _GEO_HINT.search(block) is not None, _read_geochat),
    Reader("json", lambda block: block[0] in "[{", _read_json),
    Reader("plain", lambda block: True, _read_plain),
]

_FENCE = "```"
_LANG_TAG = re.compile(r"[\w+-]*+[^\S\n]*+\n|json(?=\s*+[\[{])", re.I)


def read_answer(text: str, captions: bool = False) -> Reading:
    """Every box and every unread fragment of ``text`` (see module docstring); ``captions``: a box may be preceded
    by free text instead of ``label:`` (grounding answers). Never raises; linear time."""
    if not isinstance(text, str):
        return Reading("not text", [Candidate(repr(text)[:200])])
    ctx = ReadContext(captions)
    rest = ""
    if len(text) > MAX_CHARS:
        text, rest = text[:MAX_CHARS], text[MAX_CHARS:]
        ctx.limits.append(f"answer longer than {MAX_CHARS} characters")
    forms: list[str] = []
    pos, inside, n = 0, False, len(text)
    fenced = _FENCE in text
    while pos < n:
        end = text.find(_FENCE, pos) if fenced else -1
        end = n if end < 0 else end
        block = text[pos:end]
        stop = None
        if not ctx.take():
            stop = 0
        elif inside:
            tag = _LANG_TAG.match(block)
            skip = tag.end() if tag else 0
            stop = _read_block(block[skip:], ctx, forms)
            stop = None if stop is None else skip + stop
        else:  # text outside fences (or an answer without any): read it too, prose there is reported
            stop = _read_block(block, ctx, forms)
        if stop is not None:
            remainder = text[pos + stop:].strip()
            if remainder:
                ctx.junk(remainder)
            break
        pos, inside = end + len(_FENCE), not inside
    if rest:
        ctx.junk(rest)
    return Reading(_form(forms, ctx.out), ctx.out, ctx.limits)


def _form(block_forms: list[str], candidates: list[Candidate]) -> str:
    boxes = [c.form for c in candidates if c.kind is not None and c.form]
    if boxes:
        return "+".join(dict.fromkeys(boxes))
    if not candidates:
        if not block_forms:
            return "empty"
        if set(block_forms) == {"none"}:
            return "none"
    return "unreadable"


def is_none(reading: Reading) -> bool:
    """True when the answer was an explicit ``There is none.`` and nothing else."""
    return reading.form == "none" and not reading.candidates


def _read_block(block: str, ctx: ReadContext, forms: list[str]) -> int | None:
    stripped = block.lstrip()
    if not stripped:
        return None
    for reader in READERS:
        if reader.claims(stripped):
            forms.append(reader.form)
            stop = reader.read(stripped, ctx)
            return None if stop is None else stop + len(block) - len(stripped)
    ctx.junk(stripped)
    return None
