"""Weighted online mixture of subset units (paper 3.2.3).

A mixture YAML lists *subset units* - one unified record file each - with a sampling weight::

    seed: 0
    epoch_size: 20000            # samples per epoch (default: the total number of samples of the units)
    builder: {prompt_set: reference, plain_prob: 1.0}   # the online sample builder's options (BuildConfig)
    units:
      - name: dota_det
        path: dota_train.json    # relative to the YAML's folder
        type: detection          # conversation | detection | grounding
        images: /data/dota/split/images
        weight: 2.0
        box_kinds: [hbb, obb, quad]  # one sample per record and kind (or box_kind: quad; defaults quad, hbb)
        random_resize_prob: 0.5  # any option of rscovlm.data.builder.UNIT_OPTIONS, for this unit only
      - {name: geochat, path: geochat.jsonl, type: conversation, images: /data/geochat, weight: 1.0}

A unit's *samples* are its records times its box kinds (item ``k * n_records + r`` is record ``r`` as the
``k``-th kind, the reference's kind-major order). Sampling: ``weight`` is the unit's share of the sample stream -
a unit of weight 2 gives twice as many samples as a unit of weight 1 whatever their sizes (normalized over the
units). Each epoch ``e`` draws a fresh sequence from ``numpy.random.default_rng([seed, e])``: every position picks
a unit with probability ``weight / sum``, and each unit serves its samples in a fresh random permutation (cycled
when the unit is drawn more often than it has samples), so samples repeat only when a unit is up-sampled. The
sequence is a pure function of ``(config, epoch)``: every rank computes the same one without communication. Rank
``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the first ``W * (epoch_size // W)`` positions
(disjoint, equal counts; at most ``W - 1`` trailing positions are left out). Resuming needs only
``(epoch, position)``.

Everything here is torch-free. :class:`MixtureDataset` has ``__len__`` / ``__getitem__`` (a map-style dataset
for ``torch.utils.data.DataLoader`` or the HF Trainer) and builds each sample with a generator seeded by
``(seed, epoch, position)``, so a sample is the same whichever rank or worker builds it; :class:`MixtureSampler`
is the per-rank, resumable order of positions (pass it as the DataLoader's ``sampler``).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import yaml

from rscovlm.data.builder import UNIT_OPTIONS, BuildConfig, BuildError, SampleBuilder, check_options
from rscovlm.protocol.prompt_sets import get_prompt_set
from rscovlm.data.records import (
    RECORD_KINDS, RecordError, content_parts, grounding_image_path, iter_jsonl, read_coco,
)


class MixtureError(ValueError):
    """A mixture config or unit file that cannot be used (the message names the file and field)."""


@dataclass
class UnitConfig:
    """One subset unit of a mixture. The builder options of :data:`rscovlm.data.builder.UNIT_OPTIONS` may be set
    per unit; left out (None) they are the mixture's ``builder:`` values."""

    name: str = field(metadata={"help": "unit name (unique in the mixture)"})
    path: str = field(metadata={"help": "unified record file; relative paths are relative to the YAML's folder"})
    type: Literal["conversation", "detection", "grounding"] = field(metadata={"help": "record kind of the file"})
    weight: float = field(default=1.0, metadata={"help": "share of the sample stream (normalized over units)"})
    images: str | None = field(default=None, metadata={"help": "image root of the records' relative paths"})
    box_kind: Literal["hbb", "obb", "quad"] | None = field(default=None, metadata={
        "help": "box kind of built detection/grounding targets (default quad for detection, hbb for grounding)"})
    box_kinds: list[str] | None = field(default=None, metadata={
        "help": "several box kinds: one sample per record and kind (the reference trains each DOTA image once as "
                "hbb, obb and quad: [hbb, obb, quad]); instead of box_kind"})
    source: str | None = field(default=None, metadata={"help": "source name in statistics (default: the records')"})
    task: str | None = field(default=None, metadata={"help": "task name in statistics (default: the records')"})
    prompt_set: str | None = field(default=None, metadata={
        "help": "prompt set of this unit's detection/grounding samples (default: the builder's, reference)"})
    plain_prob: float | None = field(default=None, metadata={"help": "probability of the plain output form"})
    proxy_prob: float | None = field(default=None, metadata={"help": "probability of the JSON template draws"})
    random_resize_prob: float | None = field(default=None, metadata={"help": "probability of a random resize"})
    random_resize_dist: str | None = field(default=None, metadata={
        "help": "random resize distribution: area_uniform or reference"})
    clip_boxes: bool | None = field(default=None, metadata={
        "help": "clamp targets into the image (default false: objects cut by the border keep full coordinates)"})

    @property
    def target_box_kinds(self) -> list[str | None]:
        """The box kinds of the samples of each record (``[None]`` for conversations)."""
        if self.type == "conversation":
            return [None]
        if self.box_kinds:
            return list(self.box_kinds)
        return [self.box_kind or ("quad" if self.type == "detection" else "hbb")]

    @property
    def target_box_kind(self) -> str | None:
        """The first of :attr:`target_box_kinds`."""
        return self.target_box_kinds[0]


