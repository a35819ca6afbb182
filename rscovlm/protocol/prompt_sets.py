"""Prompt sets: every prompt string of training and evaluation, as data files under ``templates/<set>/``.

A prompt set is a folder (packaged: ``reference``, the default, and ``rscovlm-v0``; or any folder given as a path)::

    detection.yaml      dense detection (placeholder {categories})      \\
    grounding.yaml      referring grounding (placeholder {object})       } task files, each optional
    segmentation.yaml   referring segmentation (placeholder {object})   /
    zoom.yaml           the zoom-in tool call (paper 3.4)                  optional
    benchmarks.yaml     the evaluation prompt of each benchmark            optional
    synonyms.yaml       category synonyms per dataset                      optional

A task file holds, per output form (``plain``, ``json``) and box kind (``hbb``, ``obb``, ``quad``): the system
prompt (or none), the training templates (``main``, ``proxies`` drawn with ``proxy_prob``, ``replace`` rules each
applied with its probability) and the evaluation prompt; plus the category-string rule, the probability of the
plain form and the open-ended request. The files of the ``reference`` set document where each string comes from
in VisionXLab/RSCoVLM (commit c507282) and which of its bugs are kept (the checkpoints depend on them).

Placeholders are ``{name}`` with ``name`` an identifier; any other brace is literal text (the zoom system prompt
holds JSON). Rendering substitutes each placeholder once, so values are inserted verbatim. Files are validated
on loading: a missing key, a wrong type, a probability outside [0, 1] or a template whose placeholders are not
exactly the declared ones is a :class:`PromptSetError` naming the file and the key.

Random draws take any ``rng`` with a ``random()`` method returning floats in [0, 1) (``numpy.random.Generator``,
``random.Random``); "with probability p" means ``rng.random() < p``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

DEFAULT_PROMPT_SET = "reference"
TASK_FILES = ("detection", "grounding", "segmentation")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PromptSetError(ValueError):
    """A prompt set file that cannot be used; the message names the file and the key."""


def placeholders(template: str) -> set[str]:
    """The placeholder names of ``template`` (``{name}`` with ``name`` an identifier)."""
    return set(_PLACEHOLDER.findall(template))


def render(template: str, **values) -> str:
    """``template`` with each ``{name}`` replaced by ``str(values[name])`` in one pass (inserted text is never
    expanded again; other braces stay). A placeholder without a value is a KeyError naming it."""
    def sub(m: re.Match) -> str:
        try:
            return str(values[m.group(1)])
        except KeyError:
            raise KeyError(f"no value for placeholder {{{m.group(1)}}} of {template!r}") from None

    return _PLACEHOLDER.sub(sub, template)


def _uniform_index(rng, n: int) -> int:
    return min(int(rng.random() * n), n - 1)


# ---- parts of a task file -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplaceRule:
    """``template.replace(old, new)`` with probability ``prob`` (training only)."""

    old: str
    new: str
    prob: float


@dataclass(frozen=True)
class TrainTemplates:
    """Training templates of one form and box kind. A draw: with probability ``proxy_prob`` a uniform choice among
    ``proxies``, else ``main``; then each ``replace`` rule in order with its own probability."""

    main: str
    proxies: tuple[str, ...] = ()
    proxy_prob: float = 0.0
    replace: tuple[ReplaceRule, ...] = ()

    def draw(self, rng, proxy_prob: float | None = None) -> str:
        """One template. ``proxy_prob`` overrides the probability of every draw (proxy and replace rules): the
        reference's single knob ``prob_proxy_prompt``."""
        p = self.proxy_prob if proxy_prob is None else proxy_prob
        template = self.main
        if self.proxies and rng.random() < p:
            template = self.proxies[_uniform_index(rng, len(self.proxies))]
        for rule in self.replace:
            if rng.random() < (rule.prob if proxy_prob is None else proxy_prob):
                template = template.replace(rule.old, rule.new)
        return template

    def variants(self) -> list[str]:
        """Every template a draw can return (main and proxies under every subset of the replace rules), in a fixed
        order without duplicates."""
        out = [self.main, *self.proxies] if self.proxies and self.proxy_prob > 0 else [self.main]
        for rule in self.replace:
            if rule.prob > 0:
                out += [t.replace(rule.old, rule.new) for t in out]
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class FormPrompts:
    """System prompt (None: no system message), training templates and evaluation prompt of one form and kind."""

    system: str | None
    train: TrainTemplates
    eval: str


