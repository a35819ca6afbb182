"""What a benchmark is: items read from the released layout, the evaluation prompt, pixel settings and scorers.

A runner (``rscovlm eval run``) gets a :class:`Benchmark` by name (:func:`rscovlm.eval.benchmarks.get_benchmark`),
reads its :meth:`Benchmark.items` from a data root, sends :meth:`Benchmark.messages` of each item to a backend and
appends one answer line per item to ``answers.jsonl`` (:data:`ANSWER_FIELDS`); scoring reads those lines later
(:meth:`Benchmark.score`), so a rule can change without running the model again.

Answer line (one JSON object per line)::

    {"id": "<item id>", "text": "<the model's answer, as decoded>",
     "resize": {"original": [W, H], "model": [w, h]},   # boxes tasks: the frame the model saw (ResizePlan.as_dict)
     "finish_reason": "stop" | "length" | null,          # optional
     "turns": [...]}                                     # optional: zoom chain, earlier assistant turns

Messages (:meth:`Benchmark.messages`) are the reference's evaluation conversation: an optional system message,
then one user message with the image part ``{"type": "image", "image": <absolute path>, ...}`` (plus the
benchmark's ``min_pixels``/``max_pixels`` when it fixes them, and ``window: [x1, y1, x2, y2]`` for a DOTA patch:
crop that window of the image, padding outside it) followed by the text part.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANSWER_FIELDS = ("id", "text")  # required; "resize", "finish_reason", "turns" optional
PERCENT = 100.0


class BenchmarkDataError(ValueError):
    """Missing or malformed benchmark data; the message names the file (and line/field)."""


class AnswersError(ValueError):
    """A bad answers file or a mismatch between answers and items; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    """One question of a benchmark. ``id`` is unique within the benchmark (answers are keyed by it); ``image`` an
    absolute path; ``fields`` the placeholders of the prompt; ``target`` the ground truth (JSON types); ``meta``
    what scoring or reports need (category, source, question type, window, ...)."""

    id: str
    image: str
    fields: dict
    target: Any
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "image": self.image, "fields": self.fields, "target": self.target, "meta": self.meta}


class Benchmark:
    """Base class; subclasses set the class attributes and implement :meth:`load` and :meth:`score`."""

    name: str = ""
    title: str = ""
    task: str = "vqa"  # the new-token budget of rscovlm.infer.backends.TASK_MAX_NEW_TOKENS
    prompt: str = ""  # benchmark name (or alias) in the prompt set's benchmarks.yaml
    form: str | None = None  # prompt form; None = the entry's default
    layout: str = ""  # files under the data root, as released
    normalization: str = ""
    rules: dict[str, str] = {}
    default_rule: str = "official"
    paper: dict[str, str] = {}  # headline metric -> paper table key (results.PAPER)
    pixels: dict = {}  # {"min_pixels", "max_pixels"} fixed per benchmark; empty: the checkpoint's processor
    pixels_note: str = "the checkpoint's processor min/max pixels (the reference passes none per benchmark)"
    answer_format: str | None = None  # released answer-file format read by score-answers, if any
    notes: str = ""

    # ---- items -------------------------------------------------------------------------------------------------
    def load(self, root: Path) -> list[Item]:
        raise NotImplementedError

    def items(self, root: str | os.PathLike, limit: int | None = None) -> list[Item]:
        """The items read from the released layout under ``root`` (:attr:`layout`), in file order; ids must be
        unique."""
        root = Path(root)
        if not root.is_dir():
            raise BenchmarkDataError(f"{self.name}: data root {root} is not a folder; expected:\n{self.layout}")
        items = self.load(root)
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                raise BenchmarkDataError(f"{self.name}: duplicate item id {it.id!r} under {root}")
            seen.add(it.id)
        return items[:limit] if limit is not None else items

    # ---- prompts -----------------------------------------------------------------------------------------------
    def eval_prompt(self, item: Item, prompt_set: str | None = None):
        """The :class:`rscovlm.protocol.prompt_sets.EvalPrompt` of ``item`` in ``prompt_set`` (default
        ``reference``)."""
        from rscovlm.protocol.prompt_sets import get_prompt_set

        ps = get_prompt_set(prompt_set)
        return ps.eval_prompt(self.prompt, form=self.form, category=item.meta.get("category"), **item.fields)

    def image_part(self, item: Item) -> dict:
        part = {"type": "image", "image": item.image}
        if "window" in item.meta:
            part["window"] = list(item.meta["window"])
        return part

    def messages(self, item: Item, prompt_set: str | None = None) -> list[dict]:
        """The conversation sent for ``item`` (module docstring)."""
        prompt = self.eval_prompt(item, prompt_set)
        msgs = prompt.messages(self.image_part(item))
        if self.pixels:
            for part in msgs[-1]["content"]:
                if part.get("type") == "image":
                    part.update(self.pixels)
        return msgs

    # ---- scoring -----------------------------------------------------------------------------------------------
    def check_rule(self, rule: str | None) -> str:
        rule = rule or self.default_rule
        if rule not in self.rules:
            raise ValueError(f"{self.name}: unknown rule {rule!r}; this benchmark has {sorted(self.rules)}")
        return rule

    def score(self, items: list[Item], answers: dict[str, dict], rule: str | None = None, **options) -> dict:
        """``{"metrics": {headline metric: value in percent}, "details": {...}}`` of ``answers`` (id -> answer
        line) for ``items`` under ``rule``."""
        raise NotImplementedError

    def score_answer_file(self, path: str | os.PathLike, rule: str | None = None, **options) -> dict:
        """Score an answer file in the benchmark's released format (:attr:`answer_format`)."""
        raise NotImplementedError(f"{self.name}: no released answer-file format is supported")

    def prompt_template(self, prompt_set: str | None = None) -> dict | None:
        """``{"system", "user"}`` templates of the benchmark's prompt (placeholders unfilled), or None when the
        prompt set has no entry for it."""
        from rscovlm.protocol.prompt_sets import get_prompt_set

        ps = get_prompt_set(prompt_set)
        try:
            entry, alias_form, _ = ps.benchmark(self.prompt)
        except KeyError:
            return None
        form = self.form or alias_form or entry.default_form or next(iter(entry.forms or {"plain": None}))
        if entry.zoom is not None and form == entry.zoom and ps.zoom is not None:
            return {"system": ps.zoom.system, "user": ps.zoom.user.replace("{question}", entry.forms["plain"][1])}
        if entry.task is not None:
            fp = ps.task(entry.task).get(form, entry.default_kind)
            return {"system": fp.system, "user": fp.eval}
        system, user = entry.forms[form]
        return {"system": system, "user": user}

    def describe(self) -> dict:
        """What ``rscovlm eval list`` shows."""
        return {"name": self.name, "title": self.title, "task": self.task, "layout": self.layout,
                "prompt": self.prompt, "form": self.form, "prompt_template": self.prompt_template(),
                "pixels": self.pixels or self.pixels_note,
                "normalization": self.normalization, "rules": dict(self.rules), "default_rule": self.default_rule,
                "answer_format": self.answer_format, "notes": self.notes}


