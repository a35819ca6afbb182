"""Registry of training data sources: ``data.source`` in the config names one.

A source is a function ``build(data_cfg: DataConfig, seed: int) -> Dataset`` returning a map-style dataset
(``__len__`` + ``__getitem__``) whose items are conversations ``{"messages": [...]}`` in the format of
:mod:`rscovlm.model.collator` (images as paths or PIL images, already resized by the sample builder or not - the
collator applies the resolution policy either way). Register one with::

    @register_source("mixture", family_aware=True)
    def build_mixture(cfg, seed, family=None): ...

A *family-aware* source writes box coordinates itself and so must know the model family being trained
(:class:`rscovlm.model.families.ModelFamily`: box frame and side factor differ between Qwen2-VL, Qwen2.5-VL and
Qwen3-VL). ``build_source(cfg, seed, family=...)`` passes it on as the keyword ``family`` (None: the source's own
default); the trainer passes the family of the checkpoint's config. Other sources never see it: their targets are
what their files say (e.g. ``jsonl`` conversations must already be in the frame of the model they train).

Built in:

* ``jsonl`` - every non-empty line of every file in ``data.paths`` is one conversation;
* ``mixture`` - the weighted online mixture of :mod:`rscovlm.data.mixture` (registered here: ``data`` knows
  nothing of the trainer; imported when the source is built) of subset units; ``data.paths`` holds one mixture YAML; each item is built on the fly by
  :class:`rscovlm.data.builder.SampleBuilder` (prompt templates, plain/JSON targets, random resize with boxes in
  the box frame of the family being trained). The trainer visits it in the mixture's own seeded order of each
  epoch (``data.shuffle`` does not apply; ``data.data_root`` replaces the YAML's ``data_root``). Its prompt set is the YAML's (``builder.prompt_set``, per unit
  ``prompt_set``; default ``reference``); ``data.options.prompt_set`` overrides the builder's.

:func:`dataset_prompt_sets` says which prompt sets a dataset's samples were built with (the trainer writes it to
``<output_dir>/rscovlm_prompt_sets.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

_SOURCES: dict[str, Callable] = {}
_FAMILY_AWARE: set[str] = set()


def register_source(name: str, *, family_aware: bool = False):
    """Decorator adding a data source builder under ``name``; ``family_aware``: the builder takes the keyword
    ``family`` (see module docstring)."""

    def deco(fn: Callable) -> Callable:
        if name in _SOURCES:
            raise ValueError(f"data source {name!r} is already registered")
        _SOURCES[name] = fn
        if family_aware:
            _FAMILY_AWARE.add(name)
        return fn

    return deco


def sources() -> list[str]:
    return sorted(_SOURCES)


def source_uses_family(name: str) -> bool:
    """Whether the source ``name`` writes box targets in the frame of the model family it is given."""
    return name in _FAMILY_AWARE


def build_source(cfg, seed: int = 0, family=None):
    """The dataset of ``cfg.source`` (a :class:`~rscovlm.train.config.DataConfig`); ``family`` (a
    :class:`~rscovlm.model.families.ModelFamily` or None) goes to family-aware sources only."""
    try:
        builder = _SOURCES[cfg.source]
    except KeyError:
        raise ValueError(f"data.source {cfg.source!r} is not registered; known sources: {sources()}") from None
    if cfg.source in _FAMILY_AWARE:
        return builder(cfg, seed, family=family)
    return builder(cfg, seed)


def prompt_sets_of_items(items) -> list[dict]:
    """The distinct ``meta.prompt_set`` entries (``{"name", "sha256"}``, as the sample builder records them) of
    conversation dicts, each with the number of ``samples`` carrying it; items without one are counted under
    ``{"name": None}`` when there are any."""
    counts: dict[tuple, int] = {}
    for item in items:
        meta = item.get("meta") if isinstance(item, dict) else None
        entry = meta.get("prompt_set") if isinstance(meta, dict) else None
        key = (entry.get("name"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
        counts[key] = counts.get(key, 0) + 1
    return [{"name": name, "sha256": digest, "samples": n} if name is not None else {"name": None, "samples": n}
            for (name, digest), n in counts.items()]


def dataset_prompt_sets(dataset) -> list[dict]:
    """Which prompt sets the samples of ``dataset`` were built with: the dataset's own ``prompt_sets()`` (the
    mixture: one entry per set with its folder, answer styles, SHA-256 and units) or, for an in-memory sequence of
    conversation dicts, :func:`prompt_sets_of_items`. Empty when the dataset cannot say."""
    if callable(getattr(dataset, "prompt_sets", None)):
        return dataset.prompt_sets()
    if isinstance(dataset, (list, tuple)):
        return prompt_sets_of_items(dataset)
    return []


class JsonlConversations:
    """Conversations from JSON-lines files; relative image paths resolve against ``image_root`` or the file's
    folder. Each line is validated on load; errors name ``file:line``. Offers ``where`` (the ``file:line`` of an
    item, for error messages) and the pre-flight protocol of :mod:`rscovlm.train.preflight`
    (``image_references`` / ``drop_records``)."""

    def __init__(self, paths: list[str | Path], image_root: str | Path | None = None):
        from rscovlm.data.records import iter_jsonl
        from rscovlm.model.collator import conversation_messages

        if not paths:
            raise ValueError("data.paths is empty: give at least one jsonl file")
        self.items: list[dict] = []
        self.lines: list[str] = []
        for path in map(Path, paths):
            if not path.is_file():
                raise FileNotFoundError(f"data file not found: {path}")
            root = Path(image_root) if image_root else path.parent
            for lineno, item in iter_jsonl(path):  # a line that is not JSON raises, naming file:line
                try:
                    messages = conversation_messages(item)
                except ValueError as err:
                    raise ValueError(f"{path}:{lineno}: {err}") from None
                for message in messages:
                    if isinstance(message["content"], list):
                        for part in message["content"]:
                            if part.get("type") == "image" and isinstance(part["image"], str):
                                image = Path(part["image"])
                                part["image"] = str(image if image.is_absolute() else root / image)
                self.items.append(item)
                self.lines.append(f"{path}:{lineno}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def where(self, index: int) -> str:
        """``file:line`` of item ``index``."""
        return self.lines[index]

    def image_references(self):
        """Every image path of every item (pre-flight protocol); the key is the item's ``file:line``."""
        from rscovlm.data.records import ImageRef

        for item, where in zip(self.items, self.lines):
            for message in item["messages"] if isinstance(item, dict) else item:
                for part in message["content"] if isinstance(message["content"], list) else ():
                    if part.get("type") == "image" and isinstance(part["image"], str):
                        yield ImageRef(part["image"], where, where)

    def prompt_sets(self) -> list[dict]:
        """:func:`prompt_sets_of_items` of the lines (the ``meta`` the sample builder wrote, when present)."""
        return prompt_sets_of_items(self.items)

    def drop_records(self, keys) -> int:
        """Remove the items whose ``file:line`` is in ``keys``; returns how many were removed."""
        keys = set(keys)
        kept = [(item, where) for item, where in zip(self.items, self.lines) if where not in keys]
        removed = len(self.items) - len(kept)
        self.items = [item for item, _ in kept]
        self.lines = [where for _, where in kept]
        return removed