@dataclass
class MixtureConfig:
    """A mixture: units, seed and epoch size (+ the sample builder's options, kept as a dict)."""

    units: list[UnitConfig]
    seed: int = field(default=0, metadata={"help": "seed of the sample order and of every sample's random choices"})
    epoch_size: int | None = field(default=None, metadata={
        "help": "samples per epoch (all ranks together); default: total number of records"})
    builder: dict = field(default_factory=dict, metadata={"help": "options of rscovlm.data.builder.BuildConfig"})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None) -> "MixtureConfig":
        """The mixture of the YAML file ``path``; ``prompt_set`` (a name or folder) replaces the prompt set of the
        builder and of every unit."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MixtureError(f"{path}: no such mixture file") from None
        except yaml.YAMLError as err:
            raise MixtureError(f"{path}: not valid YAML ({err})") from None
        if prompt_set is not None:
            raw = override_prompt_set(raw, prompt_set)
        return cls.from_dict(raw, base=path.parent, where=str(path))

    @classmethod
    def from_dict(cls, raw: Any, base: str | os.PathLike = ".", where: str = "mixture") -> "MixtureConfig":
        if not isinstance(raw, dict) or not isinstance(raw.get("units"), list) or not raw["units"]:
            raise MixtureError(f"{where}: units: required non-empty list of subset units")
        known = {f.name for f in fields(cls)}
        extra = set(raw) - known
        if extra:
            raise MixtureError(f"{where}: unknown key(s) {sorted(extra)}; expected {sorted(known)}")
        unit_fields = {f.name for f in fields(UnitConfig)}
        units = []
        for i, u in enumerate(raw["units"]):
            at = f"{where}: units[{i}]"
            if not isinstance(u, dict):
                raise MixtureError(f"{at}: expected a mapping")
            extra = set(u) - unit_fields
            if extra:
                raise MixtureError(f"{at}: unknown key(s) {sorted(extra)}; expected {sorted(unit_fields)}")
            for key in ("name", "path", "type"):
                if not isinstance(u.get(key), str) or not u[key]:
                    raise MixtureError(f"{at}.{key}: required string")
            if u["type"] not in RECORD_KINDS:
                raise MixtureError(f"{at}.type: expected one of {RECORD_KINDS}, got {u['type']!r}")
            w = u.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
                raise MixtureError(f"{at}.weight: expected a number >= 0, got {w!r}")
            if u.get("box_kind") not in (None, "hbb", "obb", "quad"):
                raise MixtureError(f"{at}.box_kind: expected hbb, obb or quad, got {u['box_kind']!r}")
            kinds = u.get("box_kinds")
            if kinds is not None:
                if (not isinstance(kinds, list) or not kinds or len(set(map(str, kinds))) != len(kinds)
                        or any(k not in ("hbb", "obb", "quad") for k in kinds)):
                    raise MixtureError(f"{at}.box_kinds: expected a list of distinct kinds among hbb, obb, quad, "
                                       f"got {kinds!r}")
                if u.get("box_kind") is not None:
                    raise MixtureError(f"{at}: give box_kind or box_kinds, not both")
            for key in ("box_kind", "box_kinds"):
                if u.get(key) and u["type"] == "conversation":
                    raise MixtureError(f"{at}.{key}: conversations keep the boxes their records hold")
            try:
                check_options({k: u.get(k) for k in UNIT_OPTIONS}, at)
                if u["type"] != "conversation" and u.get("prompt_set") is not None:
                    unit_set = get_prompt_set(u["prompt_set"])
                    if u["type"] not in unit_set.tasks:
                        raise ValueError(f"{at}: prompt_set {u['prompt_set']!r} has no {u['type']} prompts "
                                         f"({unit_set.path}); it has {sorted(unit_set.tasks)}")
            except ValueError as err:
                raise MixtureError(str(err)) from None
            u = dict(u)
            u["path"] = str(Path(base, u["path"])) if not os.path.isabs(u["path"]) else u["path"]
            if u.get("images") is not None and not os.path.isabs(u["images"]):
                u["images"] = str(Path(base, u["images"]))
            units.append(UnitConfig(**u))
        names = [u.name for u in units]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MixtureError(f"{where}: units: duplicate unit name(s) {dup}")
        if sum(u.weight for u in units) <= 0:
            raise MixtureError(f"{where}: units: at least one weight must be positive")
        seed = raw.get("seed", 0)
        size = raw.get("epoch_size")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise MixtureError(f"{where}: seed: expected an integer >= 0, got {seed!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise MixtureError(f"{where}: epoch_size: expected a positive integer, got {size!r}")
        builder = raw.get("builder") or {}
        if not isinstance(builder, dict):
            raise MixtureError(f"{where}: builder: expected a mapping")
        try:
            build = BuildConfig.from_dict(builder)
        except (TypeError, ValueError) as err:
            raise MixtureError(f"{where}: {err}") from None
        for i, unit in enumerate(units):  # every (form, kind) a unit can draw has prompts in its set
            if unit.type == "conversation":
                continue
            name = unit.prompt_set or build.prompt_set
            at = f"{where}: units[{i}]" + (".prompt_set" if unit.prompt_set else f" (builder.prompt_set {name!r})")
            try:
                task = get_prompt_set(name).task(unit.type)
                for kind in unit.target_box_kinds:
                    for form in task.forms:
                        task.get(form, kind)
            except KeyError as err:
                raise MixtureError(f"{at}: {err.args[0]}") from None
        return cls(units=units, seed=seed, epoch_size=size, builder=builder)


def override_prompt_set(raw: Any, prompt_set: str) -> Any:
    """A copy of the mixture mapping ``raw`` whose builder and units all use ``prompt_set``."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    builder = raw.get("builder")
    raw["builder"] = {**(builder if isinstance(builder, dict) else {}), "prompt_set": prompt_set}
    if isinstance(raw.get("units"), list):
        raw["units"] = [{k: v for k, v in u.items() if k != "prompt_set"} if isinstance(u, dict) else u
                        for u in raw["units"]]
    return raw


