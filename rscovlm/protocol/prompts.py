"""Legacy prompt API of the current sample builder, and the synonym table (``templates/synonyms.yaml``).

The prompt strings live in prompt sets (:mod:`rscovlm.protocol.prompt_sets`: ``get_prompt_set``, the
``reference`` set by default). This module keeps the interface the builder used before prompt sets existed:
:func:`load_prompt_set` returns, per task, form and box kind, the tuple of training templates (the first one is
the evaluation prompt) and the open-ended phrases. Its ``"default"`` is the ``rscovlm-v0`` set, the templates
that builder was written for; new code should call ``get_prompt_set`` instead, which also carries system
prompts, the reference's template draws, evaluation prompts per benchmark and the zoom strings.

    templates/synonyms.yaml          canonical category id -> [synonym, ...]
    templates/descriptors.yaml       task descriptors of older RS VLMs and their replacements (converters)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from rscovlm.protocol.prompt_sets import get_prompt_set

FORMS = ("plain", "json")
KINDS = ("hbb", "obb", "quad")
LEGACY_DEFAULT = "rscovlm-v0"


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


def _legacy(task) -> TaskTemplates:
    prompts = {form: {kind: (fp.train.proxies if fp.train.proxy_prob >= 1.0 and fp.train.proxies
                             else (fp.train.main, *fp.train.proxies))
                      for kind, fp in kinds.items()} for form, kinds in task.forms.items()}
    return TaskTemplates(task.task, prompts, task.open_end.phrases if task.open_end else ())


@lru_cache(maxsize=None)
def load_prompt_set(name: str = "default") -> PromptSet:
    """Legacy view of a prompt set (``"default"``: ``rscovlm-v0``; a folder path works too): per task the tuples of
    training templates, the first one being the evaluation prompt, and the open-ended phrases."""
    ps = get_prompt_set(LEGACY_DEFAULT if name == "default" else name)
    return PromptSet(name, _legacy(ps.task("detection")), _legacy(ps.task("grounding")))


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
