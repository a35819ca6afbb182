"""Load a Qwen-VL checkpoint (local folder or hub id) with its processor, ready for training or inference.

The model class is picked by ``AutoModelForImageTextToText`` from ``config.json``; the family facts (box frame,
patch geometry, module paths) come from :mod:`rscovlm.model.families`. Freezing works on the family's module
paths, so the same flags work for Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

A name that looks like a local path (:func:`local_reason`) must be a model folder: :func:`check_model_path` fails
at once, naming the closest existing folder, instead of asking the hub (whose client retries for ~30 s offline).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rscovlm.model.families import ModelFamily, family_for

DTypeName = Literal["auto", "bfloat16", "float16", "float32"]
AttnName = Literal["auto", "flash_attention_2", "sdpa", "eager"]


@dataclass
class ModelConfig:
    """Which checkpoint to load and how."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-VL-7B-Instruct",
        metadata={"help": "local model folder or hub id (the paper starts from Qwen2.5-VL-7B-Instruct)"},
    )
    dtype: DTypeName = field(
        default="auto", metadata={"help": "weight dtype; 'auto' = bfloat16 on a CUDA GPU that supports it, else "
                                          "float32"},
    )
    attn_implementation: AttnName = field(
        default="auto", metadata={"help": "'auto' = flash_attention_2 when flash-attn is installed and a GPU is "
                                          "present, else sdpa"},
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "freeze the ViT blocks (not the merger)"})
    freeze_merger: bool = field(default=False, metadata={"help": "freeze the vision-to-language merger"})
    freeze_language_model: bool = field(default=False, metadata={"help": "freeze the decoder and the LM head"})
    use_lora: bool = field(default=False, metadata={"help": "train LoRA adapters on the decoder's linear layers"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "decoder linear layer names that get adapters (vision tower excluded)"},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom modelling code from the hub"})


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def local_reason(name: str) -> str | None:
    """Why ``name`` means a folder on this machine rather than a hub id (``org/name`` or ``name``), or None: it
    starts with ``./``, ``../``, ``/``, ``~`` or a drive letter, exists here, has more than two path components
    (or an empty, ``.`` or ``..`` one), partly exists here (``runs/tinyy`` while ``runs/`` is a folder), or is
    not a valid hub id."""
    if not name:
        return None
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\", "\\")) or _DRIVE.match(name):
        return "it is a path"
    if os.path.lexists(os.path.expanduser(name)):
        return "it exists here"
    parts = re.split(r"[/\\]", name)
    if len(parts) > 2 or any(p in ("", ".", "..") for p in parts):
        return "hub ids have the form org/name"
    if len(parts) == 2 and os.path.isdir(parts[0]):
        return f"{parts[0]}/ is a folder here"
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return "it is not a valid hub id"
    return None


def local_model_problem(name: str) -> str | None:
    """Why ``name`` cannot be a model folder when :func:`local_reason` says it is a local path (missing, a file,
    no ``config.json``), else None: hub ids are left to ``from_pretrained``. Local paths are never looked up on
    the hub, so a misspelt folder fails at once instead of after the hub client's retries."""
    why = local_reason(name)
    if why is None:
        return None
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"{name}: the folder has no config.json, so it is not a model folder"
        return None
    if path.exists():
        return f"{name}: is a file, not a model folder"
    parent = path.parent
    while str(parent) not in ("", ".") and not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    hint = ""
    try:
        first = path.relative_to(parent).parts[0]
        close = difflib.get_close_matches(first, [p.name for p in parent.iterdir() if p.is_dir()], n=3)
    except (OSError, ValueError, IndexError):
        close = []
    if close:
        hint = f"; did you mean {', '.join(str(parent / c) for c in close)}?"
    return (f"{name}: no such model folder{hint} (taken as a local path because {why}, so not looked up on the "
            "hub; the offline tiny model is built with `rscovlm model tiny --out DIR`)")


def check_model_path(name: str) -> None:
    """Raise ``FileNotFoundError`` with :func:`local_model_problem`'s message when there is one."""
    problem = local_model_problem(name)
    if problem is not None:
        raise FileNotFoundError(problem)


def resolve_dtype(name: str):
    """The ``torch.dtype`` for ``name`` (see :class:`ModelConfig.dtype`)."""
    import torch

    if name == "auto":
        cuda = torch.cuda.is_available()
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ValueError(f"dtype must be one of auto, bfloat16, float16, float32; got {name!r}") from None


def flash_attention_available() -> bool:
    """True when the ``flash_attn`` package is importable and a CUDA device is present."""
    import torch

    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_attn_implementation(name: str) -> str:
    """The attention backend for ``name``; an explicit ``flash_attention_2`` without flash-attn is an error."""
    if name == "auto":
        return "flash_attention_2" if flash_attention_available() else "sdpa"
    if name == "flash_attention_2" and not flash_attention_available():
        raise ValueError("attn_implementation=flash_attention_2 needs the flash-attn package and a CUDA GPU; "
                         "install the 'gpu' extra or use 'sdpa'")
    if name not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(f"attn_implementation must be auto, flash_attention_2, sdpa or eager; got {name!r}")
    return name


def load_processor(model_name_or_path: str, min_pixels: int | None = None, max_pixels: int | None = None,
                   **kwargs: Any):
    """``AutoProcessor`` of the checkpoint; ``min_pixels``/``max_pixels`` override the image processor's pixel
    bounds (the smart-resize area range)."""
    from transformers import AutoProcessor

    check_model_path(model_name_or_path)
    processor = AutoProcessor.from_pretrained(model_name_or_path, **kwargs)
    image_processor = processor.image_processor
    if min_pixels is not None or max_pixels is not None:
        size = dict(image_processor.size)
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        if size["shortest_edge"] > size["longest_edge"]:
            raise ValueError(f"min_pixels {size['shortest_edge']} exceeds max_pixels {size['longest_edge']}")
        image_processor.size = size
    return processor


def _submodules(model, paths):
    """The modules at ``paths`` (dotted, relative to the model); paths that the model lacks are skipped so one
    family entry can name optional parts (e.g. Qwen3-VL's DeepStack mergers)."""
    found = []
    for path in paths:
        try:
            found.append(model.get_submodule(path))
        except AttributeError:
            continue
    return found


def module_groups(model, family: ModelFamily) -> dict[str, list[str]]:
    """Parameter names per group: ``vision_tower`` (ViT without merger), ``merger`` and ``language_model``
    (everything else). Names are those of ``model.named_parameters()``."""
    merger_prefixes = tuple(p + "." for p in family.merger_modules)
    vision_prefix = family.vision_module + "."
    groups: dict[str, list[str]] = {"vision_tower": [], "merger": [], "language_model": []}
    for name, _ in model.named_parameters():
        # PEFT wraps the model as base_model.model.<name>; strip that to match the family paths
        bare = name.split("base_model.model.", 1)[-1]
        if bare.startswith(merger_prefixes) or any(f".{p}." in f".{bare}" for p in family.merger_modules):
            groups["merger"].append(name)
        elif bare.startswith(vision_prefix):
            groups["vision_tower"].append(name)
        else:
            groups["language_model"].append(name)
    return groups


def apply_freeze(model, family: ModelFamily, *, vision_tower: bool, merger: bool, language_model: bool) -> None:
    """Set ``requires_grad`` per group (True = frozen). Raises when nothing would be left to train."""
    frozen = {"vision_tower": vision_tower, "merger": merger, "language_model": language_model}
    params = dict(model.named_parameters())
    for group, names in module_groups(model, family).items():
        for name in names:
            params[name].requires_grad_(not frozen[group])
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("every parameter is frozen: unset one of freeze_vision_tower / freeze_merger / "
                         "freeze_language_model")


def apply_lora(model, family: ModelFamily, cfg: ModelConfig):
    """Wrap ``model`` with PEFT LoRA adapters on the decoder linear layers named in ``cfg.lora_target_modules``.
    The vision tower and merger keep full training unless frozen (they are saved with the adapter)."""
    from peft import LoraConfig, get_peft_model

    lang = "|".join(p.replace(".", r"\.") for p in family.language_modules)
    targets = "|".join(cfg.lora_target_modules)
    modules_to_save = []
    if not cfg.freeze_vision_tower:
        modules_to_save.append(family.vision_module.rsplit(".", 1)[-1])
    elif not cfg.freeze_merger:
        modules_to_save += [p.rsplit(".", 1)[-1] for p in family.merger_modules
                            if _submodules(model, [p])]
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        target_modules=rf"^(?:{lang})\..*\.(?:{targets})$", modules_to_save=modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def trainable_summary(model, family: ModelFamily) -> dict[str, tuple[int, int]]:
    """``{group: (trainable, total)}`` parameter counts per module group."""
    params = dict(model.named_parameters())
    out = {}
    for group, names in module_groups(model, family).items():
        total = sum(params[n].numel() for n in names)
        trainable = sum(params[n].numel() for n in names if params[n].requires_grad)
        out[group] = (trainable, total)
    return out


def load_model(cfg: ModelConfig, **kwargs: Any):
    """Load the model of ``cfg`` and return ``(model, family)``; freezing and LoRA are applied."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    check_model_path(cfg.model_name_or_path)
    hf_config = AutoConfig.from_pretrained(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    family = family_for(hf_config)
    model = AutoModelForImageTextToText.from_pretrained(
        cfg.model_name_or_path, dtype=resolve_dtype(cfg.dtype),
        attn_implementation=resolve_attn_implementation(cfg.attn_implementation),
        trust_remote_code=cfg.trust_remote_code, **kwargs,
    )
    if cfg.use_lora:
        apply_freeze(model, family, vision_tower=cfg.freeze_vision_tower, merger=cfg.freeze_merger,
                     language_model=True)
        model = apply_lora(model, family, cfg)
        # PEFT freezes everything but the adapters; give the vision parts back their own flags
        for group, names in module_groups(model, family).items():
            if group == "language_model":
                continue
            frozen = cfg.freeze_vision_tower if group == "vision_tower" else cfg.freeze_merger
            if not frozen:
                params = dict(model.named_parameters())
                for n in names:
                    if "original_module" not in n:
                        params[n].requires_grad_(True)
    else:
        apply_freeze(model, family, vision_tower=cfg.freeze_vision_tower, merger=cfg.freeze_merger,
                     language_model=cfg.freeze_language_model)
    return model, family
