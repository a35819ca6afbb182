"""Prompt templates and the synonym table (data files under ``rscovlm/protocol/templates``).

Layout::

    templates/<set>/detection.yaml   plain|json -> hbb|obb|quad -> [prompt, ...] with {categories}; open_ended
    templates/<set>/grounding.yaml   plain|json -> hbb|obb|quad -> [prompt, ...] with {object}
    templates/synonyms.yaml          canonical category id -> [synonym, ...]
    templates/descriptors.yaml       task descriptors of older RS VLMs and their replacements (converters)

A prompt set is chosen per mixture unit (``prompt_set``); a folder given as a path works too. Training draws a
template at random; evaluation takes the first plain one (:func:`choose`), so both read the same files and
cannot drift apart.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

FORMS = ("plain", "json")
KINDS = ("hbb", "obb", "quad")
PLACEHOLDERS = {"detection": {"categories"}, "grounding": {"object"}}


@dataclass(frozen=True)
class TaskTemplates:
    """Templates of one task: ``prompts[form][kind]`` is a non-empty tuple of format strings."""

    task: str
    prompts: dict
    open_ended: tuple[str, ...] = ()

    def get(self, form: str, kind: str) -> tuple[str, ...]:
        try:
            return self.prompts[form][kind]
        except KeyError:
            raise KeyError(f"no {self.task} prompts for form {form!r} and box kind {kind!r}") from None


@dataclass(frozen=True)
class PromptSet:
    name: str
    detection: TaskTemplates
    grounding: TaskTemplates


def _templates_root():
    return resources.files("rscovlm.protocol").joinpath("templates")


def _read_yaml(where, name: str) -> dict:
    node = where.joinpath(name)
    try:
        text = node.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file {node} not found") from None
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{node}: expected a mapping")
    return data


def _task_templates(data: dict, task: str, where: str) -> TaskTemplates:
    prompts: dict = {}
    for form in FORMS:
        prompts[form] = {}
        for kind in KINDS:
            items = (data.get(form) or {}).get(kind)
            if not isinstance(items, list) or not items or not all(isinstance(t, str) and t for t in items):
                raise ValueError(f"{where}: {form}.{kind}: expected a non-empty list of prompts")
            for t in items:
                names = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
                if names != PLACEHOLDERS[task]:
                    raise ValueError(f"{where}: {form}.{kind}: prompt {t!r} must use exactly "
                                     f"{sorted(PLACEHOLDERS[task])} as placeholders, found {sorted(names)}")
            prompts[form][kind] = tuple(items)
    open_ended = tuple(data.get("open_ended") or ())
    if task == "detection" and not open_ended:
        raise ValueError(f"{where}: open_ended: expected a non-empty list of phrases")
    return TaskTemplates(task, prompts, open_ended)


@lru_cache(maxsize=None)
def load_prompt_set(name: str = "default") -> PromptSet:
    """The prompt set ``name``: a packaged set, or (when ``name`` contains ``/``) a folder holding
    detection.yaml and grounding.yaml."""
    where = Path(name) if "/" in name else _templates_root().joinpath(name)
    if not where.is_dir():
        raise FileNotFoundError(f"unknown prompt set {name!r} (no folder {where})")
    return PromptSet(name,
                     _task_templates(_read_yaml(where, "detection.yaml"), "detection", f"{where}/detection.yaml"),
                     _task_templates(_read_yaml(where, "grounding.yaml"), "grounding", f"{where}/grounding.yaml"))


@lru_cache(maxsize=None)
def load_synonyms(path: str | None = None) -> dict[str, tuple[str, ...]]:
    """``{canonical category id: (synonym, ...)}`` from ``path`` or the packaged ``templates/synonyms.yaml``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else \
        _read_yaml(_templates_root(), "synonyms.yaml")
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and v and all(isinstance(s, str) for s in v)
            for k, v in data.items()):
        raise ValueError("synonym table must map category ids to non-empty lists of words")
    return {k: tuple(v) for k, v in data.items()}


def choose(options, rng: np.random.Generator | None):
    """``options[0]`` in deterministic (evaluation) mode, else a uniform draw."""
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def category_phrase(words: list[str]) -> str:
    """``['plane', 'ship']`` -> ``'plane, ship'``."""
    return ", ".join(words)


@lru_cache(maxsize=None)
def _word_re(words: tuple[str, ...]) -> re.Pattern:
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(r"(?<![\w-])(" + alts + r")(s|es)?(?![\w-])", re.IGNORECASE)


def replace_synonyms(text: str, table: dict[str, tuple[str, ...]], display: dict[str, str],
                     rng: np.random.Generator, prob: float) -> str:
    """Replace whole-word category words (display names and synonyms, optional plural s/es) in ``text``: each
    occurrence, with probability ``prob``, by a random other word of the same class."""
    groups = {cid: (display.get(cid, cid),) + syns for cid, syns in table.items()}
    lookup = {w.lower(): cid for cid, ws in groups.items() for w in ws}
    pattern = _word_re(tuple(lookup))

    def sub(m: re.Match) -> str:
        if rng.random() >= prob:
            return m.group(0)
        word = m.group(1)
        others = [w for w in groups[lookup[word.lower()]] if w.lower() != word.lower()]
        if not others:
            return m.group(0)
        new = others[int(rng.integers(len(others)))]
        if word[:1].isupper():
            new = new[:1].upper() + new[1:]
        return new + (m.group(2) or "")

    return pattern.sub(sub, text)