@dataclass(frozen=True)
class CategoryRule:
    """How class names become the category string and answer labels: each name gets the ``replace`` pairs and,
    with ``lower``, ``str.lower()``; the string joins them with ``separator``, sorted when ``sort`` (by the
    transformed name, as the reference does)."""

    replace: tuple[tuple[str, str], ...] = (("-", " "),)
    lower: bool = True
    sort: bool = True
    separator: str = ", "

    def label(self, name: str) -> str:
        for old, new in self.replace:
            name = name.replace(old, new)
        return name.lower() if self.lower else name

    def string(self, names: Sequence[str]) -> str:
        labels = [self.label(n) for n in names]
        return self.separator.join(sorted(labels) if self.sort else labels)


@dataclass(frozen=True)
class OpenEnd:
    """An open-ended request: ``{categories}`` (with ``absorb_prefix`` right before it, if present) becomes one of
    ``phrases``; a builder asks for it with probability ``prob``."""

    phrases: tuple[str, ...]
    absorb_prefix: str = ""
    prob: float = 0.0

    def apply(self, template: str, rng=None, placeholder: str = "categories") -> str:
        phrase = self.phrases[0] if rng is None else self.phrases[_uniform_index(rng, len(self.phrases))]
        target = re.escape("{" + placeholder + "}")
        prefix = f"(?:{re.escape(self.absorb_prefix)})?" if self.absorb_prefix else ""
        return re.sub(prefix + target, lambda m: phrase, template)


@dataclass(frozen=True)
class TaskPrompts:
    """The prompts of one task (one task file)."""

    task: str
    placeholders: frozenset[str]
    answer_style: str
    forms: dict[str, dict[str, FormPrompts]]
    plain_prob: float
    category: CategoryRule | None = None
    open_end: OpenEnd | None = None
    source: str = ""

    def get(self, form: str, kind: str) -> FormPrompts:
        try:
            return self.forms[form][kind]
        except KeyError:
            have = {f: sorted(k) for f, k in self.forms.items()}
            raise KeyError(f"{self.source}: no {self.task} prompts for form {form!r} and box kind {kind!r}; "
                           f"have {have}") from None

    def draw_form(self, rng, plain_prob: float | None = None) -> str:
        """``plain`` with probability ``plain_prob`` (default: the file's), else the other form (``json``)."""
        p = self.plain_prob if plain_prob is None else plain_prob
        other = [f for f in self.forms if f != "plain"]
        if "plain" not in self.forms or (other and rng.random() >= p):
            return other[0]
        return "plain"

    def values(self, fields: dict) -> dict:
        """``fields`` with a list/tuple ``categories`` turned into the category string."""
        out = dict(fields)
        if isinstance(out.get("categories"), (list, tuple)):
            rule = self.category or CategoryRule()
            out["categories"] = rule.string(out["categories"])
        return out


# ---- zoom and benchmarks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoomPrompts:
    """The zoom-in tool call strings (zoom.yaml); see :mod:`rscovlm.protocol.zoom` for writing and reading."""

    tool_name: str
    system: str
    user: str
    tool_call: str
    followup: str
    mcq_template: str | None = None
    choice_suffix: str = "\n"
    train_rstrip_chars: str | None = None

    def user_text(self, question: str) -> str:
        return render(self.user, question=question)

    def mcq_question(self, text: str, choices: Sequence[str], training: bool = True) -> str:
        """A multiple-choice question; ``training`` applies the reference's character-set ``rstrip`` to ``text``
        (kept on purpose, see zoom.yaml), evaluation does not."""
        if self.mcq_template is None:
            raise KeyError("this prompt set has no multiple-choice template (zoom.yaml: mcq)")
        if training and self.train_rstrip_chars is not None:
            text = text.rstrip(self.train_rstrip_chars)
        return render(self.mcq_template, text=text, choices="".join(c + self.choice_suffix for c in choices))


