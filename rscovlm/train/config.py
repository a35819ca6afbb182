"""Training configuration: three dataclasses (model / data / train) read from YAML plus ``key=value`` overrides.

The defaults are the paper's recipe (RSCoVLM 4.1): AdamW, weight decay 0.1, lr 2e-6, cosine schedule with a
linear warmup over the first 5 % of steps, global batch 32, max sequence 6144 tokens (truncated beyond), images
between 224x224 and 1008x1008 pixels, DeepSpeed ZeRO-1, gradient checkpointing, bf16, FlashAttention-2 and the
Liger kernel on GPU.

YAML layout::

    model: {model_name_or_path: ..., freeze_vision_tower: false, ...}   # rscovlm.model.loading.ModelConfig
    data:  {source: jsonl, paths: [train.jsonl], ...}                   # DataConfig
    train: {output_dir: runs/x, learning_rate: 2.0e-6, ...}             # TrainConfig

Overrides are ``section.key=value`` (or ``key=value`` when the key name is unique across sections); values are
parsed as YAML scalars/lists and checked against the field type. Unknown keys are errors that name the key.
``${config_dir}`` in a string of the file stands for the file's folder (``data.paths:
[${config_dir}/mixtures/rscovlm.yaml]`` works from any current directory).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from rscovlm.model.loading import ModelConfig


@dataclass
class DataConfig:
    """Where the training conversations come from and how they are encoded."""

    source: str = field(
        default="jsonl",
        metadata={"help": "registered data source type (rscovlm.train.sources): 'jsonl' = files of "
                          "{'messages': [...]} lines; the curation mixture registers its own"},
    )
    paths: list[str] = field(default_factory=list, metadata={"help": "input files of the source"})
    data_root: str | None = field(
        default=None, metadata={"help": "mixture source: the folder ${data_root} in the mixture's unit paths "
                                        "stands for, replacing the YAML's data_root (relative: to the current "
                                        "directory)"},
    )
    image_root: str | None = field(
        default=None, metadata={"help": "folder relative image paths are resolved against (default: the folder "
                                        "of each jsonl file)"},
    )
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "extra keyword arguments passed to the data source"},
    )
    shuffle: bool = field(
        default=True, metadata={"help": "shuffle the sample order each epoch (seeded by train.seed and the epoch); "
                                        "false keeps the source's order. The mixture source always uses its own "
                                        "seeded order"},
    )
    min_pixels: int = field(default=224 * 224, metadata={"help": "lower pixel bound of model inputs (paper 224^2)"})
    max_pixels: int = field(default=1008 * 1008, metadata={"help": "upper pixel bound of model inputs (paper 1008^2)"})
    max_length: int = field(default=6144, metadata={"help": "token limit per sample; text beyond is truncated"})
    drop_overlong: bool = field(
        default=True, metadata={"help": "drop (and count) samples whose image tokens would be cut by max_length; "
                                        "false = stop with an error naming the sample"},
    )
    check_images: Literal["header", "decode", "none"] = field(
        default="header",
        metadata={"help": "pre-flight check of every image the data references, before the model loads: "
                          "'header' = the file exists and its image header reads (fast), 'decode' = every image "
                          "is decoded in full (also finds truncated files; slower), 'none' = no check (an "
                          "unreadable image then stops training when it is reached)"},
    )
    skip_invalid_images: bool = field(
        default=False,
        metadata={"help": "train without the records whose images fail the pre-flight check (they are counted "
                          "and reported) instead of stopping with the list of files"},
    )


@dataclass
class TrainConfig:
    """Optimisation, precision, parallelism and checkpointing."""

    output_dir: str = field(default="runs/rscovlm", metadata={"help": "checkpoints and logs go here"})
    learning_rate: float = field(default=2e-6, metadata={"help": "base (language model) learning rate"})
    vision_lr: float | None = field(default=None, metadata={"help": "vision tower lr (default: learning_rate)"})
    merger_lr: float | None = field(default=None, metadata={"help": "merger lr (default: learning_rate)"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps with linear warmup"})
    global_batch_size: int = field(
        default=32, metadata={"help": "samples per optimizer step over all devices; accumulation = global / "
                                      "(world size x per-device batch), which must divide evenly"},
    )
    per_device_batch_size: int = field(default=1, metadata={"help": "samples per device per forward pass"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs over the data source"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; overrides epochs when > 0"})
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto", metadata={"help": "'auto' = bf16 on a GPU that supports it, fp32 on CPU"},
    )
    gradient_checkpointing: Literal["auto", "true", "false"] = field(
        default="auto", metadata={"help": "'auto' = on with a GPU, off on CPU"},
    )
    deepspeed: str | None = field(
        default="auto",
        metadata={"help": "'zero1' / 'zero2' / 'zero3' (shipped configs), a JSON path, 'none', or 'auto' = zero1 "
                          "on GPU when deepspeed is installed, none on CPU"},
    )
    use_liger_kernel: bool = field(default=False, metadata={"help": "Liger kernels (GPU only, liger-kernel pkg)"})
    logging_steps: int = field(default=10, metadata={"help": "log every N optimizer steps"})
    save_steps: int = field(default=500, metadata={"help": "checkpoint every N optimizer steps"})
    save_total_limit: int | None = field(default=3, metadata={"help": "keep at most N checkpoints"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "checkpoint folder, or 'latest' = newest checkpoint in output_dir"},
    )
    packing: bool = field(
        default=False,
        metadata={"help": "pack several samples into each row of up to data.max_length tokens (first-fit from a "
                          "look-ahead buffer; attention stays inside each sample). Batch sizes then count rows"},
    )
    packing_buffer: int = field(
        default=64, metadata={"help": "look-ahead of the packer: samples it may choose from to fill a row"},
    )
    record_samples: bool = field(
        default=False,
        metadata={"help": "write the samples of every batch to <output_dir>/rscovlm_samples.jsonl (one line per "
                          "micro-batch: step, rank, epoch, batch, rows of sample ids and of dataset keys; one file "
                          "per rank when distributed)"},
    )
    seed: int = field(default=42, metadata={"help": "seed of weights init, shuffling and augmentation"})
    dataloader_num_workers: int = field(default=2, metadata={"help": "sample-building worker processes"})
    report_to: str = field(default="none", metadata={"help": "transformers logging integrations, comma-separated "
                                                             "(e.g. tensorboard), 'all' or 'none'"})


@dataclass
class Config:
    """The whole training configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = ("model", "data", "train")


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


