"""Rule-based text cleaning of converted records (paper 3.2.2: "removing redundant punctuation and spaces, and
correcting typographical errors").

Rules, applied in this order to every text a converter writes (questions, answers, referring expressions); each
counts its substitutions under its name, so the conversion report says how much every rule changed:

``space_runs``      a run of spaces/tabs *between* two non-space characters becomes one space (leading
                    indentation is kept: general data holds code);
``repeated_punct``  a run of one of ``, ; ! ?`` becomes one (``!!`` -> ``!``), exactly two dots become one
                    (an ellipsis ``...`` is kept; ``::`` and the ``..`` of a path ``../x`` are code, not typos);
``space_before_punct``  spaces before ``, . ; : ! ?`` that follow a word or a box reference are removed
                    (``car .`` -> ``car.``);
``typo:<word>``     whole-word fixes from the documented typo table ``rscovlm/data/tables/typos.yaml`` (not
                    inside paths or file names: ``../teh.txt`` stays);
``strip``           leading/trailing whitespace of the whole text.

Text inside Markdown code fences (```) and inline code spans (`...`) is never touched. Box references ``<box:N>``
contain none of the characters the rules look at, so they pass unchanged.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from importlib import resources

import yaml

from rscovlm.data.textio import read_text

_SPACE_RUNS = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_SPACE_BEFORE_PUNCT = re.compile(r"(?<=[\w>])[ \t]+([,.;:!?])(?=\s|$)")
_REPEATED_PUNCT = re.compile(r"([,;!?])\1+")
_TWO_DOTS = re.compile(r"(?<![./\\])\.\.(?![./\\])")
_FENCE = "```"
_INLINE_CODE = re.compile(r"(`[^`\n]+`)")


@lru_cache(maxsize=None)
def load_typo_table(path: str | None = None) -> dict[str, str]:
    """:func:`read_typo_table`, read once per path."""
    return read_typo_table(path)


def read_typo_table(path: str | None = None) -> dict[str, str]:
    """``{wrong (lower case): right}`` from ``path`` (default: the packaged table). A file that is not UTF-8
    text or not YAML, or a table that is not words -> replacements, raises ``ValueError`` naming the file (and
    the line where there is one)."""
    if path is None:
        text = resources.files("rscovlm.data").joinpath("tables/typos.yaml").read_text(encoding="utf-8")
    else:
        text = read_text(path)
    try:
        table = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path or 'typos.yaml'}:{mark.line + 1}" if mark is not None else f"{path or 'typos.yaml'}"
        raise ValueError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ValueError(f"typo table {path or 'typos.yaml'} must map words to replacements")
    bad = [k for k in table if not re.fullmatch(r"[\w-]+", k)]
    if bad:
        raise ValueError(f"typo table {path or 'typos.yaml'}: keys must be single words, got {bad}")
    return {k.lower(): v for k, v in table.items()}


def _match_case(src: str, repl: str) -> str:
    if src.isupper() and len(src) > 1:
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


class TextCleaner:
    """Applies the rules above and keeps ``counts`` (a Counter of rule name -> substitutions)."""

    def __init__(self, typo_table: dict[str, str] | None = None):
        self.typos = load_typo_table() if typo_table is None else {k.lower(): v for k, v in typo_table.items()}
        self.counts: Counter[str] = Counter()
        words = "|".join(sorted(map(re.escape, self.typos), key=len, reverse=True))
        # whole words of prose: not part of a path or file name (``../teh.txt``)
        self._typo_re = (re.compile(r"(?<![\w\-/\\.])(" + words + r")(?![\w\-/\\]|\.\w)", re.IGNORECASE)
                         if self.typos else None)

    def _typo(self, m: re.Match) -> str:
        word = m.group(1)
        self.counts[f"typo:{word.lower()}"] += 1
        return _match_case(word, self.typos[word.lower()])

    def _clean_segment(self, text: str) -> str:
        text, n = _SPACE_RUNS.subn(" ", text)
        self.counts["space_runs"] += n
        text, n = _REPEATED_PUNCT.subn(r"\1", text)
        text, n2 = _TWO_DOTS.subn(".", text)
        self.counts["repeated_punct"] += n + n2
        text, n = _SPACE_BEFORE_PUNCT.subn(r"\1", text)
        self.counts["space_before_punct"] += n
        if self._typo_re is not None:
            text = self._typo_re.sub(self._typo, text)
        return text

    def _clean_prose(self, text: str) -> str:
        if "`" not in text:
            return self._clean_segment(text)
        parts = _INLINE_CODE.split(text)  # odd items are the code spans
        parts[0::2] = [self._clean_segment(p) for p in parts[0::2]]
        return "".join(parts)

    def __call__(self, text: str) -> str:
        if _FENCE in text:
            parts = text.split(_FENCE)
            parts[0::2] = [self._clean_prose(p) for p in parts[0::2]]
            out = _FENCE.join(parts)
        else:
            out = self._clean_prose(text)
        stripped = out.strip()
        if stripped != out:
            self.counts["strip"] += 1
        return stripped

    def changes(self) -> dict[str, int]:
        """Non-zero counts, ``clean:`` prefixed, for the conversion report."""
        return {f"clean:{k}": v for k, v in sorted(self.counts.items()) if v}