@dataclass(frozen=True)
class FieldRule:
    """How a benchmark field value is prepared: ``replace`` pairs and ``strip`` for text; ``item_suffix`` and
    ``join`` for a list."""

    replace: tuple[tuple[str, str], ...] = ()
    strip: bool = False
    item_suffix: str = ""
    join: str | None = None

    def apply(self, value):
        if isinstance(value, (list, tuple)):
            return (self.join or "").join(str(v) + self.item_suffix for v in value)
        value = str(value)
        for old, new in self.replace:
            value = value.replace(old, new)
        return value.strip() if self.strip else value


@dataclass(frozen=True)
class EvalPrompt:
    """The evaluation prompt of one benchmark record: ``system`` (None: no system message) and ``user`` text, the
    form and box kind used, and ``image`` options for the image part (e.g. ``min_pixels``/``max_pixels``)."""

    benchmark: str
    entry: str
    form: str
    kind: str | None
    system: str | None
    user: str
    image: dict = field(default_factory=dict)

    def messages(self, image_part: dict | None = None) -> list[dict]:
        """The conversation up to the model's turn: an optional system message, then one user message with the
        image part (``image`` options merged into it) followed by the text. Contents are part lists
        (``{"type": "text", "text": ...}``); Qwen's chat template renders them exactly like the reference's plain
        strings."""
        out: list[dict] = []
        if self.system is not None:
            out.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        content: list[dict] = []
        if image_part is not None:
            content.append({**image_part, **self.image})
        content.append({"type": "text", "text": self.user})
        out.append({"role": "user", "content": content})
        return out


@dataclass(frozen=True)
class BenchmarkPrompts:
    """One entry of benchmarks.yaml (see its header)."""

    name: str
    source: str
    aliases: dict[str, str | None]
    fields: frozenset[str]
    field_rules: dict[str, FieldRule]
    forms: dict[str, tuple[str | None, str]]
    task: str | None = None
    default_form: str | None = None
    default_kind: str | None = None
    kinds: tuple[str, ...] | None = None
    pixel_suffixes: tuple[tuple[str, int], ...] = ()
    zoom: str | None = None
    zoom_skip_categories: tuple[str, ...] = ()


