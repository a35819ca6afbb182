"""UTF-8 text files read so that a byte that is not UTF-8 is reported with its file, line and byte offset.

Every text input of the project (labelTxt, Task1 files, JSON / JSON Lines records, YAML tables) is UTF-8.
Python's own ``UnicodeDecodeError`` names neither the file nor the line, and stops the whole read; the readers
here decode so that the caller can name the bad line in its own format error - or, where the user chose to
skip invalid lines, skip that line, count it, and go on with the next one.

* :func:`read_lines` - a whole file as ``str.splitlines()`` lines; a line with undecodable bytes comes back as
  a :class:`BadText` in its place (line numbers stay right).
* :func:`iter_lines` - the same, streamed (for files too large to hold), with the line ends of ``open(path,
  encoding="utf-8")`` (universal newlines: ``\\n``, ``\\r\\n`` and ``\\r`` end a line);
  :func:`iter_lines_from` also gives the byte offset after each line and starts at such an offset (resuming).
* :class:`DecodedText` - a whole file as one string (for JSON documents), with :meth:`DecodedText.bad_in` to
  find undecodable bytes inside a span.

Undecodable bytes are kept as lone surrogates (Python's ``surrogateescape``) while locating them; they never
reach a caller as text.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BOM = b"\xef\xbb\xbf"
_BAD = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of an undecodable byte


@dataclass(frozen=True)
class BadText:
    """A line holding bytes that are not UTF-8: its 1-based ``line_no``, the ``offset`` of its first bad byte
    from the start of the file, that ``byte``, and the line with bad bytes shown as U+FFFD (for messages)."""

    line_no: int
    offset: int
    byte: int
    text: str

    @property
    def reason(self) -> str:
        return f"not UTF-8 text: byte 0x{self.byte:02x} at byte offset {self.offset} cannot be decoded"


class TextDecodeError(ValueError):
    """A file that is not UTF-8 text where the reader cannot skip (``path``, ``bad``: where)."""

    def __init__(self, path: str | os.PathLike, bad: BadText):
        self.path, self.bad = str(path), bad
        super().__init__(f"{self.path}:{bad.line_no}: {bad.reason}")


def _shown(raw: str) -> str:
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _bad_line(line_no: int, line: str, line_offset: int) -> BadText | None:
    m = _BAD.search(line)
    if m is None:
        return None
    offset = line_offset + len(line[:m.start()].encode("utf-8", "surrogateescape"))
    return BadText(line_no, offset, ord(m.group()) - 0xDC00, _shown(line.rstrip("\r\n")))


def read_lines(path: str | os.PathLike, *, bom: bool = True) -> list[str | BadText]:
    """The lines of a UTF-8 file as ``str.splitlines()`` gives them (line ends removed; a byte-order mark is
    dropped when ``bom``), with a :class:`BadText` in place of every line that holds undecodable bytes."""
    data = Path(path).read_bytes()
    skip = len(BOM) if bom and data.startswith(BOM) else 0
    try:
        return data[skip:].decode("utf-8").splitlines()
    except UnicodeDecodeError:
        pass
    out: list[str | BadText] = []
    offset = skip
    for line_no, line in enumerate(data[skip:].decode("utf-8", "surrogateescape").splitlines(keepends=True), 1):
        bad = _bad_line(line_no, line, offset)
        out.append(bad if bad is not None else line.splitlines()[0])
        offset += len(line.encode("utf-8", "surrogateescape"))
    return out


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | BadText]]:
    """``(line_no, line)`` of a UTF-8 file, streamed, lines as ``open(path, encoding="utf-8")`` yields them
    (universal newlines: each line ends with ``\\n`` except perhaps the last; no byte-order-mark handling); a
    line with undecodable bytes comes as a :class:`BadText` and the lines after it are still read."""
    for line_no, line, _ in iter_lines_from(path):
        yield line_no, line


def iter_lines_from(path: str | os.PathLike, offset: int = 0,
                    line_no: int = 1) -> Iterator[tuple[int, str | BadText, int]]:
    """:func:`iter_lines` starting at byte ``offset`` (the start of line ``line_no``), each line with the byte
    offset of the line after it: ``(line_no, line, next_offset)`` - a position to resume reading from."""
    with open(path, "rb") as raw:
        raw.seek(offset)
        # newline="": lines split as universal newlines do, but their ends left as written (byte offsets exact)
        fh = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        for line_no, line in enumerate(fh, line_no):
            if line.isascii():
                size = len(line)
            else:
                try:
                    size = len(line.encode("utf-8"))  # fails exactly on the escaped (undecodable) bytes
                except UnicodeEncodeError as err:
                    bad = BadText(line_no, offset + len(line[:err.start].encode("utf-8", "surrogateescape")),
                                  ord(line[err.start]) - 0xDC00, _shown(line.rstrip("\r\n")))
                    offset += len(line.encode("utf-8", "surrogateescape"))
                    yield line_no, bad, offset
                    continue
            offset += size
            if line.endswith("\r\n"):
                line = line[:-2] + "\n"
            elif line.endswith("\r"):
                line = line[:-1] + "\n"
            yield line_no, line, offset


class DecodedText:
    """A whole UTF-8 file as one string ``text`` (for JSON documents). Undecodable bytes are in ``text`` as lone
    surrogates; :meth:`bad_in` finds them in a span and :meth:`first_bad` in the whole text."""

    def __init__(self, path: str | os.PathLike, *, bom: bool = False):
        self.path = str(path)
        data = Path(path).read_bytes()
        self._skip = len(BOM) if bom and data.startswith(BOM) else 0
        try:
            self.text = data[self._skip:].decode("utf-8")
            self.clean = True
        except UnicodeDecodeError:
            self.text = data[self._skip:].decode("utf-8", "surrogateescape")
            self.clean = False
        self._cursor = (0, self._skip, 1)  # (char index, byte offset, line): positions come mostly in file order

    def bad_in(self, start: int = 0, end: int | None = None) -> BadText | None:
        """The first undecodable byte in ``text[start:end]``, or ``None``."""
        if self.clean:
            return None
        m = _BAD.search(self.text, start, len(self.text) if end is None else end)
        if m is None:
            return None
        pos = m.start()
        char, byte, line_no = self._cursor if self._cursor[0] <= pos else (0, self._skip, 1)
        byte += len(self.text[char:pos].encode("utf-8", "surrogateescape"))
        line_no += self.text.count("\n", char, pos)
        self._cursor = (pos, byte, line_no)
        line_start = self.text.rfind("\n", 0, pos) + 1
        line_end = self.text.find("\n", pos)
        line = self.text[line_start:line_end if line_end >= 0 else len(self.text)]
        return BadText(line_no, byte, ord(m.group()) - 0xDC00, _shown(line.rstrip("\r")))

    def first_bad(self) -> BadText | None:
        return self.bad_in(0)

    def check(self) -> str:
        """``text``, or :class:`TextDecodeError` for the first undecodable byte."""
        bad = self.first_bad()
        if bad is not None:
            raise TextDecodeError(self.path, bad)
        return self.text


def read_text(path: str | os.PathLike, *, bom: bool = False) -> str:
    """A whole UTF-8 file as a string; :class:`TextDecodeError` (file, line, byte offset) when it is not."""
    return DecodedText(path, bom=bom).check()
