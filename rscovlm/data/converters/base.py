"""What every converter shares: the registry, the streamed run with its report, checkpoints and resuming,
LLaVA-style turns -> messages, task descriptor removal, image sizes.

A converter is a class registered with ``@register_converter("name")``. It reads its input with
:meth:`Converter.iter_input` - by default the records of one JSON array or JSON Lines file
(:func:`rscovlm.data.records.iter_records_from`, streamed, line numbers kept) - and turns each into zero or one
unified record (``convert_one``). Problems in the input raise :class:`~rscovlm.data.records.RecordError` naming
file, line and field; with ``skip_invalid`` the record is dropped and counted instead. Every output record is
validated with the unified-record validators before it is written, so ``data convert`` never writes a file that
``data validate`` rejects.

The run streams: memory holds one input record (plus a read chunk), never the file. Output goes to
``OUT.partial``; every ``checkpoint_every`` input records the run flushes it and writes ``OUT.partial.ckpt`` (the
input position after the last record handled, the output's size, the report's counts so far). A run that was
killed is resumed by the same command: the partial output is cut back to the checkpoint's size and reading goes
on from the checkpoint's input position, so no record is written twice and the result (records and report
counts) is the one an uninterrupted run writes. A checkpoint of another input or other options is not used
(the run starts over). A run that stops on malformed input removes its partial output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
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
    iter_records_from,
    validate_conversation,
    validate_grounding,
)
from rscovlm.imageio import ImageReadError, image_size

CHECKPOINT_VERSION = 1

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

    input: str = field(metadata={"help": "source file (JSON array, JSON Lines, parquet) or folder (DOTA labelTxt, "
                                         "parquet shards)"})
    output: str = field(metadata={"help": "unified output: .jsonl (conversation, grounding) or .json (COCO)"})
    images: str | None = field(default=None, metadata={
        "help": "image root of the source; image paths in the output stay relative to it. Needed by sources "
                "whose boxes are relative to the image size (GeoChat, TEOChatlas, VHM, refGeo without sizes) and "
                "by DOTA; for parquet input the folder the embedded images are written to"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "drop malformed records and count them in the report instead of stopping at the first one"})
    clean: bool = field(default=True, metadata={"help": "apply the rule-based text cleaning"})
    typo_table: str | None = field(default=None, metadata={"help": "YAML typo table replacing the packaged one"})
    task: str | None = field(default=None, metadata={"help": "task name for records whose source names none"})
    categories: str | None = field(default=None, metadata={
        "help": "DOTA only: class vocabulary of the labels (dota-v1.0, dota-v1.5, dota-v2.0; default dota-v1.0)"})
    checkpoint_every: int = field(default=2000, metadata={
        "help": "input records between checkpoints (a killed run resumes from the last one)"})
    progress: bool = field(default=False, metadata={"help": "show a progress bar on stderr"})

    def fingerprint(self) -> dict:
        """The options that decide the output (a checkpoint is used only by a run with the same ones)."""
        out = asdict(self)
        for key in ("checkpoint_every", "progress"):
            out.pop(key)
        for key in ("input", "output", "images", "typo_table"):
            if out[key] is not None:
                out[key] = os.path.abspath(out[key])
        return out


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
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at: int | None = None
    MAX_EXAMPLES: ClassVar[int] = 50

    def drop(self, reason: str, where: str | None = None) -> None:
        self.dropped[reason] += 1
        if where is not None and len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(where)

    def note(self, where: str) -> None:
        """A location worth a look that was kept (e.g. a self-intersecting DOTA quad); the first 50 are kept."""
        if len(self.notes) < self.MAX_EXAMPLES:
            self.notes.append(where)

    def counts(self) -> dict:
        """Everything a resumed run must continue from (no timings)."""
        return {"records_in": self.records_in, "records_out": self.records_out, "changes": dict(self.changes),
                "dropped": dict(self.dropped), "examples": list(self.examples), "notes": list(self.notes)}

    def load_counts(self, state: dict) -> None:
        self.records_in, self.records_out = state["records_in"], state["records_out"]
        self.changes, self.dropped = Counter(state["changes"]), Counter(state["dropped"])
        self.examples, self.notes = list(state["examples"]), list(state["notes"])

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "input": self.input, "output": self.output, "kind": self.kind,
                "records_in": self.records_in, "records_out": self.records_out,
                "changes": dict(sorted(self.changes.items())), "dropped": dict(sorted(self.dropped.items())),
                "dropped_examples": self.examples, "notes": self.notes, "seconds": round(self.seconds, 3),
                "resumed_at_record": self.resumed_at}

    def summary(self) -> str:
        lines = [f"{self.source}: {self.records_in} records read, {self.records_out} written "
                 f"({self.kind}) -> {self.output}"]
        if self.resumed_at is not None:
            lines[0] += f" (resumed after record {self.resumed_at})"
        for key, n in sorted(self.changes.items()):
            lines.append(f"  changed  {n:>8}  {key}")
        for key, n in sorted(self.dropped.items()):
            lines.append(f"  dropped  {n:>8}  {key}")
        for where in self.notes[:10]:
            lines.append(f"  note     {where}")
        if len(self.notes) > 10:
            lines.append(f"  note     ... {len(self.notes) - 10} more in the report")
        return "\n".join(lines)


def report_path(output: str | os.PathLike) -> Path:
    """The report lies next to the output: ``OUT.report.json``."""
    return Path(str(output) + ".report.json")


def partial_path(output: str | os.PathLike) -> Path:
    """Where a run writes before its output is complete: ``OUT.partial``."""
    return Path(str(output) + ".partial")


def checkpoint_path(output: str | os.PathLike) -> Path:
    """The checkpoint of an unfinished run: ``OUT.partial.ckpt``."""
    return Path(str(output) + ".partial.ckpt")


class ImageSizes:
    """``(width, height)`` of image files under a root, read from the file header once and cached
    (:func:`rscovlm.imageio.image_size`: no pixel is decoded)."""

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
        path = self.path(rel)
        try:
            size = image_size(path)
        except ImageReadError as err:
            reason = "image not found" if err.reason == "image file not found" else f"cannot read image ({err.reason})"
            raise RecordError(Problem(where.file, where.line, where.field, f"{reason}: {path}")) from None
        if len(self._cache) > 200_000:  # bounded memory on huge sources; re-reading a header is cheap
            self._cache.clear()
        self._cache[rel] = size
        return size


class IdIndex:
    """The ids written so far (8-byte digests: bounded per record), so that a reused source id gets a fresh one.

    The k-th record with source id ``x`` gets ``x#k`` (k >= 2, the first free one). The decision depends only on
    the ids already written, so a resumed run rebuilds the index from its partial output and renames exactly as
    an uninterrupted run would."""

    def __init__(self) -> None:
        self.used: set[int] = set()
        self.next_k: dict[int, int] = {}

    @staticmethod
    def _key(rid: str) -> int:
        return int.from_bytes(hashlib.blake2b(rid.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")

    def add(self, rid: str) -> None:
        self.used.add(self._key(rid))

    def unique(self, rid: str) -> str:
        key = self._key(rid)
        if key not in self.used:
            self.used.add(key)
            return rid
        k = self.next_k.get(key, 2)
        while self._key(f"{rid}#{k}") in self.used:
            k += 1
        self.next_k[key] = k + 1
        new = f"{rid}#{k}"
        self.used.add(self._key(new))
        return new


class JsonlOutput:
    """JSON Lines written to ``OUT.partial``; its size is a checkpoint's output position."""

    def __init__(self, output: str):
        self.output, self.partial = output, partial_path(output)
        self.fh = None

    def open(self, position: dict | None) -> Iterator[dict]:
        """Open for writing (cut back to ``position`` when resuming) and yield the records already written."""
        Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        if position is None:
            self.fh = open(self.partial, "wb")
            return iter(())
        with open(self.partial, "r+b") as fh:
            fh.truncate(position["bytes"])
        self.fh = open(self.partial, "ab")
        return self._written()

    def can_resume(self, position: dict) -> bool:
        """Whether the partial output still holds what the checkpoint counted."""
        return self.partial.exists() and self.partial.stat().st_size >= position["bytes"]

    def _written(self) -> Iterator[dict]:
        with open(self.partial, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def write(self, rec: dict) -> None:
        self.fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        self.fh.write(b"\n")

    def position(self) -> dict:
        self.fh.flush()
        return {"bytes": self.fh.tell()}

    def finish(self) -> None:
        self.fh.close()
        os.replace(self.partial, self.output)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.partial.exists():
            self.partial.unlink()


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
    def prepare(self) -> None:
        """Called once before reading (sniff the input's layout, set ``output_kind``); default: nothing."""

    def convert_one(self, raw: Any, line: int) -> dict | None:
        raise NotImplementedError

    def iter_input(self, start: Any = None) -> Iterator[tuple[int | None, Any, Any]]:
        """``(line, raw record, cursor)`` from ``start`` (a cursor yielded earlier: go on after that record).
        Default: the records of a JSON array or JSON Lines file; with ``skip_invalid`` a JSON Lines line that is
        not JSON comes as a :class:`RecordError`, dropped and counted like any malformed record. A cursor is
        JSON-able (it is stored in checkpoints)."""
        return iter_records_from(self.path, "yield" if self.config.skip_invalid else "raise", start)

    def progress_total(self) -> tuple[int | None, str]:
        """Size of the whole input and its unit, for the progress bar (default: the file's bytes)."""
        return os.path.getsize(self.path), "B"

    def progress_at(self, cursor: Any) -> int:
        """How far ``cursor`` is, in the unit of :meth:`progress_total` (default: its byte offset)."""
        return int(cursor[0])

    def input_fingerprint(self) -> Any:
        """What identifies the input (default: the file's size and modification time)."""
        st = os.stat(self.path)
        return [st.st_size, st.st_mtime_ns]

    def make_output(self):
        return JsonlOutput(self.config.output)

    def state_dict(self) -> dict:
        """Converter state a resumed run needs beyond the report and the written records (default: none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    def resume_record(self, rec: dict) -> None:
        """Called with each record of the partial output when a run resumes (rebuilds the id index)."""
        if isinstance(rec.get("id"), str):
            self.ids.add(rec["id"])

    def _fingerprint(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "source": self.name, "config": self.config.fingerprint(),
                "input": self.input_fingerprint()}

    def _load_checkpoint(self) -> dict | None:
        ckpt = checkpoint_path(self.config.output)
        if not ckpt.exists() or not partial_path(self.config.output).exists():
            return None
        try:
            state = json.loads(ckpt.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if state.get("fingerprint") != json.loads(json.dumps(self._fingerprint())):
            print(f"{ckpt}: left by a run with another input or other options; starting over", file=sys.stderr)
            return None
        return state

    def _save_checkpoint(self, cursor: Any, output) -> None:
        state = {"fingerprint": self._fingerprint(), "cursor": cursor, "output": output.position(),
                 "report": self.report.counts(), "cleaner": dict(self.cleaner.counts),
                 "converter": self.state_dict()}
        ckpt = checkpoint_path(self.config.output)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, ckpt)

    def _validate(self, rec: dict) -> list:
        return (validate_conversation if self.output_kind == "conversation" else validate_grounding)(rec)

    def _handle(self, raw: Any, line: int | None, output) -> None:
        """Convert, validate and write one input record, or drop and count it (``skip_invalid``)."""
        self.report.records_in += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            rec = self.convert_one(raw, line)
            if rec is None:
                return
            errs = self._validate(rec)
            if errs:
                field, msg = errs[0]
                raise self.problem(line, field, f"converted record is invalid: {msg}")
        except RecordError as err:
            if not self.config.skip_invalid:
                raise
            self.report.drop(f"malformed: {err.problem.field or 'record'}", str(err.problem))
            return
        if isinstance(rec.get("id"), str):
            new = self.ids.unique(rec["id"])
            if new != rec["id"]:
                rec["id"] = new
                self.change("duplicate_id_renamed")
        output.write(rec)
        self.report.records_out += 1

    @property
    def index(self) -> int:
        """0-based position of the record being converted among the input's records (stable ids)."""
        return self.report.records_in - 1

    def run(self) -> ConversionReport:
        start_time = time.perf_counter()
        self.prepare()
        self.report.kind = self.output_kind
        self.ids = IdIndex()
        output = self.make_output()
        state = self._load_checkpoint()
        if state is not None and not output.can_resume(state["output"]):
            print(f"{partial_path(self.config.output)} is shorter than its checkpoint says; starting over",
                  file=sys.stderr)
            state = None
        cursor = None
        if state is not None:
            cursor = state["cursor"]
            self.report.load_counts(state["report"])
            self.cleaner.counts = Counter(state["cleaner"])
            self.load_state_dict(state["converter"])
            self.report.resumed_at = self.report.records_in
            print(f"resuming {self.config.output} after input record {self.report.records_in} "
                  f"({self.report.records_out} written)", file=sys.stderr)
        bar = None
        try:
            for rec in output.open(None if state is None else state["output"]):
                self.resume_record(rec)
            if self.config.progress:
                from tqdm.auto import tqdm

                total, unit = self.progress_total()
                bar = tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=f"convert {self.name}",
                           dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
                if cursor is not None:
                    bar.update(self.progress_at(cursor))
            every = max(1, int(self.config.checkpoint_every))
            done = 0
            shown = self.progress_at(cursor) if cursor is not None else 0
            for line, raw, next_cursor in self.iter_input(cursor):
                self._handle(raw, line, output)
                cursor = next_cursor
                done += 1
                if done % every == 0:
                    self._save_checkpoint(cursor, output)
                if bar is not None:
                    at = self.progress_at(cursor)
                    bar.update(at - shown)
                    shown = at
            output.finish()
        except KeyboardInterrupt:
            # the last checkpoint stands (it lies on a record boundary); the same command resumes from it
            if bar is not None:
                bar.close()
            raise
        except BaseException:
            if bar is not None:
                bar.close()
            output.discard()
            checkpoint_path(self.config.output).unlink(missing_ok=True)
            raise
        if bar is not None:
            bar.close()
        checkpoint_path(self.config.output).unlink(missing_ok=True)
        self.report.changes.update(self.cleaner.changes())
        self.report.seconds = time.perf_counter() - start_time
        with open(report_path(self.config.output), "w", encoding="utf-8") as fh:
            json.dump(self.report.to_dict(), fh, indent=1, ensure_ascii=False)
        return self.report


def convert(source: str, config: ConvertConfig) -> ConversionReport:
    """Run the converter registered as ``source``."""
    from rscovlm.data import converters  # noqa: F401  (registers the built-in sources)

    if source not in CONVERTERS:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[source](config).run()