# ---- the set ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptSet:
    """A loaded prompt set (see module docstring). Get one with :func:`get_prompt_set`."""

    name: str
    path: str
    tasks: dict[str, TaskPrompts]
    zoom: ZoomPrompts | None
    benchmarks: dict[str, BenchmarkPrompts]
    synonym_tables: dict[str, dict[str, tuple[str, ...]]]

    def task(self, task: str) -> TaskPrompts:
        try:
            return self.tasks[task]
        except KeyError:
            raise KeyError(f"prompt set {self.name!r} ({self.path}) has no {task!r} prompts; it has "
                           f"{sorted(self.tasks)}") from None

    def answer_style(self, task: str = "detection") -> str:
        """The answer format its targets are written in (``write_detections(..., style=...)``)."""
        return self.task(task).answer_style

    def category_string(self, names: Sequence[str], task: str = "detection") -> str:
        return (self.task(task).category or CategoryRule()).string(names)

    def category_label(self, name: str, task: str = "detection") -> str:
        return (self.task(task).category or CategoryRule()).label(name)

    def draw_form(self, task: str, rng, plain_prob: float | None = None) -> str:
        return self.task(task).draw_form(rng, plain_prob)

    def draw_template(self, task: str, form: str, kind: str, rng, proxy_prob: float | None = None) -> str:
        """An unrendered training template (see :meth:`TrainTemplates.draw`)."""
        return self.task(task).get(form, kind).train.draw(rng, proxy_prob)

    def training_prompt(self, task: str, form: str, kind: str, rng, *, proxy_prob: float | None = None,
                        open_end: bool = False, **fields) -> tuple[str | None, str]:
        """``(system, user text)`` of one training sample: a drawn template rendered with ``fields``
        (``categories`` may be a list of class names: the category rule makes the string). ``open_end`` turns
        the request into the open-ended phrase (detection)."""
        t = self.task(task)
        fp = t.get(form, kind)
        template = fp.train.draw(rng, proxy_prob)
        values = t.values(fields)
        if open_end:
            if t.open_end is None:
                raise KeyError(f"{t.source}: no open_end request")
            template = t.open_end.apply(template, rng)
            values.pop("categories", None)
        return fp.system, render(template, **values)

    def synonyms(self, dataset: str = "dota") -> dict[str, tuple[str, ...]]:
        """``{class name as the table writes it: (word, ...)}`` of ``dataset`` (KeyError naming those there)."""
        try:
            return self.synonym_tables[dataset]
        except KeyError:
            raise KeyError(f"prompt set {self.name!r} has no synonyms for {dataset!r}; it has "
                           f"{sorted(self.synonym_tables)}") from None

    # ---- evaluation ---------------------------------------------------------------------------------------
    def benchmark(self, name: str) -> tuple[BenchmarkPrompts, str | None, dict]:
        """``(entry, the alias's default form or None, image options)`` for a benchmark name (case-insensitive;
        an entry name or an alias, possibly with a pixel suffix such as ``geoground_336``)."""
        key = name.strip().lower()
        for entry in self.benchmarks.values():
            if key == entry.name or key in entry.aliases:
                return entry, entry.aliases.get(key), {}
        for entry in self.benchmarks.values():
            for suffix, side in entry.pixel_suffixes:
                if suffix in key:
                    base = key.replace(suffix, "")
                    if base == entry.name or base in entry.aliases:
                        return entry, entry.aliases.get(base), {"min_pixels": side * side, "max_pixels": side * side}
                    break
        known = sorted({a for e in self.benchmarks.values() for a in (e.name, *e.aliases)})
        raise KeyError(f"prompt set {self.name!r} has no evaluation prompt for benchmark {name!r}; known: {known}")

    def eval_prompt(self, benchmark: str, form: str | None = None, kind: str | None = None,
                    category: str | None = None, **fields) -> EvalPrompt:
        """The evaluation prompt of one record of ``benchmark``. ``form``/``kind`` default to the benchmark's
        (for task-based entries such as ``dense_det``: the file's ``default_form``/``default_kind``);
        ``category`` is the record's category where the benchmark skips zooming for some (LRS-VQA counting);
        ``fields`` fill the placeholders (``categories`` may be a list of class names)."""
        entry, alias_form, image = self.benchmark(benchmark)
        form = form or alias_form or entry.default_form or next(iter(entry.forms or {"plain": None}))
        if entry.zoom is not None and form == entry.zoom:
            if category is not None and category in entry.zoom_skip_categories:
                form = "plain"
            else:
                if self.zoom is None:
                    raise KeyError(f"prompt set {self.name!r} has no zoom.yaml for {benchmark!r}")
                inner = self._entry_prompt(entry, "plain", kind, fields)
                return EvalPrompt(benchmark, entry.name, form, None, self.zoom.system,
                                  self.zoom.user_text(inner[2]), image)
        f, k, user, system = self._entry_prompt(entry, form, kind, fields)
        return EvalPrompt(benchmark, entry.name, f, k, system, user, image)

    def _entry_prompt(self, entry: BenchmarkPrompts, form: str, kind: str | None, fields: dict):
        values = {k: (entry.field_rules[k].apply(v) if k in entry.field_rules else v) for k, v in fields.items()}
        if entry.task is not None:
            t = self.task(entry.task)
            kind = kind or entry.default_kind
            if entry.kinds is not None and kind not in entry.kinds:
                raise KeyError(f"benchmark {entry.name!r} is evaluated with box kinds {list(entry.kinds)}, "
                               f"not {kind!r}")
            fp = t.get(form, kind)
            return form, kind, render(fp.eval, **t.values(values)), fp.system
        if form not in entry.forms:
            raise KeyError(f"benchmark {entry.name!r} has no form {form!r}; it has {sorted(entry.forms)}")
        system, user = entry.forms[form]
        return form, None, render(user, **values), system


# ---- loading and validation ---------------------------------------------------------------------------------