# ---- helpers -----------------------------------------------------------------------------------------------------

def need_file(path: Path, bench: Benchmark) -> Path:
    if not path.is_file():
        raise BenchmarkDataError(f"{bench.name}: missing {path}; expected under the data root:\n{bench.layout}")
    return path


def read_records(path: Path, bench: Benchmark) -> list[tuple[int, Any]]:
    """``(line, record)`` of a .json array or .jsonl file (errors name file:line)."""
    from rscovlm.data.records import RecordError, iter_records

    need_file(path, bench)
    try:
        return list(iter_records(path))
    except RecordError as err:
        raise BenchmarkDataError(f"{bench.name}: {err}") from None


def read_json(path: Path, bench: Benchmark) -> Any:
    need_file(path, bench)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise BenchmarkDataError(f"{bench.name}: {path}: not valid JSON: {err}") from None


def field_of(rec: Any, key: str, path: Path, line: int, bench: Benchmark, types=(str,)):
    """``rec[key]``, checked: a missing field or a wrong type is an error naming file:line and the field."""
    if not isinstance(rec, dict):
        raise BenchmarkDataError(f"{bench.name}: {path}:{line}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise BenchmarkDataError(f"{bench.name}: {path}:{line}: missing field {key!r}")
    value = rec[key]
    if types and not isinstance(value, types):
        names = "/".join(t.__name__ for t in types)
        raise BenchmarkDataError(f"{bench.name}: {path}:{line}: field {key!r} must be {names}, got {value!r}")
    return value


def need_image(path: Path, where: str, bench: Benchmark) -> str:
    if not path.is_file():
        raise BenchmarkDataError(f"{bench.name}: {where}: image {path} does not exist")
    return str(path.resolve())


def pct(x: float | None) -> float | None:
    return None if x is None else PERCENT * x


def resize_of(answer: dict, where: str):
    """The :class:`rscovlm.resolution.ResizePlan` stored in an answer line."""
    from rscovlm.resolution import ResizePlan

    try:
        return ResizePlan.from_dict(answer["resize"])
    except (KeyError, TypeError, ValueError) as err:
        raise AnswersError(f"{where}: answer {answer.get('id')!r} needs \"resize\": {{\"original\": [W, H], "
                           f"\"model\": [w, h]}} ({type(err).__name__}: {err})") from None


def answered(items: list[Item], answers: dict[str, dict], partial: bool = False) -> tuple[list[Item], int]:
    """The items to score and how many have no answer. A missing answer is an error unless ``partial``."""
    missing = [it.id for it in items if it.id not in answers]
    if missing and not partial:
        raise AnswersError(f"{len(missing)} of {len(items)} items have no answer (first: {missing[:5]}); "
                           "finish the run, or score what is there with --partial")
    return [it for it in items if it.id in answers], len(missing)
