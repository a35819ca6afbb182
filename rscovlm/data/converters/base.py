"""What every converter shares: the registry, the run loop with its report, LLaVA-style turns -> messages, task
descriptor removal, image sizes.

A converter is a class registered with ``@register_converter("name")``. It reads records with
:func:`rscovlm.data.records.iter_records` (line numbers kept) and turns each into zero or one unified record
(``convert_one``), or - for detection - builds one COCO dict (``convert_all``). Problems in the input raise
:class:`~rscovlm.data.records.RecordError` naming file, line and field; with ``skip_invalid`` the record is
dropped and counted instead. Every output record is validated with the unified-record validators before it is
written, so ``data convert`` never writes a file that ``data validate`` rejects.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import yaml

from rscovlm.data.cleaning import TextCleaner, read_typo_table
from rscovlm.data.records import (
    Problem,
    RecordError,
    RecordKind,
    iter_records,
    validate_conversation,
    validate_grounding,
    write_coco,
    write_jsonl,
)

CONVERTERS: dict[str, type["Converter"]] = {}


def register_converter(name: str) -> Callable[[type["Converter"]], type["Converter"]]:
    """Class decorator: make a converter available as ``data convert --source name``."""

    def deco(cls: type["Converter"]) -> type["Converter"]:
        if name in CONVERTERS:
            raise ValueError(f"converter {name!r} registered twice")
        cls.name = name
        CONVERTERS[name] = cls
        return cls

    return deco


@dataclass
class ConvertConfig:
    """Options of one conversion run."""

    input: str = field(metadata={"help": "source file (JSON array or JSON Lines) or folder (DOTA labelTxt)"})
    output: str = field(metadata={"help": "unified output: .jsonl (conversation, grounding) or .json (COCO)"})
    images: str | None = field(default=None, metadata={
        "help": "image root of the source; image paths in the output stay relative to it. Needed by sources "
                "whose boxes are relative to the image size (GeoChat, TEOChatlas) and by DOTA"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "drop malformed records and count them in the report instead of stopping at the first one"})
    clean: bool = field(default=True, metadata={"help": "apply the rule-based text cleaning"})
    typo_table: str | None = field(default=None, metadata={"help": "YAML typo table replacing the packaged one"})
    task: str | None = field(default=None, metadata={"help": "task name for records whose source names none"})


@dataclass
class ConversionReport:
    """Counts of one run: records read and written, every change by rule, every drop by reason."""

    source: str
    input: str
    output: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    changes: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    MAX_EXAMPLES: ClassVar[int] = 50

    def drop(self, reason: str, where: str | None = None) -> None:
        self.dropped[reason] += 1
        if where is not None and len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(where)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "input": self.input, "output": self.output, "kind": self.kind,
                "records_in": self.records_in, "records_out": self.records_out,
                "changes": dict(sorted(self.changes.items())), "dropped": dict(sorted(self.dropped.items())),
                "dropped_examples": self.examples, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        lines = [f"{self.source}: {self.records_in} records read, {self.records_out} written "
                 f"({self.kind}) -> {self.output}"]
        for key, n in sorted(self.changes.items()):
            lines.append(f"  changed  {n:>8}  {key}")
        for key, n in sorted(self.dropped.items()):
            lines.append(f"  dropped  {n:>8}  {key}")
        return "\n".join(lines)


def report_path(output: str | os.PathLike) -> Path:
    """The report lies next to the output: ``OUT.report.json``."""
    return Path(str(output) + ".report.json")


class ImageSizes:
    """``(width, height)`` of image files under a root, read from the file header once and cached."""

    def __init__(self, root: str | None):
        self.root = root
        self._cache: dict[str, tuple[int, int]] = {}

    def path(self, rel: str) -> str:
        return rel if os.path.isabs(rel) or self.root is None else os.path.join(self.root, rel)

    def __call__(self, rel: str, where: Problem) -> tuple[int, int]:
        size = self._cache.get(rel)
        if size is not None:
            return size
        if self.root is None and not os.path.isabs(rel):
            raise RecordError(Problem(where.file, where.line, where.field,
                                      "this source's boxes need the image size: pass --images DIR"))
        from rscovlm.imageio import ImageReadError, image_size

        path = self.path(rel)
        if not os.path.isfile(path):
            raise RecordError(Problem(where.file, where.line, where.field, f"image not found: {path}"))
        try:  # the one image reader: a huge scene's header is read, no decompression-bomb refusal
            size = image_size(path)
        except ImageReadError as err:
            raise RecordError(Problem(where.file, where.line, where.field, f"cannot read image {path}: {err.reason}"))
        self._cache[rel] = size
        return size


@lru_cache(maxsize=1)
def descriptor_table() -> dict[str, dict]:
    """The task-descriptor table ``rscovlm/protocol/templates/descriptors.yaml`` (keys lower-cased)."""
    text = resources.files("rscovlm.protocol").joinpath("templates/descriptors.yaml").read_text(encoding="utf-8")
    return {k.lower(): v for k, v in yaml.safe_load(text).items()}


@lru_cache(maxsize=1)
def _descriptor_re() -> re.Pattern:
    keys = sorted(descriptor_table(), key=len, reverse=True)
    return re.compile(r"^\s*(" + "|".join(re.escape(k) for k in keys) + r")\s*", re.IGNORECASE)


def split_descriptor(text: str) -> tuple[str | None, str]:
    """``("[refer]", rest)`` when ``text`` starts with a known task descriptor, else ``(None, text)``."""
    m = _descriptor_re().match(text)
    if not m:
        return None, text
    return m.group(1).lower(), text[m.end():]


_LEADING_MEDIA = re.compile(r"^(?:\s*<(?:image|video)>\s*)*")


def take_descriptor(text: str) -> tuple[str | None, str]:
    """Remove a task descriptor that starts the turn (after any leading ``<image>``/``<video>`` tokens)."""
    lead = _LEADING_MEDIA.match(text).group(0)
    tag, rest = split_descriptor(text[len(lead):])
    return (tag, lead + rest) if tag else (None, text)


def descriptor_suffix(tag: str, box_kind: str | None) -> str:
    return descriptor_table()[tag]["suffix"].get(box_kind or "none", "")


def join_sentence(text: str, suffix: str) -> str:
    """Append a sentence, adding the full stop the request may lack."""
    text = text.strip()
    if not suffix:
        return text
    if text and text[-1] not in ".?!:":
        text += "."
    return f"{text} {suffix}".strip()


ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_TOKEN = re.compile(r"\s*<image>\s*")


class Converter:
    """Base class; subclasses set ``output_kind`` and implement ``convert_one`` (or ``convert_all``)."""

    name: ClassVar[str] = ""
    output_kind: ClassVar[RecordKind] = "conversation"
    #: one-line description for ``data convert --help``
    summary: ClassVar[str] = ""

    def __init__(self, config: ConvertConfig):
        self.config = config
        self.report = ConversionReport(self.name, config.input, config.output, self.output_kind)
        self.cleaner = TextCleaner(None if config.typo_table is None else read_typo_table(config.typo_table))
        self.image_sizes = ImageSizes(config.images)
        self.path = str(config.input)

    # ---- helpers for subclasses --------------------------------------------------------------------------
    def problem(self, line: int | None, field: str, message: str) -> RecordError:
        return RecordError(Problem(self.path, line, field, message))

    def change(self, key: str, n: int = 1) -> None:
        if n:
            self.report.changes[f"{self.name}:{key}"] += n

    def clean(self, text: str) -> str:
        return self.cleaner(text) if self.config.clean else text.strip()

    def llava_turns(self, raw: dict, line: int, key: str = "conversations") -> list[tuple[str, str, str]]:
        """``[(role, text, field), ...]`` of LLaVA ``{"from", "value"}`` turns (``from`` may be absent: turns then
        alternate user/assistant, as in VHM's eval files)."""
        turns = raw.get(key)
        if not isinstance(turns, list) or not turns:
            raise self.problem(line, key, "required non-empty list of turns")
        out = []
        for i, turn in enumerate(turns):
            f = f"{key}[{i}]"
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise self.problem(line, f"{f}.value", "each turn needs a string 'value'")
            if "from" in turn:
                role = ROLE_MAP.get(str(turn["from"]).lower())
                if role is None:
                    raise self.problem(line, f"{f}.from", f"unknown speaker {turn['from']!r}; expected one of "
                                                          f"{sorted(ROLE_MAP)}")
            else:
                role = "user" if i % 2 == 0 else "assistant"
            out.append((role, turn["value"], f"{f}.value"))
        return out

    def messages_from_turns(self, turns: list[tuple[str, str, str]], images: list[str], line: int,
                            token: re.Pattern = IMAGE_TOKEN) -> list[dict]:
        """OpenAI-style messages: image parts where the ``<image>`` tokens stood (all at the start of the first
        user turn when the text has none); text parts as given (cleaning is up to the caller)."""
        n_tokens = sum(len(token.findall(t)) for _, t, _ in turns)
        if n_tokens and n_tokens != len(images):
            raise self.problem(line, turns[0][2], f"{n_tokens} image token(s) for {len(images)} image(s)")
        messages: list[dict] = []
        placed = 0
        for role, text, _ in turns:
            pieces = token.split(text)
            parts: list[dict] = []
            if role == "user" and not n_tokens and placed == 0 and images:
                parts.extend({"type": "image", "image": p} for p in images)
                placed = len(images)
            for k, piece in enumerate(pieces):
                if k > 0:
                    parts.append({"type": "image", "image": images[placed]})
                    placed += 1
                if piece.strip():
                    parts.append({"type": "text", "text": piece})
            messages.append({"role": role, "content": parts})
        return messages

    # ---- the run ----------------------------------------------------------------------------------------
    def convert_one(self, raw: Any, line: int) -> dict | None:
        raise NotImplementedError

    def iter_input(self) -> Iterator[tuple[int, Any]]:
        """``(line, raw record)``; with ``skip_invalid`` a JSON Lines line that is not JSON comes as
        ``(line, RecordError)``, to be dropped and counted like any malformed record."""
        return iter_records(self.path, errors="yield" if self.config.skip_invalid else "raise")

    def records(self) -> Iterator[dict]:
        """Unified records; malformed input raises or (``skip_invalid``) is dropped and counted."""
        validate = validate_conversation if self.output_kind == "conversation" else validate_grounding
        seen: dict[str, int] = {}  # output id -> how many records used it
        for line, raw in self.iter_input():
            self.report.records_in += 1
            try:
                if isinstance(raw, RecordError):
                    raise raw
                rec = self.convert_one(raw, line)
                if rec is None:
                    continue
                errs = validate(rec)
                if errs:
                    field, msg = errs[0]
                    raise self.problem(line, field, f"converted record is invalid: {msg}")
            except RecordError as err:
                if not self.config.skip_invalid:
                    raise
                self.report.drop(f"malformed: {err.problem.field or 'record'}", str(err.problem))
                continue
            if "id" in rec:
                self._unique_id(rec, seen)
            self.report.records_out += 1
            yield rec

    def _unique_id(self, rec: dict, seen: dict[str, int]) -> None:
        """Sources reuse ids (GeoChat: several conversations per image under the image's id); the unified file
        needs unique ones, so the k-th repeat becomes ``id#k`` (counted)."""
        rid = rec["id"]
        if rid not in seen:
            seen[rid] = 1
            return
        k = seen[rid]
        while f"{rid}#{k}" in seen or k == 1:
            k += 1
        seen[rid] = k
        rec["id"] = f"{rid}#{k}"
        seen[rec["id"]] = 1
        self.change("duplicate_id_renamed")

    def run(self) -> ConversionReport:
        start = time.perf_counter()
        # write next to the output and rename at the end: a failed run leaves no half-written file behind
        tmp = f"{self.config.output}.partial"
        try:
            if self.output_kind == "detection":
                write_coco(tmp, self.convert_all())
            else:
                write_jsonl(tmp, self.records())
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        os.replace(tmp, self.config.output)
        self.report.changes.update(self.cleaner.changes())
        self.report.seconds = time.perf_counter() - start
        with open(report_path(self.config.output), "w", encoding="utf-8") as fh:
            json.dump(self.report.to_dict(), fh, indent=1, ensure_ascii=False)
        return self.report

    def convert_all(self) -> dict:
        raise NotImplementedError


def convert(source: str, config: ConvertConfig) -> ConversionReport:
    """Run the converter registered as ``source``."""
    from rscovlm.data import converters  # noqa: F401  (registers the built-in sources)

    if source not in CONVERTERS:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[source](config).run()