# ---- record stores: random access without loading every record -------------------------------------------

class JsonlStore:
    """Random access to a JSON Lines file through a table of line offsets (one int64 per record)."""

    def __init__(self, path: str):
        self.path = path
        offsets, line_nos = [], []
        pos = 0
        try:
            with open(path, "rb") as fh:
                for line_no, line in enumerate(fh, 1):
                    if line.strip():
                        offsets.append(pos)
                        line_nos.append(line_no)
                    pos += len(line)
        except FileNotFoundError:
            raise MixtureError(f"{path}: unit file not found") from None
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.line_nos = np.asarray(line_nos, dtype=np.int64)
        self._fh = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> dict:
        if self._fh is None or self._pid != os.getpid():  # one handle per DataLoader worker process
            self._fh, self._pid = open(self.path, "rb"), os.getpid()
        self._fh.seek(int(self.offsets[i]))
        return json.loads(self._fh.readline())

    def __iter__(self) -> Iterator[dict]:
        for _, rec in iter_jsonl(self.path):
            yield rec

    def where(self, i: int) -> str:
        """``file:line`` of record ``i`` (for error messages)."""
        return f"{self.path}:{int(self.line_nos[i])}"

    def __getstate__(self) -> dict:  # picklable for DataLoader workers (file handles are reopened)
        return {**self.__dict__, "_fh": None, "_pid": None}