@register_source("jsonl")
def _jsonl(cfg, seed: int):
    if cfg.options:
        raise ValueError(f"data.source 'jsonl' takes no options, got {sorted(cfg.options)}")
    return JsonlConversations(cfg.paths, cfg.image_root)


@register_source("mixture", family_aware=True)
def _mixture(cfg, seed: int, family=None):
    """``data.source: mixture``: the mixture YAML of ``data.paths`` as
    :func:`rscovlm.data.mixture.training_mixture_config` reads a training config's data section. The trainer
    gives each item's epoch in its key (``(epoch, position)``); ``seed`` is the YAML's own."""
    from rscovlm.data.mixture import Mixture, MixtureDataset, training_mixture_config

    return MixtureDataset(Mixture(training_mixture_config(cfg, family)))


def mix_stats_inputs(path, prompt_set: str | None = None, data_root=None, model=None,
                     max_length: int | None = None):
    """What ``rscovlm data mix-stats`` reads: ``(mixture, token counter, settings)`` of a mixture YAML
    (:func:`rscovlm.data.mixture.mixture_for_stats`) or of a training config whose ``data.source`` is ``mixture``
    (its data root, pixel bounds, max_length and model; ``global_batch`` when it packs). The counter is exact when
    a processor loads offline (``model``, else the training config's model); ``settings`` = ``{"max_length",
    "global_batch", "note"}``."""
    from rscovlm.data.mixture import (
        Mixture,
        MixtureError,
        is_training_config,
        mixture_for_stats,
        offline_processor,
        read_yaml_document,
        stats_counter,
        training_mixture_config,
    )
    from rscovlm.train.config import ConfigError, load_config

    if not is_training_config(read_yaml_document(path)):
        return mixture_for_stats(path, prompt_set, data_root, model, max_length)
    try:
        cfg = load_config(path)
    except ConfigError as err:
        raise MixtureError(str(err)) from None
    if cfg.data.source != "mixture":
        raise MixtureError(f"{path}: data.source is {cfg.data.source!r}; mix-stats reads mixtures")
    if data_root is not None:
        cfg.data.data_root = str(data_root)
    model = model or cfg.model.model_name_or_path
    min_pixels, max_pixels = cfg.data.min_pixels, cfg.data.max_pixels
    max_length = max_length or cfg.data.max_length
    processor, family, why = offline_processor(model, min_pixels, max_pixels)
    mixture = Mixture(training_mixture_config(cfg.data, family, prompt_set))
    counter, note = stats_counter(processor, family, why, model, min_pixels, max_pixels, max_length)
    return mixture, counter, {"global_batch": cfg.train.global_batch_size if cfg.train.packing else None,
                              "max_length": max_length, "note": note}