class _Node:
    """A YAML value with its file and key path, for error messages."""

    def __init__(self, value, file: str, path: str = ""):
        self.value, self.file, self.path = value, file, path

    def error(self, problem: str) -> PromptSetError:
        return PromptSetError(f"{self.file}: {self.path or '(top level)'}: {problem}")

    def child(self, key) -> "_Node":
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else str(key))
        return _Node(self.value[key], self.file, path)

    def get(self, key, default=None) -> "_Node":
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {type(self.value).__name__}")
        if key in self.value:
            return self.child(key)
        path = f"{self.path}.{key}" if self.path else str(key)
        return _Node(default, self.file, path)

    def need(self, key) -> "_Node":
        node = self.get(key)
        if key not in self.value:
            raise node.error("missing")
        return node

    def mapping(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {type(self.value).__name__}")
        return self.value

    def text(self, optional: bool = False) -> str | None:
        if optional and self.value is None:
            return None
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"expected a non-empty string, got {self.value!r}")
        return self.value

    def texts(self) -> list[str]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self.error(f"expected a list of strings, got {type(self.value).__name__}")
        return [self.child(i).text() for i in range(len(self.value))]

    def prob(self, default: float) -> float:
        v = default if self.value is None else self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise self.error(f"expected a probability in [0, 1], got {v!r}")
        return float(v)

    def flag(self, default: bool) -> bool:
        v = default if self.value is None else self.value
        if not isinstance(v, bool):
            raise self.error(f"expected true or false, got {v!r}")
        return v


def _template(node: _Node, names: frozenset[str]) -> str:
    text = node.text()
    found = placeholders(text)
    if found != names:
        raise node.error(f"placeholders must be exactly {sorted(names)}, found {sorted(found)} in {text!r}")
    return text


def _system(node: _Node) -> str | None:
    text = node.text(optional=True)
    if text is not None and placeholders(text):
        raise node.error(f"a system prompt takes no placeholders, found {sorted(placeholders(text))}")
    return text


def _pairs(node: _Node) -> tuple[tuple[str, str], ...]:
    """``{old: new}`` or ``[[old, new], ...]``."""
    v = node.value
    if v is None:
        return ()
    if isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        return tuple(v.items())
    if isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
                                   for p in v):
        return tuple((a, b) for a, b in v)
    raise node.error(f"expected {{old: new}} or [[old, new], ...], got {v!r}")


def _train(node: _Node, names: frozenset[str]) -> TrainTemplates:
    node.mapping()
    proxies = node.get("proxies")
    rules = []
    rnode = node.get("replace")
    if rnode.value is not None and not isinstance(rnode.value, list):
        raise rnode.error("expected a list of {old, new, prob}")
    for i in range(len(rnode.value or [])):
        r = rnode.child(i)
        r.mapping()
        new = r.need("new")
        if not isinstance(new.value, str):
            raise new.error(f"expected a string, got {new.value!r}")
        rules.append(ReplaceRule(r.need("old").text(), new.value, r.need("prob").prob(0.0)))
    train = TrainTemplates(
        _template(node.need("main"), names),
        tuple(_template(proxies.child(i), names) for i in range(len(proxies.texts()))),
        node.get("proxy_prob").prob(0.0), tuple(rules))
    for variant in train.variants():  # a replace rule must not create or destroy a placeholder
        if placeholders(variant) != names:
            raise node.error(f"replace rules turn a template into {variant!r}, whose placeholders are not "
                             f"{sorted(names)}")
    return train


def _task(node: _Node, expected: str) -> TaskPrompts:
    node.mapping()
    task = node.need("task").text()
    if task != expected:
        raise node.child("task").error(f"expected {expected!r} (the file name), got {task!r}")
    names = frozenset(node.need("placeholders").texts())
    forms: dict[str, dict[str, FormPrompts]] = {}
    fnode = node.need("forms")
    for form in fnode.mapping():
        forms[form] = {}
        knode = fnode.child(form)
        for kind in knode.mapping():
            k = knode.child(kind)
            k.mapping()
            forms[form][kind] = FormPrompts(_system(k.need("system")), _train(k.need("train"), names),
                                            _template(k.need("eval"), names))
        if not forms[form]:
            raise knode.error("no box kinds")
    if not forms:
        raise fnode.error("no forms")
    cat = None
    cnode = node.get("category_string")
    if cnode.value is not None:
        cnode.mapping()
        sep = cnode.get("separator", ", ")
        if not isinstance(sep.value, str):
            raise sep.error(f"expected a string, got {sep.value!r}")
        cat = CategoryRule(_pairs(cnode.get("replace")), cnode.get("lower").flag(True),
                           cnode.get("sort").flag(True), sep.value)
    open_end = None
    onode = node.get("open_end")
    if onode.value is not None:
        onode.mapping()
        phrases = onode.need("phrases").texts()
        if not phrases:
            raise onode.child("phrases").error("expected at least one phrase")
        prefix = onode.get("absorb_prefix", "")
        if not isinstance(prefix.value, str):
            raise prefix.error(f"expected a string, got {prefix.value!r}")
        open_end = OpenEnd(tuple(phrases), prefix.value, onode.get("prob").prob(0.0))
    style = node.need("answer_style").text()
    return TaskPrompts(task, names, style, forms, node.get("form_draw", {}).get("plain_prob").prob(1.0), cat,
                       open_end, node.file)


