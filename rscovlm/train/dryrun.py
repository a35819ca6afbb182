"""``rscovlm train --config X --dry-run``: everything a run would set up before its first step, without the weights
and without training - on a CPU machine, before a cluster job is launched.

In order: the resolved config; the model's config and processor (no weights: architecture, family, box frame);
the data (the mixture with every unit file and image folder checked, the pre-flight image check as configured,
the mixture's shares); the first samples of rank 0 built and encoded (tokens, image tokens, answer tokens); with
``train.packing`` the rows the packer makes of the first samples and their fill; the batch arithmetic for the
world size (``--world-size``, default the launcher's ``WORLD_SIZE`` or 1); the DeepSpeed config with its
``"auto"`` values filled as ``transformers`` fills them; and what the run needs from the machine it runs on
(precision, attention, Liger, DeepSpeed) against what this machine has. Problems the run would stop on are
raised as :class:`~rscovlm.train.config.ConfigError`; things this machine lacks but the target needs (a GPU for
bf16) are listed, not raised.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from types import SimpleNamespace
from typing import Any

from rscovlm.train.config import Config, ConfigError, config_to_dict, gradient_accumulation_steps


def deepspeed_config(cfg: Config, world_size: int, hidden_size: int | None) -> dict | None:
    """The DeepSpeed config of ``cfg`` as the run will use it: the shipped or given JSON with the ``"auto"`` values
    ``transformers`` fills from the training arguments (batch sizes, accumulation, clipping, bf16/fp16, bucket sizes
    from the hidden size). ``"auto"`` resolves to ZeRO-1 here (what a GPU run with deepspeed installed uses).
    None when the run uses no DeepSpeed."""
    from rscovlm.train.deepspeed import STAGES, config_path

    name = cfg.train.deepspeed
    if name is None or name == "none":
        return None
    path = config_path("zero1" if name == "auto" else name) if name in (*STAGES, "auto") else name
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as err:
        raise ConfigError(f"train.deepspeed: cannot read {path}: {err}") from None
    if importlib.util.find_spec("deepspeed") is None:
        return raw  # shown with its "auto" values
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    t = cfg.train
    precision = "bf16" if t.precision == "auto" else t.precision  # the target: a bf16 GPU
    args = SimpleNamespace(
        world_size=world_size, per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(t.global_batch_size, world_size,
                                                                t.per_device_batch_size),
        max_grad_norm=t.max_grad_norm, learning_rate=t.learning_rate, adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2, adam_epsilon=1e-8, weight_decay=t.weight_decay, save_on_each_node=False,
        fp16=precision == "fp16", fp16_full_eval=False, bf16=precision == "bf16", bf16_full_eval=False,
        get_warmup_steps=lambda n: math.ceil(n * t.warmup_ratio))
    try:
        filled = HfTrainerDeepSpeedConfig(raw)
        filled.trainer_config_process(args)
        if hidden_size is not None:
            model = SimpleNamespace(config=SimpleNamespace(hidden_size=hidden_size))
            filled.trainer_config_finalize(args, model, max(t.max_steps, 1))
        return filled.config
    except ValueError as err:
        raise ConfigError(f"train.deepspeed={name}: {err}") from None
    finally:
        unset_hf_deepspeed_config()


def _model_summary(config) -> dict[str, Any]:
    text = getattr(config, "text_config", config)
    vision = getattr(config, "vision_config", None)
    return {"model_type": config.model_type, "architectures": getattr(config, "architectures", None),
            "hidden_size": getattr(text, "hidden_size", None), "layers": getattr(text, "num_hidden_layers", None),
            "attention_heads": getattr(text, "num_attention_heads", None),
            "vocab_size": getattr(text, "vocab_size", None),
            "vision_depth": getattr(vision, "depth", None) if vision is not None else None}


def dry_run(cfg: Config, samples: int = 4, world_size: int | None = None) -> dict[str, Any]:
    """Set up ``cfg``'s run without weights or training (module docstring); returns the report
    (:func:`format_dry_run` prints it)."""
    from transformers import AutoConfig

    from rscovlm.model.collator import ConversationEncoder, EncodedDataset, SampleDropped
    from rscovlm.model.families import family_for
    from rscovlm.model.loading import load_processor
    from rscovlm.resolution import ResolutionPolicy
    from rscovlm.train.sources import dataset_prompt_sets, source_uses_family
    from rscovlm.train.stream import pack_rows
    from rscovlm.train.trainer import (
        _load_error, build_data, check_data_files, check_model, check_pixels, check_transformers_names,
    )

    world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    report: dict[str, Any] = {"config": config_to_dict(cfg), "world_size": world_size}
    check_transformers_names(cfg.train)
    accumulation = gradient_accumulation_steps(cfg.train.global_batch_size, world_size,
                                               cfg.train.per_device_batch_size)
    # the data's files first (they need no model), then the model: its config and processor, no weights
    check_data_files(cfg)
    check_model(cfg)
    name = cfg.model.model_name_or_path
    try:
        model_config = AutoConfig.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code)
        family = family_for(model_config)
        processor = load_processor(name, cfg.data.min_pixels, cfg.data.max_pixels)
    except (OSError, KeyError, ValueError) as err:
        raise _load_error(name, err) from err
    check_pixels(cfg, family)
    summary = _model_summary(model_config)
    report["model"] = {**summary, "family": family.name, "box_frame": family.box_frame}
    # data
    dataset, image_check = build_data(cfg, with_report=True,
                                      family=family if source_uses_family(cfg.data.source) else None)
    report["data"] = {"source": cfg.data.source, "samples_per_epoch": len(dataset),
                      "image_check": image_check.summary() if image_check is not None else None,
                      "prompt_sets": [s.get("name") for s in dataset_prompt_sets(dataset)]}
    mixture = getattr(dataset, "mixture", None)
    if mixture is not None:
        from rscovlm.data.mixture import format_stats

        report["data"]["mixture"] = format_stats(mixture.stats())
    policy = ResolutionPolicy(cfg.data.min_pixels, cfg.data.max_pixels, family.factor,
                              uhr_min_pixels=max(cfg.data.max_pixels, 4 * 1008 * 1008))
    encoded = EncodedDataset(dataset, ConversationEncoder(processor, policy=policy, max_length=cfg.data.max_length),
                             drop=cfg.data.drop_overlong)
    keyed = hasattr(dataset, "mixture")
    n = min(max(samples, 0), len(dataset))
    look = min(len(dataset), max(n, cfg.train.packing_buffer if cfg.train.packing else n))
    keys = [(0, i) if keyed else i for i in range(look)]
    shown = []
    for key in keys[:n]:
        conversation = dataset[key]
        meta = conversation.get("meta") or {} if isinstance(conversation, dict) else {}
        row = {"key": list(key) if isinstance(key, tuple) else key, "id": meta.get("id"), "unit": meta.get("unit")}
        try:
            enc = encoded.encoder.encode(conversation)
            row.update(tokens=len(enc.input_ids), image_tokens=int((enc.input_ids == processor.image_token_id).sum()),
                       answer_tokens=int((enc.labels != -100).sum()), truncated=enc.truncated,
                       images=[list(p.model_size) for p in enc.plans])
        except SampleDropped as err:
            row["dropped"] = err.reason
        shown.append(row)
    report["samples"] = shown
    if cfg.train.packing and keys:
        lengths = []
        for key in keys:
            try:
                lengths.append(encoded.length(key))
            except SampleDropped:
                lengths.append(-1)
        rows = pack_rows(lengths, cfg.data.max_length, cfg.train.packing_buffer)
        used = sum(max(v, 0) for v in lengths)
        report["packing"] = {"samples": len(keys), "rows": len(rows), "tokens": used,
                             "fill": used / (len(rows) * cfg.data.max_length) if rows else 0.0,
                             "samples_per_row": len(keys) / len(rows) if rows else 0.0}
    report["batches"] = {"world_size": world_size, "per_device": cfg.train.per_device_batch_size,
                         "accumulation": accumulation, "global": cfg.train.global_batch_size,
                         "unit": "rows" if cfg.train.packing else "samples"}
    if not cfg.train.packing:
        per_rank = len(dataset) // world_size
        report["batches"]["steps_per_epoch"] = math.ceil(math.ceil(per_rank / cfg.train.per_device_batch_size)
                                                         / accumulation)
    report["deepspeed"] = deepspeed_config(cfg, world_size, summary["hidden_size"])
    report["needs"] = _needs(cfg)
    return report


def _needs(cfg: Config) -> list[str]:
    """What the run needs from its machine, and whether this one has it."""
    import torch

    cuda = torch.cuda.is_available()
    have = lambda ok: "available here" if ok else "NOT available here"  # noqa: E731
    lines = []
    t = cfg.train
    if t.precision in ("bf16", "fp16", "auto"):
        lines.append(f"precision {t.precision}: {'a CUDA GPU' if t.precision != 'auto' else 'bf16 on a GPU'} - "
                     f"{have(cuda)}")
    if t.use_liger_kernel:
        lines.append(f"liger kernels: a CUDA GPU and the liger-kernel package - "
                     f"{have(cuda and importlib.util.find_spec('liger_kernel') is not None)}")
    if t.deepspeed not in (None, "none"):
        lines.append(f"deepspeed {t.deepspeed}: the deepspeed package - "
                     f"{have(importlib.util.find_spec('deepspeed') is not None)}")
    attn = cfg.model.attn_implementation
    if attn in ("auto", "flash_attention_2"):
        ok = cuda and importlib.util.find_spec("flash_attn") is not None
        how = "packed rows through its variable-length kernel" if t.packing else "padded batches"
        lines.append(f"attention {attn}: flash-attn on a GPU ({how}; otherwise SDPA"
                     f"{' with a block-diagonal mask' if t.packing else ''}) - {have(ok)}")
    if t.gradient_checkpointing in ("auto", "true"):
        lines.append(f"activation checkpointing {t.gradient_checkpointing}")
    return lines


def format_dry_run(report: dict[str, Any]) -> str:
    """The report of :func:`dry_run` as text."""
    import yaml

    m = report["model"]
    lines = ["# config", yaml.safe_dump(report["config"], sort_keys=False).rstrip(), "",
             f"# model (config and processor only, no weights): {m['model_type']} {m['architectures']}, family "
             f"{m['family']} (box frame {m['box_frame']}), {m['layers']} layers x {m['hidden_size']} hidden, "
             f"{m['attention_heads']} heads, vocabulary {m['vocab_size']}, vision depth {m['vision_depth']}", ""]
    d = report["data"]
    lines.append(f"# data: source {d['source']}, {d['samples_per_epoch']} samples per epoch, prompt sets "
                 f"{d['prompt_sets'] or '-'}")
    if d["image_check"]:
        lines.append(f"image check: {d['image_check']}")
    if d.get("mixture"):
        lines += ["", d["mixture"]]
    lines += ["", f"# first {len(report['samples'])} samples of rank 0"]
    for s in report["samples"]:
        where = f"{s['key']} {s.get('unit') or ''} {s.get('id') or ''}".strip()
        if "dropped" in s:
            lines.append(f"  {where}: dropped ({s['dropped']})")
        else:
            lines.append(f"  {where}: {s['tokens']} tokens ({s['image_tokens']} image, {s['answer_tokens']} answer"
                         f"{', truncated' if s['truncated'] else ''}), images {s['images']}")
    if "packing" in report:
        p = report["packing"]
        lines.append(f"# packing: the first {p['samples']} samples make {p['rows']} rows, "
                     f"{p['samples_per_row']:.1f} samples per row, {100 * p['fill']:.1f}% of the row tokens used")
    b = report["batches"]
    steps = f", {b['steps_per_epoch']} optimizer steps per epoch" if "steps_per_epoch" in b else ""
    lines += ["", f"# batches: world size {b['world_size']} x {b['per_device']} {b['unit']} per device x "
                  f"{b['accumulation']} accumulation = {b['global']} {b['unit']} per optimizer step{steps}"]
    lines += ["", "# deepspeed: " + ("none" if report["deepspeed"] is None else "")]
    if report["deepspeed"] is not None:
        lines.append(json.dumps(report["deepspeed"], indent=2))
    lines += ["", "# the run needs"] + [f"  {line}" for line in report["needs"]]
    lines += ["", "dry run: no weights loaded, nothing trained"]
    return "\n".join(lines)