_SECTION_CLASSES = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(_SECTION_CLASSES[section])}


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting ints to floats and strings to numbers)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        if value in args:
            return value
        if isinstance(value, bool) and str(value).lower() in args:
            return str(value).lower()
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads '2e-6' as a string
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


def build_config(raw: dict[str, Any] | None = None, overrides: list[str] | None = None,
                 source: str = "config") -> Config:
    """A :class:`Config` from a nested mapping (the YAML document) and ``key=value`` overrides."""
    import yaml

    raw = dict(raw or {})
    for section in raw:
        if section not in SECTIONS:
            raise _unknown(section, list(SECTIONS))
    values: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        body = raw.get(section) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping")
        fields = _section_fields(section)
        for key in body:
            if key not in fields:
                raise _unknown(f"{section}.{key}", [f"{section}.{k}" for k in fields])
        values[section] = dict(body)

    owners: dict[str, list[str]] = {}
    for section in SECTIONS:
        for name in _section_fields(section):
            owners.setdefault(name, []).append(section)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise _unknown(key, [f"{s}.{n}" for s in SECTIONS for n in _section_fields(s)])
            if name not in _section_fields(section):
                raise _unknown(key, [f"{section}.{n}" for n in _section_fields(section)])
        else:
            if key not in owners:
                raise _unknown(key, sorted(owners))
            if len(owners[key]) > 1:
                raise ConfigError(f"config key {key!r} is ambiguous: write one of "
                                  f"{', '.join(f'{s}.{key}' for s in owners[key])}")
            section, name = owners[key][0], key
        values[section][name] = yaml.safe_load(text) if text.strip() else None

    built = {}
    for section, cls in _SECTION_CLASSES.items():
        hints = typing.get_type_hints(cls)
        kwargs = {name: _coerce(v, hints[name], f"{section}.{name}") for name, v in values[section].items()}
        built[section] = cls(**kwargs)
    cfg = Config(**built)
    check_ranges(cfg)
    return cfg