class CocoStore:
    """A COCO detection file as per-image records::

        {"id": image id, "image": file_name, "width": W, "height": H,
         "labels": [category name, ...], "quads": [[8 floats], ...], "difficult": [0|1|2, ...],
         "categories": [all category names of the file, in id order]}
    """

    def __init__(self, path: str):
        try:
            coco, lines = read_coco(path)
        except FileNotFoundError:
            raise MixtureError(f"{path}: unit file not found") from None
        except RecordError as err:
            raise MixtureError(str(err)) from None
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco.get(k), list)]
        if missing:
            raise MixtureError(f"{path}: not a COCO detection file (no {', '.join(missing)} list); "
                               f"check it with `rscovlm data validate`")
        self.path = path
        self._lines = lines.get("images", [])
        self.info = coco.get("info") or {}
        try:
            cats = sorted(coco["categories"], key=lambda c: c["id"])
            self.categories = [c["name"] for c in cats]
            name = {c["id"]: c["name"] for c in cats}
            by_image: dict[Any, list[dict]] = defaultdict(list)
            for ann in coco["annotations"]:
                by_image[ann["image_id"]].append(ann)
            self.images = coco["images"]
            self._anns = [by_image.get(img["id"], []) for img in self.images]
        except (KeyError, TypeError) as err:
            raise MixtureError(f"{path}: malformed COCO element ({type(err).__name__}: {err}); "
                               f"check it with `rscovlm data validate`") from None
        self._name = name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        img, anns = self.images[i], self._anns[i]
        return {"id": img["id"], "image": img["file_name"], "width": img["width"], "height": img["height"],
                "labels": [self._name[a["category_id"]] for a in anns],
                "quads": [a["segmentation"][0] for a in anns],
                "difficult": [int(a.get("difficult", 0)) for a in anns],
                "categories": self.categories}

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def where(self, i: int) -> str:
        """``file:line`` of image entry ``i`` (for error messages)."""
        return f"{self.path}:{self._lines[i]}" if i < len(self._lines) else f"{self.path}: images[{i}]"