def _zoom(node: _Node) -> ZoomPrompts:
    node.mapping()
    mcq = node.get("mcq")
    template = suffix = strip = None
    if mcq.value is not None:
        mcq.mapping()
        template = _template(mcq.need("template"), frozenset({"text", "choices"}))
        suffix = mcq.get("choice_suffix", "\n").value
        strip = mcq.get("train_rstrip_chars").value
        for key, value in (("choice_suffix", suffix), ("train_rstrip_chars", strip)):
            if value is not None and not isinstance(value, str):
                raise mcq.child(key).error(f"expected a string, got {value!r}")
    return ZoomPrompts(node.need("tool_name").text(), _system(node.need("system")),
                       _template(node.need("user"), frozenset({"question"})),
                       _template(node.need("tool_call"), frozenset({"x1", "y1", "x2", "y2"})),
                       _system(node.need("followup")), template, suffix if suffix is not None else "\n", strip)


def _benchmarks(node: _Node, tasks: dict[str, TaskPrompts], has_zoom: bool) -> dict[str, BenchmarkPrompts]:
    out = {}
    for name in node.mapping():
        e = node.child(name)
        e.mapping()
        aliases: dict[str, str | None] = {}
        anode = e.get("aliases", [])
        if not isinstance(anode.value, list):
            raise anode.error("expected a list")
        for i, a in enumerate(anode.value):
            if isinstance(a, str):
                aliases[a.lower()] = None
            elif isinstance(a, dict) and len(a) == 1 and all(isinstance(s, str) for s in (*a, *a.values())):
                (alias, form), = a.items()
                aliases[alias.lower()] = form
            else:
                raise anode.child(i).error(f"expected a name or {{name: form}}, got {a!r}")
        task = e.get("task").value
        fields = frozenset(e.get("fields", []).texts())
        rules = {}
        rnode = e.get("field_rules", {})
        for fname in rnode.mapping():
            r = rnode.child(fname)
            r.mapping()
            if fname not in fields:
                raise r.error(f"a rule for {fname!r}, which is not among the fields {sorted(fields)}")
            extra = set(r.value) - {"replace", "strip", "item_suffix", "join"}
            if extra:
                raise r.error(f"unknown keys {sorted(extra)}")
            for key in ("item_suffix", "join"):
                if r.value.get(key) is not None and not isinstance(r.value[key], str):
                    raise r.child(key).error(f"expected a string, got {r.value[key]!r}")
            rules[fname] = FieldRule(_pairs(r.get("replace")), r.get("strip").flag(False),
                                     r.value.get("item_suffix") or "", r.value.get("join"))
        forms: dict[str, tuple[str | None, str]] = {}
        if task is not None:
            if not isinstance(task, str) or task not in tasks:
                raise e.child("task").error(f"no task file for {task!r}; the set has {sorted(tasks)}")
            if e.get("forms").value is not None:
                raise e.child("forms").error("give either `task` or `forms`, not both")
            t = tasks[task]
            kind = e.get("default_kind").text()
            kinds = tuple(e.get("kinds").texts()) or None
            form = e.get("default_form").text()
            try:
                t.get(form, kind)
            except KeyError as err:
                raise e.error(str(err)) from None
        else:
            kind, kinds = None, None
            fnode = e.need("forms")
            for form_name in fnode.mapping():
                p = fnode.child(form_name)
                p.mapping()
                forms[form_name] = (_system(p.need("system")), _template(p.need("user"), fields))
            form = e.get("default_form").value or next(iter(forms), None)
            if form not in forms:
                raise e.child("default_form").error(f"{form!r} is not among the forms {sorted(forms)}")
        zoom = e.get("zoom").value
        if zoom is not None and (not isinstance(zoom, str) or not has_zoom):
            raise e.child("zoom").error("needs a form name and the set's zoom.yaml")
        for alias, aform in aliases.items():
            if aform is not None and aform not in forms and aform != zoom:
                raise anode.error(f"alias {alias!r} asks for form {aform!r}, which the entry does not have")
        suffixes = e.get("pixel_suffixes", {})
        for s, side in suffixes.mapping().items():
            if not isinstance(s, str) or isinstance(side, bool) or not isinstance(side, int) or side <= 0:
                raise suffixes.error(f"expected suffix: positive side, got {s!r}: {side!r}")
        source = e.get("source", "").value
        out[name] = BenchmarkPrompts(
            name, source if isinstance(source, str) else "", aliases, fields, rules, forms, task, form, kind, kinds,
            tuple(suffixes.value.items()), zoom, tuple(e.get("zoom_skip_categories", []).texts()))
    return out