# key -> (test, the rule as the error states it); None values (an unset optional) pass
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.lora_r": (lambda v: v >= 1, ">= 1"),
    "model.lora_alpha": (lambda v: v > 0, "> 0"),
    "model.lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.min_pixels": (lambda v: v >= 1, ">= 1"),
    "data.max_length": (lambda v: v >= 1, ">= 1"),
    "train.learning_rate": (lambda v: v > 0, "> 0"),
    "train.vision_lr": (lambda v: v > 0, "> 0"),
    "train.merger_lr": (lambda v: v > 0, "> 0"),
    "train.weight_decay": (lambda v: v >= 0, ">= 0"),
    "train.adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "train.max_steps": (lambda v: v == -1 or v >= 1, "-1 (train for num_train_epochs) or >= 1"),
    # transformers reads a warmup value >= 1 as a number of steps, so 2 would silently mean 2 steps
    "train.warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.global_batch_size": (lambda v: v >= 1, ">= 1"),
    "train.per_device_batch_size": (lambda v: v >= 1, ">= 1"),
    "train.num_train_epochs": (lambda v: v > 0, "> 0"),
    "train.logging_steps": (lambda v: v >= 1, ">= 1"),
    "train.save_steps": (lambda v: v >= 1, ">= 1"),
    "train.save_total_limit": (lambda v: v >= 1, ">= 1"),
    "train.dataloader_num_workers": (lambda v: v >= 0, ">= 0"),
    "train.packing_buffer": (lambda v: v >= 1, ">= 1"),
    "train.seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),  # numpy's seed range
}


def check_ranges(cfg: Config) -> None:
    """Raise :class:`ConfigError` naming the first key whose value is out of its range."""
    for section in SECTIONS:
        for name, value in dataclasses.asdict(getattr(cfg, section)).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{section}.{name}: {value!r} must be a finite number")
    for key, (ok, rule) in _RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}: {value!r} must be {rule}")
    if cfg.data.min_pixels > cfg.data.max_pixels:
        raise ConfigError(f"data.min_pixels: {cfg.data.min_pixels} must be <= data.max_pixels "
                          f"({cfg.data.max_pixels})")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read the YAML file at ``path`` (optional) and apply ``overrides``."""
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: invalid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping with model / data / train sections")
        raw = _expand_config_dir(raw, p.resolve().parent)
    try:
        return build_config(raw, overrides, source=str(path or "overrides"))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def _expand_config_dir(value: Any, folder: Path) -> Any:
    """``value`` with ``${config_dir}`` in every string replaced by ``folder`` (the config file's folder), so a
    config can name files beside it whatever the current directory."""
    if isinstance(value, str):
        return value.replace("${config_dir}", str(folder))
    if isinstance(value, list):
        return [_expand_config_dir(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _expand_config_dir(v, folder) for k, v in value.items()}
    return value


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The plain nested mapping of ``cfg`` (what is written beside the checkpoints)."""
    return dataclasses.asdict(cfg)


def gradient_accumulation_steps(global_batch_size: int, world_size: int, per_device_batch_size: int) -> int:
    """Accumulation steps that make ``global_batch_size`` from ``world_size`` devices; must divide evenly."""
    per_step = world_size * per_device_batch_size
    if global_batch_size < per_step or global_batch_size % per_step:
        raise ConfigError(f"train.global_batch_size {global_batch_size} is not a multiple of world size "
                          f"{world_size} x per_device_batch_size {per_device_batch_size} = {per_step}")
    return global_batch_size // per_step
