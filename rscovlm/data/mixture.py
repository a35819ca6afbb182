"""Weighted online mixture of subset units (paper 3.2.3).

A mixture YAML lists *subset units* - one unified record file (or several of the same kind) each - with a
sampling weight::

    seed: 0
    data_root: /data/rscovlm     # optional; ${data_root} in a unit's path / images is replaced by it
    epoch_size: 20000            # samples per epoch (default: the total number of samples of the units)
    builder: {prompt_set: reference, plain_prob: 1.0}   # the online sample builder's options (BuildConfig)
    units:
      - name: dota_det
        path: ${data_root}/unified/dota_trainval512.json   # relative paths: relative to the YAML's folder
        type: detection          # conversation | detection | grounding
        converter: dota          # how the file is made (`rscovlm data convert --source dota`); shown in messages
        images: ${data_root}/split_ss_dota_512/trainval/images
        weight: 2.0
        box_kinds: [hbb, obb, quad]  # one sample per record and kind (or box_kind: quad; defaults quad, hbb)
        random_resize_prob: 0.5  # any option of rscovlm.data.builder.UNIT_OPTIONS, for this unit only
      - {name: geochat, path: [a.jsonl, b.jsonl], type: conversation, images: /data/geochat, weight: 1.0}

``data_root`` makes one folder the home of every unit: a relative ``data_root`` in the YAML is relative to the
YAML's folder; the one given to :meth:`MixtureConfig.from_yaml` (``rscovlm data mix-stats --data-root``, the
training config's ``data.data_root``) replaces it and is relative to the current directory. Before anything is
read, every unit file and image folder of the units in use (weight or rate above 0) must exist: the error lists
each missing one with its unit and the path expected (and the command that makes it when ``converter`` is set).

A unit's *samples* are its records times its box kinds (item ``k * n_records + r`` is record ``r`` as the
``k``-th kind, the reference's kind-major order). Two ways to say how often a unit is drawn - one per mixture:

* ``weight`` (normalized shares): ``weight`` is the unit's share of the sample stream - a unit of weight 2 gives
  twice as many samples as a unit of weight 1 whatever their sizes (normalized over the units). Each epoch ``e``
  draws a fresh sequence of ``epoch_size`` positions from ``numpy.random.default_rng([seed, e])``: every position
  picks a unit with probability ``weight / sum``, and each unit serves its samples in a fresh random permutation
  (cycled when the unit is drawn more often than it has samples), so samples repeat only when a unit is
  up-sampled.
* ``rate`` (the reference's sampling rates, relative to the unit's own size; VisionXLab/RSCoVLM
  ``parse_sampling_rate`` / ``random_sample``): ``rate: "%P"`` keeps ``int(n * (P / 100.0))`` records of each
  file of ``n`` records (truncated toward zero, as the reference computes it), chosen once for the whole run by
  ``random.Random(rate_seed).sample(range(n), k)`` - with ``rate_seed: 42`` (the default: the reference turns any
  given seed into 42) and records in the reference's order, the same records as the reference; ``rate: "*N"``
  repeats every record ``N`` times; no rate is ``*1``. The name suffix form of the reference (``name: vhm%50``)
  means the same. The kept records are multiplied by the box kinds (the reference samples DOTA images before
  making one sample per kind); an epoch is every selected sample once, in an order drawn from
  ``numpy.random.default_rng([seed, e])`` (as the reference's Trainer shuffles its concatenated datasets), so
  ``epoch_size`` is the sum and cannot be set.

The sequence is a pure function of ``(config, epoch)``: every rank computes the same one without communication.
Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the first ``W * (epoch_size // W)`` positions
(disjoint, equal counts; at most ``W - 1`` trailing positions are left out). Resuming needs only
``(epoch, position)``.

Everything here is torch-free. :class:`MixtureDataset` has ``__len__`` / ``__getitem__`` (a map-style dataset
for ``torch.utils.data.DataLoader`` or the HF Trainer) and builds each sample with a generator seeded by
``(seed, epoch, position)``, so a sample is the same whichever rank or worker builds it; its items may also be
addressed as ``ds[(epoch, position)]``, independent of ``set_epoch``. :class:`MixtureSampler` is the per-rank,
resumable order of positions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import yaml

from rscovlm.data.builder import UNIT_OPTIONS, BuildConfig, BuildError, SampleBuilder, check_options
from rscovlm.protocol.prompt_sets import get_prompt_set
from rscovlm.data.records import (
    RECORD_KINDS, ImageRef, RecordError, content_parts, grounding_image_path, iter_jsonl, read_coco,
)


class MixtureError(ValueError):
    """A mixture config or unit file that cannot be used (the message names the file and field)."""


@dataclass
class UnitConfig:
    """One subset unit of a mixture. The builder options of :data:`rscovlm.data.builder.UNIT_OPTIONS` may be set
    per unit; left out (None) they are the mixture's ``builder:`` values."""

    name: str = field(metadata={"help": "unit name (unique in the mixture)"})
    path: str | list[str] = field(metadata={
        "help": "unified record file, or a list of files of the same kind read one after the other; relative "
                "paths are relative to the YAML's folder; ${data_root} is the mixture's data_root"})
    type: Literal["conversation", "detection", "grounding"] = field(metadata={"help": "record kind of the file"})
    weight: float = field(default=1.0, metadata={"help": "share of the sample stream (normalized over units)"})
    rate: str | None = field(default=None, metadata={
        "help": "the reference's sampling rate relative to the unit's size: '%P' keeps int(n * P / 100) records of "
                "each file, '*N' repeats every record N times (instead of weight; module docstring)"})
    converter: str | None = field(default=None, metadata={
        "help": "how the unit file is made: a `rscovlm data convert --source` name (or another tool's name); "
                "named in the error when the file is missing"})
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
    def paths(self) -> list[str]:
        """The unit's record files."""
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def rate_value(self) -> float:
        """The sampling rate as a number (``%50`` -> 0.5, ``*3`` -> 3, none -> 1)."""
        return parse_rate(self.rate, self.name)[1] if self.rate is not None else 1.0

    @property
    def active(self) -> bool:
        """Whether the unit is drawn at all (weight above 0; a rate other than ``*0``)."""
        return self.rate_value > 0 if self.rate is not None else self.weight > 0

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
    data_root: str | None = field(default=None, metadata={
        "help": "folder that ${data_root} in unit paths stands for (relative: to the YAML's folder)"})
    rate_seed: int = field(default=42, metadata={
        "help": "seed of the '%P' record subsets (the reference uses 42 whenever a seed is given)"})

    @property
    def mode(self) -> Literal["weight", "rate"]:
        """``rate`` when any unit has a reference rate, else ``weight``."""
        return "rate" if any(u.rate is not None for u in self.units) else "weight"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None,
                  data_root: str | os.PathLike | None = None) -> "MixtureConfig":
        """The mixture of the YAML file ``path``; ``prompt_set`` (a name or folder) replaces the prompt set of the
        builder and of every unit; ``data_root`` (relative: to the current directory) replaces the YAML's."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MixtureError(f"{path}: no such mixture file") from None
        except yaml.YAMLError as err:
            raise MixtureError(f"{path}: not valid YAML ({err})") from None
        if prompt_set is not None:
            raw = override_prompt_set(raw, prompt_set)
        return cls.from_dict(raw, base=path.parent, where=str(path), data_root=data_root)

    @classmethod
    def from_dict(cls, raw: Any, base: str | os.PathLike = ".", where: str = "mixture",
                  data_root: str | os.PathLike | None = None) -> "MixtureConfig":
        """The mixture of the mapping ``raw`` (a YAML document); relative paths are relative to ``base``;
        ``data_root`` replaces ``raw['data_root']`` (relative: to the current directory)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("units"), list) or not raw["units"]:
            raise MixtureError(f"{where}: units: required non-empty list of subset units")
        known = {f.name for f in fields(cls)}
        extra = set(raw) - known
        if extra:
            raise MixtureError(f"{where}: unknown key(s) {sorted(extra)}; expected {sorted(known)}")
        root = _data_root(raw.get("data_root"), data_root, base, where)
        unit_fields = {f.name for f in fields(UnitConfig)}
        units = []
        for i, u in enumerate(raw["units"]):
            at = f"{where}: units[{i}]"
            if not isinstance(u, dict):
                raise MixtureError(f"{at}: expected a mapping")
            extra = set(u) - unit_fields
            if extra:
                raise MixtureError(f"{at}: unknown key(s) {sorted(extra)}; expected {sorted(unit_fields)}")
            for key in ("name", "type"):
                if not isinstance(u.get(key), str) or not u[key]:
                    raise MixtureError(f"{at}.{key}: required string")
            paths = u.get("path")
            if not (isinstance(paths, str) and paths) and not (
                    isinstance(paths, list) and paths and all(isinstance(x, str) and x for x in paths)):
                raise MixtureError(f"{at}.path: required string or non-empty list of strings")
            u = dict(u)
            name_rate = RATE_SUFFIX.search(u["name"])
            if name_rate:
                if u.get("rate") is not None:
                    raise MixtureError(f"{at}.name: {u['name']!r} carries a rate suffix and the unit has rate "
                                       f"{u['rate']!r}; give one")
                u["name"], u["rate"] = u["name"][:name_rate.start()], name_rate.group(0)
                if not u["name"]:
                    raise MixtureError(f"{at}.name: empty name before the rate suffix {name_rate.group(0)!r}")
            if u.get("rate") is not None:
                if "weight" in u:
                    raise MixtureError(f"{at}: give weight or rate, not both")
                try:
                    parse_rate(u["rate"], f"{at}.rate")
                except ValueError as err:
                    raise MixtureError(str(err)) from None
                u["rate"] = str(u["rate"]).strip()
            for key in ("converter",):
                if u.get(key) is not None and not isinstance(u[key], str):
                    raise MixtureError(f"{at}.{key}: expected a string, got {u[key]!r}")
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
            u["path"] = _resolve(u["path"], root, base, f"{at}.path")
            if u.get("images") is not None:
                if not isinstance(u["images"], str):
                    raise MixtureError(f"{at}.images: expected a folder path, got {u['images']!r}")
                u["images"] = _resolve(u["images"], root, base, f"{at}.images")
            units.append(UnitConfig(**u))
        names = [u.name for u in units]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MixtureError(f"{where}: units: duplicate unit name(s) {dup}")
        rated = [u.name for u in units if u.rate is not None]
        if rated and len(rated) < len(units):
            weighted = [u for u, r in zip(raw["units"], units) if r.rate is None and "weight" in u]
            if weighted:
                raise MixtureError(f"{where}: units {rated} have reference rates and unit "
                                   f"{weighted[0]['name']!r} a weight: a mixture uses one of the two (a unit "
                                   "without either is '*1' in a rate mixture)")
        if not any(u.active for u in units):
            raise MixtureError(f"{where}: units: at least one weight must be positive")
        seed = raw.get("seed", 0)
        size = raw.get("epoch_size")
        rate_seed = raw.get("rate_seed", 42)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise MixtureError(f"{where}: seed: expected an integer >= 0, got {seed!r}")
        if not isinstance(rate_seed, int) or isinstance(rate_seed, bool):
            raise MixtureError(f"{where}: rate_seed: expected an integer, got {rate_seed!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise MixtureError(f"{where}: epoch_size: expected a positive integer, got {size!r}")
        if size is not None and rated:
            raise MixtureError(f"{where}: epoch_size: a mixture with reference rates has the epoch its rates make "
                               f"(every selected sample once); remove epoch_size or use weights")
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
        return cls(units=units, seed=seed, epoch_size=size, builder=builder,
                   data_root=str(root) if root is not None else None, rate_seed=rate_seed)


#: the reference's rate forms, as a name suffix (``vhm_dataset%50``, ``dota*2``) or a unit's ``rate``
RATE_SUFFIX = re.compile(r"%([\d.]+)$|\*(\d+)$")


def parse_rate(value: Any, where: str = "rate") -> tuple[str, float]:
    """``(kind, number)`` of a reference sampling rate: ``'%P'`` -> ``('%', P / 100.0)`` with ``0 < P <= 100``,
    ``'*N'`` -> ``('*', N)`` with ``N`` a non-negative integer (``*0``: the unit is off), exactly as the
    reference's ``parse_sampling_rate`` reads the suffix of a dataset name."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    match = re.fullmatch(r"%([\d.]+)|\*(\d+)", text or "")
    if match is None:
        raise ValueError(f"{where}: expected '%P' (a percentage of the unit's records, 0 < P <= 100) or '*N' "
                         f"(every record N times), got {value!r}")
    if match.group(1) is not None:
        try:
            pct = float(match.group(1))
        except ValueError:
            raise ValueError(f"{where}: {value!r}: {match.group(1)!r} is not a number") from None
        if not 0 < pct <= 100:
            raise ValueError(f"{where}: {value!r}: the percentage must be in (0, 100]")
        return "%", pct / 100.0
    return "*", float(int(match.group(2)))


def _data_root(declared: Any, override: str | os.PathLike | None, base, where: str) -> Path | None:
    if override is not None:
        return Path(os.path.abspath(override))
    if declared is None:
        return None
    if not isinstance(declared, str) or not declared:
        raise MixtureError(f"{where}: data_root: expected a folder path, got {declared!r}")
    return Path(os.path.normpath(Path(base, declared))) if not os.path.isabs(declared) else Path(declared)


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _resolve(value: str | list[str], root: Path | None, base, where: str) -> str | list[str]:
    """``value`` (a path or a list of paths) with ``${data_root}`` replaced and made absolute against ``base``."""
    if isinstance(value, list):
        return [_resolve(v, root, base, f"{where}[{i}]") for i, v in enumerate(value)]
    for match in _VARIABLE.finditer(value):
        if match.group(1) != "data_root":
            raise MixtureError(f"{where}: unknown variable ${{{match.group(1)}}} in {value!r}; the only one is "
                               "${data_root}")
        if root is None:
            raise MixtureError(f"{where}: {value!r} uses ${{data_root}} but the mixture sets no data_root (give "
                               "data_root in the YAML, --data-root, or data.data_root in a training config)")
    value = _VARIABLE.sub(lambda m: str(root), value)
    return os.path.normpath(Path(base, value)) if not os.path.isabs(value) else os.path.normpath(value)


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


class MultiStore:
    """The record files of a unit with several ``path`` entries read as one store: the records of the first file,
    then those of the second, ... (``where`` names the file and line of each)."""

    def __init__(self, parts: list):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(part) for part in parts]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[Any, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k], int(i - self.starts[k])

    def __getitem__(self, i: int) -> dict:
        part, j = self._locate(int(i))
        return part[j]

    def __iter__(self) -> Iterator[dict]:
        for part in self.parts:
            yield from part

    def where(self, i: int) -> str:
        part, j = self._locate(int(i))
        return part.where(j)

    def __getattr__(self, name: str):  # info, categories: the first file's
        if name.startswith("__") or name in ("parts", "starts"):
            raise AttributeError(name)
        return getattr(self.parts[0], name)


class EmptyStore:
    """The store of a unit that is not drawn (weight 0, rate ``*0``): its files are not read, not even needed."""

    def __init__(self, unit: UnitConfig):
        self.path = unit.paths[0]

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[dict]:
        return iter(())

    def __getitem__(self, i: int) -> dict:
        raise IndexError(i)

    def where(self, i: int) -> str:
        return self.path


def open_store(unit: UnitConfig):
    """The record store of ``unit`` (:class:`MultiStore` over its files when it has several)."""
    if not unit.active:
        return EmptyStore(unit)
    kind = CocoStore if unit.type == "detection" else JsonlStore
    stores = [kind(path) for path in unit.paths]
    return stores[0] if len(stores) == 1 else MultiStore(stores)


def file_counts(store) -> list[int]:
    """Records of each file of ``store``, in order (a :class:`SubsetStore` counts the records it kept)."""
    if isinstance(store, MultiStore):
        return [len(part) for part in store.parts]
    if isinstance(store, SubsetStore) and isinstance(store.base, MultiStore):
        files = np.searchsorted(store.base.starts, store.keep, side="right") - 1
        return np.bincount(files, minlength=len(store.base.parts)).astype(int).tolist()
    return [len(store)]


def missing_data(units: list[UnitConfig]) -> list[str]:
    """One line per unit file or image folder of a drawn unit that is not there (unit name, the path expected
    and, with a ``converter``, the command that makes the file)."""
    from rscovlm.data.converters import CONVERTERS

    lines = []
    for unit in units:
        if not unit.active:
            continue
        for path in unit.paths:
            if not os.path.isfile(path):
                made = ""
                if unit.converter in CONVERTERS:
                    made = (f"; make it with `rscovlm data convert --source {unit.converter} --in <the source's "
                            f"files> --out {path}`")
                elif unit.converter:
                    made = f"; it is made by {unit.converter}"
                lines.append(f"unit {unit.name}: unit file not found: {path}{made}")
        if unit.images is not None and not os.path.isdir(unit.images):
            lines.append(f"unit {unit.name}: image folder not found: {unit.images}")
    return lines


# ---- the mixture ---------------------------------------------------------------------------------------------

class Mixture:
    """Units + their stores + the per-epoch sample sequence (see module docstring)."""

    def __init__(self, config: MixtureConfig):
        self.config = config
        self.units = config.units
        missing = missing_data(self.units)
        if missing:
            raise MixtureError(f"{len(missing)} missing file(s) or folder(s) of the mixture's units (data root "
                               f"{config.data_root or 'not set'}):\n  " + "\n  ".join(missing))
        self.stores = [open_store(u) for u in self.units]
        empty = [u.name for u, s in zip(self.units, self.stores) if len(s) == 0 and u.active]
        if empty:
            raise MixtureError(f"units with a positive weight but no records: {empty}")
        self._setup()
        self._plan_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _setup(self) -> None:
        """Probabilities (weight mode), the selected samples of every unit (rate mode) and the epoch size."""
        self.mode = self.config.mode
        if self.mode == "rate":
            self.selected = [self._select(u) for u in range(len(self.units))]
            empty = [f"{u.name} (rate {u.rate} of {len(s)} records)" for u, s, sel in
                     zip(self.units, self.stores, self.selected) if u.active and len(sel) == 0]
            if empty:
                raise MixtureError(f"units whose rate selects no record: {', '.join(empty)}")
            counts = np.array([len(sel) for sel in self.selected], dtype=np.float64)
            self.probabilities = counts / counts.sum()
            self.epoch_size = int(counts.sum())
        else:
            self.selected = None
            w = np.array([u.weight for u in self.units], dtype=np.float64)
            self.probabilities = w / w.sum()
            self.epoch_size = self.config.epoch_size or int(sum(self.n_items(u) for u in range(len(self.units))
                                                                 if self.units[u].active))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None,
                  data_root: str | os.PathLike | None = None) -> "Mixture":
        return cls(MixtureConfig.from_yaml(path, prompt_set, data_root))

    def n_items(self, u: int) -> int:
        """Samples of unit ``u`` per pass: records x box kinds."""
        return len(self.stores[u]) * len(self.units[u].target_box_kinds)

    def item(self, u: int, item: int) -> tuple[int, str | None]:
        """``(record index, box kind)`` of sample ``item`` of unit ``u`` (kind-major: every record as the first
        kind, then as the second, ...)."""
        n = len(self.stores[u])
        return item % n, self.units[u].target_box_kinds[item // n]

    def _select(self, u: int) -> np.ndarray:
        """Rate mode: the items (record x kind) unit ``u`` contributes to every epoch, as the reference's
        ``random_sample`` picks them file by file (module docstring)."""
        unit = self.units[u]
        if not unit.active:
            return np.zeros(0, dtype=np.int64)
        kind, value = parse_rate(unit.rate or "*1", unit.name)
        records: list[int] = []
        start = 0
        for n in file_counts(self.stores[u]):
            if kind == "%" and value < 1.0:
                picked = random.Random(self.config.rate_seed).sample(range(n), int(n * value))
            else:
                picked = list(range(n)) * int(value)
            records.extend(start + i for i in picked)
            start += n
        rec = np.asarray(records, dtype=np.int64)
        n_rec = len(self.stores[u])
        return np.concatenate([rec + k * n_rec for k in range(len(unit.target_box_kinds))])

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(unit_ids, item_ids)`` of every position of ``epoch`` (length ``epoch_size``); an item is a record
        and box kind (:meth:`item`)."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1], self._plan_cache[2]
        rng = np.random.default_rng([self.config.seed, epoch])
        if self.selected is not None:
            units = np.concatenate([np.full(len(sel), u, dtype=np.int32) for u, sel in enumerate(self.selected)])
            records = np.concatenate(self.selected)
            order = rng.permutation(len(units))
            units, records = units[order], records[order]
        else:
            units = rng.choice(len(self.units), size=self.epoch_size, p=self.probabilities).astype(np.int32)
            records = np.empty(self.epoch_size, dtype=np.int64)
            for u in range(len(self.units)):
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
        for u, (unit, store) in enumerate(zip(self.units, self.stores)):
            if not unit.active:
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
        empty = [u.name for u, s in zip(self.units, self.stores) if len(s) == 0 and u.active]
        if empty:
            raise MixtureError(f"units with a positive weight have no records left after dropping those with "
                               f"unusable images: {empty}")
        self._setup()
        self._plan_cache = None
        return removed

    # ---- statistics ----------------------------------------------------------------------------------------
    def unit_composition(self, u: int) -> Counter:
        """Counter of ``(source, task, box_kind)`` over the samples (records x box kinds) of unit ``u``; in a rate
        mixture each sample counts as often as the rate selects it."""
        unit, store = self.units[u], self.stores[u]
        comp: Counter = Counter()
        kinds = unit.target_box_kinds
        n = len(store)
        if self.selected is not None:
            times = np.bincount(self.selected[u], minlength=n * len(kinds)).reshape(len(kinds), n)
        else:
            times = np.ones((len(kinds), n), dtype=np.int64)
        if unit.type == "detection":
            info = getattr(store, "info", None) or {}
            src = unit.source or info.get("source") or unit.name
            for k, kind in enumerate(kinds):
                comp[(src, unit.task or "detection", kind)] += int(times[k].sum())
            return comp
        for i, rec in enumerate(store):
            if unit.type == "grounding":
                for k, kind in enumerate(kinds):
                    comp[(unit.source or rec.get("source") or rec.get("dataset") or unit.name,
                          unit.task or "grounding", kind)] += int(times[k, i])
            else:
                boxes = sorted({b.get("kind") for b in rec.get("boxes") or []})
                comp[(unit.source or rec.get("source") or unit.name, unit.task or rec.get("task") or "chat",
                      "+".join(boxes) if boxes else "none")] += int(times[0, i])
        return +comp

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
            if name is None or not unit.active:
                continue
            record = prompt_set_record(get_prompt_set(name))
            entry = out.setdefault(record["path"] + record["sha256"], {**record, "units": []})
            entry["units"].append(unit.name)
        return list(out.values())

    def stats(self) -> dict:
        """Effective proportions of the sample stream by unit, source, task and box kind; per unit the samples an
        epoch draws from it (``per_epoch``, expected in a weight mixture, exact in a rate mixture) and how many
        times an epoch shows its samples (``passes``; above 1 = up-sampled), i.e. the rate the weight amounts to."""
        out: dict[str, Any] = {"epoch_size": self.epoch_size, "seed": self.config.seed, "mode": self.mode,
                               "data_root": self.config.data_root, "units": [],
                               "source": Counter(), "task": Counter(), "box_kind": Counter()}
        for u, unit in enumerate(self.units):
            comp = self.unit_composition(u)
            total = sum(comp.values())
            n = self.n_items(u)
            p = float(self.probabilities[u])
            per_epoch = p * self.epoch_size
            out["units"].append({"name": unit.name, "type": unit.type, "records": len(self.stores[u]),
                                 "samples": n, "weight": unit.weight, "rate": unit.rate, "proportion": p,
                                 "per_epoch": per_epoch, "passes": per_epoch / n if n else 0.0,
                                 "converter": unit.converter, "prompt_set": self.unit_prompt_set(u)})
            for (src, task, kind), k in comp.items():
                share = p * k / total
                out["source"][src] += share
                out["task"][task] += share
                out["box_kind"][kind] += share
        for key in ("source", "task", "box_kind"):
            out[key] = dict(sorted(out[key].items(), key=lambda kv: (-kv[1], kv[0])))
        return out


def rate_text(passes: float) -> str:
    """The reference-style rate a number of passes amounts to: ``%37.5`` below one pass, ``*2`` or ``*1.53``."""
    if passes < 1:
        return f"%{100 * passes:.3g}"
    return f"*{passes:.0f}" if abs(passes - round(passes)) < 1e-9 else f"*{passes:.2f}"


def format_stats(stats: dict) -> str:
    """The table printed by ``rscovlm data mix-stats`` (``samples`` = records x box kinds; ``passes`` over the
    samples). Both notations side by side: a weight mixture shows the rate each weight amounts to (``~``), a rate
    mixture the share each rate amounts to."""
    mode = ("weights (normalized shares)" if stats["mode"] == "weight"
            else "rates (the reference's, relative to each unit's size)")
    root = f", data root {stats['data_root']}" if stats.get("data_root") else ""
    lines = [f"epoch size {stats['epoch_size']}, seed {stats['seed']}, {mode}{root}", "",
             f"{'unit':28s} {'type':12s} {'records':>9s} {'samples':>9s} {'weight':>8s} {'rate':>8s} "
             f"{'share':>7s} {'per epoch':>10s} {'passes':>7s}  prompt set"]
    for u in stats["units"]:
        if stats["mode"] == "weight":
            weight, rate = f"{u['weight']:g}", "~" + rate_text(u["passes"])
        else:
            weight, rate = f"~{100 * u['proportion']:.3g}", u["rate"] or "*1"
        lines.append(f"{u['name']:28s} {u['type']:12s} {u['records']:>9d} {u['samples']:>9d} {weight:>8s} "
                     f"{rate:>8s} {100 * u['proportion']:>6.2f}% {u['per_epoch']:>10.0f} {u['passes']:>7.2f}  "
                     f"{u['prompt_set'] or '-'}")
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
        self._builders: dict[bool, SampleBuilder] = {}

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, prompt_set: str | None = None, data_root=None,
                  **kwargs) -> "MixtureDataset":
        return cls(Mixture.from_yaml(path, prompt_set, data_root), **kwargs)

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

    def _key(self, key) -> tuple[int, int]:
        """``(epoch, position)`` of an item key: a position of the current epoch or an ``(epoch, position)``."""
        epoch, position = (self.epoch, key) if not isinstance(key, (tuple, list)) else key
        epoch, position = int(epoch), int(position)
        if not 0 <= position < len(self):
            raise IndexError(position)
        return epoch, position

    def where(self, key) -> str:
        """``file:line`` of the record at ``key`` (a position of the current epoch or ``(epoch, position)``)."""
        epoch, position = self._key(key)
        u, item = self.mixture.locate(epoch, position)
        return self.mixture.stores[u].where(self.mixture.item(u, item)[0])

    def __len__(self) -> int:
        return self.mixture.epoch_size

    def __getitem__(self, key) -> dict:
        return self.build(key)

    def build(self, key, load_images: bool | None = None) -> dict:
        """The sample at ``key`` (a position of the current epoch or ``(epoch, position)``); ``load_images=False``
        builds the same sample with image paths instead of decoded images (what a length count needs: the text
        and the resized sizes are the same, the random draws do not depend on it)."""
        epoch, position = self._key(key)
        u, item = self.mixture.locate(epoch, position)
        i, kind = self.mixture.item(u, item)
        unit, store = self.mixture.units[u], self.mixture.stores[u]
        rng = self.mixture.sample_rng(epoch, position)
        builder = self.builder
        if load_images is not None and load_images != builder.config.load_images:
            builder = self._builders.get(load_images)
            if builder is None:
                config = dataclasses.replace(self.builder.config, load_images=load_images)
                builder = self._builders[load_images] = SampleBuilder(config)
        try:
            return builder.build(store[i], unit, rng=rng if self.mode == "train" else None, box_kind=kind)
        except (BuildError, KeyError, TypeError, ValueError, IndexError, OSError) as err:
            # a record the builder cannot use: say which one (run `rscovlm data validate` on the unit file)
            raise BuildError(f"{store.where(i)}: unit {unit.name}: {type(err).__name__}: {err}") from err


# ---- the trainer's data source (registered as ``data.source: mixture`` by rscovlm.train.sources) -----------------

def training_mixture_config(cfg, family=None, prompt_set: str | None = None) -> MixtureConfig:
    """The mixture of a training config's data section ``cfg`` (:class:`rscovlm.train.config.DataConfig`):
    ``data.paths`` = [the mixture YAML]; ``data.data_root`` replaces the YAML's ``data_root``; ``data.options``
    may override the YAML's ``seed`` / ``epoch_size`` / ``rate_seed`` and any builder option. The builder takes
    the trainer's ``min_pixels`` / ``max_pixels`` and hands the collator images already resized to the model frame
    of the targets (``load_images``). ``family`` (the :class:`~rscovlm.model.families.ModelFamily` of the
    checkpoint being trained, passed by the trainer) sets the builder's ``family``, i.e. the side factor and the
    box frame of the targets; a ``family`` option in the YAML's ``builder`` or in ``data.options`` that names
    another family is an error. ``prompt_set`` replaces the prompt set of the builder and of every unit."""
    if len(cfg.paths) != 1:
        raise ValueError(f"data.source 'mixture' takes one mixture YAML in data.paths, got {cfg.paths}")
    path = Path(cfg.paths[0])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError as err:
        raise MixtureError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise MixtureError(f"{path}: mixture file not found or empty")
    if prompt_set is not None:
        raw = override_prompt_set(raw, prompt_set)
    options = dict(cfg.options)
    for key in ("seed", "epoch_size", "rate_seed"):
        if key in options:
            raw[key] = options.pop(key)
    builder = {**(raw.get("builder") or {}), "min_pixels": cfg.min_pixels,
               "max_pixels": cfg.max_pixels, "load_images": True, **options}
    if family is not None:
        _check_family(family, (raw.get("builder") or {}).get("family"), f"{path}: builder.family")
        _check_family(family, cfg.options.get("family"), "data.options.family")
        builder["family"] = family.name
    raw["builder"] = builder
    return MixtureConfig.from_dict(raw, base=path.parent, where=str(path), data_root=getattr(cfg, "data_root", None))


def is_training_config(raw: Any) -> bool:
    """Whether a YAML document is a training config (model / data / train sections) rather than a mixture."""
    return isinstance(raw, dict) and "units" not in raw and "data" in raw and set(raw) <= {"model", "data", "train"}


def read_yaml_document(path: str | os.PathLike) -> Any:
    """The YAML document of ``path`` (a mixture or a training config); errors as :class:`MixtureError`."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MixtureError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise MixtureError(f"{path}: not valid YAML ({err})") from None


def mixture_for_stats(path: str | os.PathLike, prompt_set: str | None = None, data_root=None, model=None,
                      max_length: int | None = None):
    """``(mixture, token counter, settings)`` of a mixture YAML (what ``rscovlm data mix-stats`` reads; a training
    config is read by :func:`rscovlm.train.sources.mix_stats_inputs`, which gives its own settings to
    :func:`stats_counter`). ``settings`` = ``{"max_length", "global_batch", "note"}``."""
    path = Path(path)
    if is_training_config(read_yaml_document(path)):
        raise MixtureError(f"{path}: a training config, not a mixture (rscovlm.train.sources.mix_stats_inputs reads "
                           "both)")
    mixture = Mixture.from_yaml(path, prompt_set, data_root)
    build = BuildConfig.from_dict(mixture.config.builder)
    max_length = max_length or 6144
    processor, family, why = offline_processor(model, build.min_pixels, build.max_pixels) if model else (
        None, None, "")
    counter, note = stats_counter(processor, family, why, model, build.min_pixels, build.max_pixels, max_length)
    return mixture, counter, {"global_batch": None, "max_length": max_length, "note": note}


def stats_counter(processor, family, why: str, model: str | None, min_pixels: int, max_pixels: int,
                  max_length: int):
    """``(token counter, note)`` for the statistics: exact when ``processor`` (loaded offline,
    :func:`offline_processor`) is there, else :class:`rscovlm.data.tokens.ApproxTokenCounter` (``why`` says why
    not)."""
    from rscovlm.data.tokens import ApproxTokenCounter

    if processor is None:
        return ApproxTokenCounter(min_pixels, max_pixels, max_length), why
    from rscovlm.data.tokens import exact_counter
    from rscovlm.model.collator import ConversationEncoder
    from rscovlm.resolution import ResolutionPolicy

    policy = ResolutionPolicy(min_pixels, max_pixels, family.factor)
    return exact_counter(ConversationEncoder(processor, policy=policy, max_length=max_length)), \
        f"tokenizer of {model}"


def offline_processor(model: str | None, min_pixels: int, max_pixels: int):
    """``(processor, family, why not)`` of ``model`` from local files only (a folder, or the hub cache)."""
    if not model:
        return None, None, "no model given"
    try:
        from transformers import AutoConfig

        from rscovlm.model.families import family_for
        from rscovlm.model.loading import load_processor, local_model_problem

        problem = local_model_problem(model)
        if problem is not None:
            raise OSError(problem)
        family = family_for(AutoConfig.from_pretrained(model, local_files_only=True))
        return load_processor(model, min_pixels, max_pixels, local_files_only=True), family, ""
    except (OSError, ValueError, KeyError, ImportError) as err:
        return None, None, f"model {model} not available offline ({type(err).__name__})"


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