def _synonyms(node: _Node) -> dict[str, dict[str, tuple[str, ...]]]:
    out = {}
    for dataset in node.mapping():
        d = node.child(dataset)
        table = {}
        for cls in d.mapping():
            words = d.child(cls).texts()
            if not words:
                raise d.child(cls).error("expected at least one word")
            table[str(cls)] = tuple(words)
        out[str(dataset)] = table
    return out


def _templates_root():
    return resources.files("rscovlm.protocol").joinpath("templates")


def list_prompt_sets() -> list[str]:
    """Names of the packaged prompt sets."""
    return sorted(p.name for p in _templates_root().iterdir() if p.is_dir() and not p.name.startswith("_"))


def _resolve(name: str | None) -> tuple[str, Path]:
    name = name or DEFAULT_PROMPT_SET
    if name == "default":
        name = DEFAULT_PROMPT_SET
    if "/" in name or name.startswith("."):
        path = Path(name)
    else:
        path = Path(str(_templates_root().joinpath(name)))
    if not path.is_dir():
        raise FileNotFoundError(f"unknown prompt set {name!r}: no folder {path} (packaged sets: "
                                f"{list_prompt_sets()}; or give a folder path)")
    return name, path


def _load(path: Path, name: str) -> dict | None:
    file = path / f"{name}.yaml"
    if not file.is_file():
        return None
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PromptSetError(f"{file}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise PromptSetError(f"{file}: (top level): expected a mapping")
    return data


def get_prompt_set(name: str | None = None) -> PromptSet:
    """The prompt set ``name``: a packaged one (``reference`` = the default, ``rscovlm-v0``; ``default`` and None
    mean the default) or a folder path. Validated on first use, then cached."""
    resolved, path = _resolve(name)
    return _get(resolved, str(path.resolve()))


@lru_cache(maxsize=None)
def _get(name: str, path: str) -> PromptSet:
    root = Path(path)
    tasks = {}
    for task in TASK_FILES:
        data = _load(root, task)
        if data is not None:
            tasks[task] = _task(_Node(data, str(root / f"{task}.yaml")), task)
    zoom_data = _load(root, "zoom")
    zoom = _zoom(_Node(zoom_data, str(root / "zoom.yaml"))) if zoom_data is not None else None
    bench_data = _load(root, "benchmarks")
    benchmarks = _benchmarks(_Node(bench_data, str(root / "benchmarks.yaml")), tasks, zoom is not None) \
        if bench_data is not None else {}
    syn_data = _load(root, "synonyms")
    if syn_data is not None:
        synonyms = _synonyms(_Node(syn_data, str(root / "synonyms.yaml")))
    else:  # the shared table of the templates folder (canonical ids -> words), for every dataset
        from rscovlm.protocol.prompts import load_synonyms

        synonyms = {"dota": load_synonyms()}
    if not tasks and zoom is None and not benchmarks:
        raise PromptSetError(f"{root}: no prompt files (expected some of {[*TASK_FILES, 'zoom', 'benchmarks']}"
                             f" .yaml)")
    return PromptSet(name, path, tasks, zoom, benchmarks, synonyms)


def describe(ps: PromptSet) -> dict[str, Any]:
    """What a run records about its prompt set: name, folder and the answer style of each task."""
    return {"name": ps.name, "path": ps.path, "answer_styles": {t: p.answer_style for t, p in ps.tasks.items()}}