class SubsetStore:
    """A record store restricted to some of its records (those the pre-flight image check left in); indices,
    ``where`` and iteration are over the kept records; other attributes are the full store's."""

    def __init__(self, store, keep: np.ndarray):
        self.base, self.keep = store, np.asarray(keep, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> dict:
        return self.base[int(self.keep[i])]

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def where(self, i: int) -> str:
        return self.base.where(int(self.keep[i]))

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("base", "keep"):
            raise AttributeError(name)
        return getattr(self.base, name)


def open_store(unit: UnitConfig):
    return CocoStore(unit.path) if unit.type == "detection" else JsonlStore(unit.path)


# ---- the mixture ---------------------------------------------------------------------------------------------

class Mixture:
    """Units + their stores + the per-epoch sample sequence (see module docstring)."""

    def __init__(self, config: MixtureConfig):
        self.config = config
        self.units = config.units
        self.stores = [open_store(u) for u in self.units]
        empty = [u.name for u, s in zip(self.units, self.stores) if len(s) == 0 and u.weight > 0]
        if empty:
            raise MixtureError(f"units with a positive weight but no records: {empty}")
        w = np.array([u.weight for u in self.units], dtype=np.float64)
        self.probabilities = w / w.sum()
        self.epoch_size = config.epoch_size or int(sum(self.n_items(u) for u in range(len(self.units))))
        self._plan_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None) -> "Mixture":
        return cls(MixtureConfig.from_yaml(path, prompt_set))

    def n_items(self, u: int) -> int:
        """Samples of unit ``u`` per pass: records x box kinds."""
        return len(self.stores[u]) * len(self.units[u].target_box_kinds)

    def item(self, u: int, item: int) -> tuple[int, str | None]:
        """``(record index, box kind)`` of sample ``item`` of unit ``u`` (kind-major: every record as the first
        kind, then as the second, ...)."""
        n = len(self.stores[u])
        return item % n, self.units[u].target_box_kinds[item // n]

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(unit_ids, item_ids)`` of every position of ``epoch`` (length ``epoch_size``); an item is a record
        and box kind (:meth:`item`)."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1], self._plan_cache[2]
        rng = np.random.default_rng([self.config.seed, epoch])
        units = rng.choice(len(self.units), size=self.epoch_size, p=self.probabilities).astype(np.int32)
        records = np.empty(self.epoch_size, dtype=np.int64)
        for u, store in enumerate(self.stores):
            where = np.flatnonzero(units == u)
            if len(where) == 0:
                continue
            n = self.n_items(u)
            reps = -(-len(where) // n)
            order = np.concatenate([rng.permutation(n) for _ in range(reps)])[: len(where)]
            records[where] = order
        self._plan_cache = (epoch, units, records)
        return units, records

    def locate(self, epoch: int, position: int) -> tuple[int, int]:
        """``(unit index, item index)`` at ``position`` of ``epoch`` (:meth:`item` gives its record and kind)."""
        units, records = self.epoch_plan(epoch)
        return int(units[position]), int(records[position])

    def sample_rng(self, epoch: int, position: int) -> np.random.Generator:
        """The generator of one sample's random choices: a function of (seed, epoch, position) only."""
        return np.random.default_rng([self.config.seed, epoch, position, 1])

    # ---- pre-flight image check (rscovlm.train.preflight) ------------------------------------------------
    def image_paths(self, u: int, record: dict) -> list[tuple[str, tuple[int, int] | None]]:
        """``(file, (width, height) the record states or None)`` of each image of ``record`` of unit ``u``, the
        file as the sample builder opens it."""
        unit = self.units[u]
        if unit.type == "detection":
            images = [(record["image"], (record["width"], record["height"]))]
        elif unit.type == "grounding":
            images = [(grounding_image_path(record), (record["image_width"], record["image_height"]))]
        else:
            rels = [p["image"] for m in record["messages"] for p in content_parts(m["content"])
                    if p.get("type") == "image"]
            sizes = record.get("image_sizes") or [None] * len(rels)
            images = list(zip(rels, sizes))
        return [(SampleBuilder.image_path(unit, rel), None if size is None else (int(size[0]), int(size[1])))
                for rel, size in images]

    def image_references(self):
        """Every image reference of every record of the units with a positive weight, with the size the record
        states; key ``(unit, record)``."""
        from rscovlm.train.preflight import ImageRef

        for u, (unit, store) in enumerate(zip(self.units, self.stores)):
            if unit.weight <= 0:
                continue
            for i in range(len(store)):
                try:
                    images = self.image_paths(u, store[i])
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                    raise MixtureError(f"{store.where(i)}: unit {unit.name}: no usable image path or size in the "
                                       f"record ({type(err).__name__}: {err}); check it with `rscovlm data "
                                       "validate`") from None
                for path, size in images:
                    yield ImageRef(path, store.where(i), (u, i), size)

    def drop_records(self, keys) -> int:
        """Remove the records ``(unit, record)`` in ``keys`` from their units (the epoch plan is redrawn; an unset
        ``epoch_size`` shrinks with them). Returns how many were removed."""
        by_unit: dict[int, set[int]] = defaultdict(set)
        for u, i in keys:
            by_unit[u].add(i)
        removed = 0
        for u, drop in by_unit.items():
            store = self.stores[u]
            keep = np.array([i for i in range(len(store)) if i not in drop], dtype=np.int64)
            removed += len(store) - len(keep)
            if isinstance(store, SubsetStore):
                self.stores[u] = SubsetStore(store.base, store.keep[keep])
            else:
                self.stores[u] = SubsetStore(store, keep)
        empty = [u.name for u, s in zip(self.units, self.stores) if len(s) == 0 and u.weight > 0]
        if empty:
            raise MixtureError(f"units with a positive weight have no records left after dropping those with "
                               f"unusable images: {empty}")
        if self.config.epoch_size is None:
            self.epoch_size = int(sum(self.n_items(u) for u in range(len(self.units))))
        self._plan_cache = None
        return removed

    # ---- statistics ----------------------------------------------------------------------------------------
    def unit_composition(self, u: int) -> Counter:
        """Counter of ``(source, task, box_kind)`` over the samples (records x box kinds) of unit ``u``."""
        unit, store = self.units[u], self.stores[u]
        comp: Counter = Counter()
        if unit.type == "detection":
            coco = isinstance(getattr(store, "base", store), CocoStore)
            src = unit.source or (store.info.get("source") if coco else None) or unit.name
            for kind in unit.target_box_kinds:
                comp[(src, unit.task or "detection", kind)] += len(store)
            return comp
        for rec in store:
            if unit.type == "grounding":
                for kind in unit.target_box_kinds:
                    comp[(unit.source or rec.get("source") or rec.get("dataset") or unit.name,
                          unit.task or "grounding", kind)] += 1
            else:
                kinds = sorted({b.get("kind") for b in rec.get("boxes") or []})
                comp[(unit.source or rec.get("source") or unit.name, unit.task or rec.get("task") or "chat",
                      "+".join(kinds) if kinds else "none")] += 1
        return comp

    def unit_prompt_set(self, u: int) -> str | None:
        """The prompt set name unit ``u`` builds with (None for conversations)."""
        unit = self.units[u]
        if unit.type == "conversation":
            return None
        return unit.prompt_set or BuildConfig.from_dict(self.config.builder).prompt_set

    def prompt_sets(self) -> list[dict]:
        """What a run records about its prompt sets: one entry per set used by a unit with a positive weight,
        :func:`rscovlm.data.builder.prompt_set_record` plus the ``units`` that use it."""
        from rscovlm.data.builder import prompt_set_record

        out: dict[str, dict] = {}
        for u, unit in enumerate(self.units):
            name = self.unit_prompt_set(u)
            if name is None or unit.weight <= 0:
                continue
            record = prompt_set_record(get_prompt_set(name))
            entry = out.setdefault(record["path"] + record["sha256"], {**record, "units": []})
            entry["units"].append(unit.name)
        return list(out.values())

    def stats(self) -> dict:
        """Effective proportions of the sample stream by unit, source, task and box kind, and how many times an
        epoch shows each unit's samples (``passes``; above 1 = up-sampled)."""
        out: dict[str, Any] = {"epoch_size": self.epoch_size, "seed": self.config.seed, "units": [],
                               "source": Counter(), "task": Counter(), "box_kind": Counter()}
        for u, unit in enumerate(self.units):
            comp = self.unit_composition(u)
            n = sum(comp.values())
            p = float(self.probabilities[u])
            out["units"].append({"name": unit.name, "type": unit.type, "records": len(self.stores[u]),
                                 "samples": n, "weight": unit.weight, "proportion": p,
                                 "passes": p * self.epoch_size / n if n else 0.0,
                                 "prompt_set": self.unit_prompt_set(u)})
            for (src, task, kind), k in comp.items():
                share = p * k / n
                out["source"][src] += share
                out["task"][task] += share
                out["box_kind"][kind] += share
        for key in ("source", "task", "box_kind"):
            out[key] = dict(sorted(out[key].items(), key=lambda kv: (-kv[1], kv[0])))
        return out


def format_stats(stats: dict) -> str:
    """The table printed by ``rscovlm data mix-stats`` (``samples`` = records x box kinds; ``passes`` over the
    samples)."""
    lines = [f"epoch size {stats['epoch_size']}, seed {stats['seed']}", "",
             f"{'unit':24s} {'type':12s} {'records':>9s} {'samples':>9s} {'weight':>7s} {'share':>7s} "
             f"{'passes':>7s}  prompt set"]
    for u in stats["units"]:
        lines.append(f"{u['name']:24s} {u['type']:12s} {u['records']:>9d} {u['samples']:>9d} {u['weight']:>7g} "
                     f"{100 * u['proportion']:>6.2f}% {u['passes']:>7.2f}  {u['prompt_set'] or '-'}")
    for key, title in (("source", "by source"), ("task", "by task"), ("box_kind", "by box kind")):
        lines += ["", title]
        lines += [f"  {name:30s} {100 * share:>6.2f}%" for name, share in stats[key].items()]
    return "\n".join(lines)


# ---- per-rank order and the dataset -----------------------------------------------------------------------

def rank_positions(epoch_size: int, rank: int, world_size: int) -> np.ndarray:
    """Global positions served by ``rank``: ``rank, rank + W, ...`` over the first ``W * (size // W)``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world size {world_size}")
    per_rank = epoch_size // world_size
    return np.arange(rank, per_rank * world_size, world_size, dtype=np.int64)


class MixtureSampler:
    """Resumable per-rank order of global positions; one ``iter()`` runs one epoch and advances to the next.

    ``state_dict()`` = ``{"epoch", "position", "seed", "world_size"}`` where ``position`` counts the positions this
    rank has already yielded in ``epoch``; a new sampler with ``load_state_dict`` continues with the next one.
    (A DataLoader prefetches, so save the state from the number of samples the training loop has consumed:
    ``{"epoch": e, "position": consumed_in_epoch}``.)"""

    def __init__(self, mixture: Mixture, rank: int = 0, world_size: int = 1, epoch: int = 0):
        self.mixture, self.rank, self.world_size = mixture, rank, world_size
        self.epoch, self.position = epoch, 0
        self._positions = rank_positions(mixture.epoch_size, rank, world_size)

    def __len__(self) -> int:
        return len(self._positions)

    def __iter__(self) -> Iterator[int]:
        while self.position < len(self._positions):
            pos = int(self._positions[self.position])
            self.position += 1
            yield pos
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.mixture.config.seed,
                "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed") != self.mixture.config.seed or state.get("world_size") != self.world_size:
            raise ValueError(f"state {state} was saved with another seed or world size "
                             f"(now seed {self.mixture.config.seed}, world size {self.world_size})")
        if not 0 <= state["position"] <= len(self._positions):
            raise ValueError(f"position {state['position']} out of range for {len(self._positions)} per rank")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class MixtureDataset:
    """Map-style dataset over the positions of the current epoch: ``ds[pos]`` is the built conversation of the
    record at ``pos`` (see :class:`rscovlm.data.builder.SampleBuilder`). Call ``set_epoch`` at each epoch (the
    sampler's epoch) - the unit order and every random choice change with it."""

    def __init__(self, mixture: Mixture, builder=None, mode: Literal["train", "eval"] = "train", epoch: int = 0):
        if builder is None:
            builder = SampleBuilder(BuildConfig.from_dict(mixture.config.builder))
        self.mixture, self.builder, self.mode, self.epoch = mixture, builder, mode, epoch

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None, **kwargs) -> "MixtureDataset":
        return cls(Mixture.from_yaml(path, prompt_set), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def image_references(self):
        """See :meth:`Mixture.image_references` (the pre-flight protocol of :mod:`rscovlm.train.preflight`)."""
        return self.mixture.image_references()

    def drop_records(self, keys) -> int:
        """See :meth:`Mixture.drop_records`."""
        return self.mixture.drop_records(keys)

    def prompt_sets(self) -> list[dict]:
        """See :meth:`Mixture.prompt_sets` (recorded by the trainer with the run's outputs)."""
        return self.mixture.prompt_sets()

    def where(self, position: int) -> str:
        """``file:line`` of the record at ``position`` of the current epoch."""
        u, item = self.mixture.locate(self.epoch, position)
        return self.mixture.stores[u].where(self.mixture.item(u, item)[0])

    def __len__(self) -> int:
        return self.mixture.epoch_size

    def __getitem__(self, position: int) -> dict:
        if not 0 <= position < len(self):
            raise IndexError(position)
        u, item = self.mixture.locate(self.epoch, position)
        i, kind = self.mixture.item(u, item)
        unit, store = self.mixture.units[u], self.mixture.stores[u]
        rng = self.mixture.sample_rng(self.epoch, position)
        try:
            return self.builder.build(store[i], unit, rng=rng if self.mode == "train" else None, box_kind=kind)
        except (BuildError, KeyError, TypeError, ValueError, IndexError, OSError) as err:
            # a record the builder cannot use: say which one (run `rscovlm data validate` on the unit file)
            raise BuildError(f"{store.where(i)}: unit {unit.name}: {type(err).__name__}: {err}") from err


# ---- the trainer's data source -----------------------------------------------------------------------------

def _register_training_source() -> None:
    from rscovlm.train.sources import register_source

    @register_source("mixture", family_aware=True)
    def build_mixture_source(cfg, seed: int, family=None) -> MixtureDataset:
        """``data.source: mixture`` in a training config: ``data.paths`` = [the mixture YAML]; ``data.options`` may
        override the YAML's ``seed`` / ``epoch_size`` and any builder option. The builder takes the trainer's
        ``min_pixels`` / ``max_pixels`` and hands the collator images already resized to the model frame of
        the targets (``load_images``). ``family`` (the :class:`~rscovlm.model.families.ModelFamily` of the
        checkpoint being trained, passed by the trainer) sets the builder's ``family``, i.e. the side factor and
        the box frame of the targets; a ``family`` option in the YAML's ``builder`` or in ``data.options`` that
        names another family is an error. The trainer calls ``set_epoch`` each epoch (accelerate forwards it
        to the dataset), which redraws the mixture."""
        if len(cfg.paths) != 1:
            raise ValueError(f"data.source 'mixture' takes one mixture YAML in data.paths, got {cfg.paths}")
        path = Path(cfg.paths[0])
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        if raw is None:
            raise MixtureError(f"{path}: mixture file not found or empty")
        options = dict(cfg.options)
        for key in ("seed", "epoch_size"):
            if key in options:
                raw[key] = options.pop(key)
        builder = {**(raw.get("builder") or {}), "min_pixels": cfg.min_pixels,
                   "max_pixels": cfg.max_pixels, "load_images": True, **options}
        if family is not None:
            _check_family(family, (raw.get("builder") or {}).get("family"), f"{path}: builder.family")
            _check_family(family, cfg.options.get("family"), "data.options.family")
            builder["family"] = family.name
        raw["builder"] = builder
        return MixtureDataset(Mixture(MixtureConfig.from_dict(raw, base=path.parent, where=str(path))))


def _check_family(family, forced, where: str) -> None:
    """``forced`` (a family name set by the user, or None) must be ``family``, the model being trained."""
    from rscovlm.model.families import family_for

    if forced is None:
        return
    try:
        same = family_for(forced).name == family.name
    except (KeyError, TypeError):
        same = False
    if not same:
        raise MixtureError(f"{where}={forced!r}, but the model being trained is a {family.name} model (box frame "
                           f"{family.box_frame}, side factor {family.factor}); targets built for another family "
                           "would teach wrong coordinates. Remove the option: the trainer sets it from the checkpoint")


_register_training_source()
