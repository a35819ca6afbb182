"""Supervised fine-tuning of a Qwen-VL model on conversations with the ``transformers`` Trainer.

:func:`train` is the whole pipeline: load the model and processor (:mod:`rscovlm.model.loading`), build the
conversation dataset (:mod:`rscovlm.train.sources`, or any dataset passed in), encode it with the template-derived
label masks (:mod:`rscovlm.model.collator`) and run :class:`RSCoVLMTrainer`, which adds to the stock Trainer:

* AdamW parameter groups with their own learning rates for the vision tower and the merger (weight decay off
  for biases and norm weights, as in the stock Trainer);
* its own data stream (:mod:`rscovlm.train.stream`): a per-rank order of padded or packed micro-batches whose
  position is stored in every checkpoint (``rscovlm_data_state.json``), so a resumed run trains on exactly the
  samples an uninterrupted one does; packed rows get per-sample position ids (attention stays in each sample);
* counts of the samples the collator had to drop (``dropped_<reason>`` in the logs and the summary);
* atomic checkpoints: each is written under ``incomplete-checkpoints/`` and renamed into place once every process
  has written its part (:mod:`rscovlm.train.checkpoints`); ``resume_from_checkpoint=latest`` is the latest
  complete one.

Before any weights load :func:`train` checks what it can (pre-flight): the resume folder, a local model path, the
config ranges, the data files and every image they reference (:mod:`rscovlm.train.preflight`).

Launching on several GPUs or nodes is ``torchrun`` / ``accelerate launch`` around ``rscovlm train`` (see
docs/training.md); the world size is read from the environment and sets the accumulation steps.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rscovlm.train.checkpoints import (
    STAGING, checkpoint_problem, clear_staging, latest_complete, publish, staged_path,
)
from rscovlm.train.config import Config, ConfigError, config_to_dict, gradient_accumulation_steps

DROP_REASONS = ("image_cut", "no_target")
#: the data stream's state inside a checkpoint folder (rscovlm.train.stream.TrainStream.state_dict)
DATA_STATE = "rscovlm_data_state.json"


def samples_record_path(output_dir: str, rank: int, world_size: int) -> Path:
    """``train.record_samples``: ``rscovlm_samples.jsonl`` (one process) or ``rscovlm_samples.rank<r>.jsonl``."""
    name = "rscovlm_samples.jsonl" if world_size == 1 else f"rscovlm_samples.rank{rank}.jsonl"
    return Path(output_dir) / name


def world_size() -> int:
    """Number of training processes (``WORLD_SIZE`` set by torchrun / accelerate; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_precision(name: str) -> str:
    """``bf16`` / ``fp16`` / ``fp32`` for the configured precision (``auto``: bf16 on a capable GPU)."""
    import torch

    if name == "auto":
        return "bf16" if _cuda() and torch.cuda.is_bf16_supported() else "fp32"
    if name in ("bf16", "fp16") and not _cuda():
        raise ConfigError(f"train.precision={name} needs a CUDA GPU; use fp32 (or auto) on CPU")
    return name


def resolve_deepspeed(name: str | None) -> str | None:
    """Path of the DeepSpeed config, or None (``auto``: the shipped ZeRO-1 on GPU when deepspeed is installed,
    none otherwise)."""
    import importlib.util

    from rscovlm.train.deepspeed import STAGES, config_path

    if name is None or name == "none":
        return None
    if name == "auto":
        return str(config_path("zero1")) if _cuda() and importlib.util.find_spec("deepspeed") else None
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"train.deepspeed={name} needs the deepspeed package (the 'train' extra)")
    if name in STAGES:
        return str(config_path(name))
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {name!r} is neither a shipped config ({', '.join(STAGES)}) "
                          "nor a JSON file")
    return str(path)


def single_process_launch_env() -> None:
    """Make a DeepSpeed run started without a launcher (``rscovlm train`` on one device) a world of one.

    Without ``RANK`` / ``WORLD_SIZE`` in the environment DeepSpeed falls back to MPI discovery, which fails with
    ``No module named 'mpi4py'``; torchrun, accelerate and the deepspeed launcher all set these variables, so they
    are only filled in when none of them is there (one process, rendezvous on a free local port)."""
    if any(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": os.environ.get("MASTER_PORT", str(port))})


def check_liger(enabled: bool) -> None:
    import importlib.util

    if not enabled:
        return
    if not _cuda():
        raise ConfigError("train.use_liger_kernel=true needs a CUDA GPU (Liger kernels are Triton kernels)")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("train.use_liger_kernel=true needs the liger-kernel package (install the 'gpu' extra)")


def check_transformers_names(t) -> None:
    """``train.lr_scheduler_type`` and ``train.report_to`` name things of ``transformers``: check them here so a
    typo is an error naming the key, not a traceback from inside the Trainer."""
    from transformers import SchedulerType
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    schedulers = [s.value for s in SchedulerType]
    if t.lr_scheduler_type not in schedulers:
        raise ConfigError(f"train.lr_scheduler_type: {t.lr_scheduler_type!r} is not one of {schedulers}")
    for name in t.report_to.split(","):
        name = name.strip()
        if name not in ("none", "all") and name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"train.report_to={t.report_to}: {name} is not supported; use none, all or one of "
                              f"{', '.join(INTEGRATION_TO_CALLBACK)}")


def build_training_arguments(cfg: Config, n_processes: int | None = None):
    """``transformers.TrainingArguments`` for ``cfg`` (accumulation from the world size)."""
    from transformers import TrainingArguments

    t = cfg.train
    check_transformers_names(t)
    n_processes = n_processes or world_size()
    precision = resolve_precision(t.precision)
    checkpointing = {"auto": _cuda(), "true": True, "false": False}[t.gradient_checkpointing]
    check_liger(t.use_liger_kernel)
    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing (old name kept as an alias)
    ckpt_name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")
    ckpt = {ckpt_name: checkpointing,
            f"{ckpt_name}_kwargs": {"use_reentrant": False} if checkpointing else None}
    deepspeed = resolve_deepspeed(t.deepspeed)
    if deepspeed is not None:
        single_process_launch_env()
    return TrainingArguments(
        **ckpt,
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(t.global_batch_size, n_processes,
                                                                t.per_device_batch_size),
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        optim="adamw_torch_fused" if _cuda() else "adamw_torch",
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        deepspeed=deepspeed,
        use_liger_kernel=t.use_liger_kernel,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,
        report_to=[name.strip() for name in t.report_to.split(",")] if "," in t.report_to else t.report_to,
        ddp_backend="gloo" if world_size() > 1 and not _cuda() else None,
        use_cpu=not _cuda(),
    )


def _trainer_class():
    from transformers import Trainer

    class RSCoVLMTrainer(Trainer):
        """The stock Trainer plus per-module learning rates and dropped-sample accounting."""

        def __init__(self, *args, family=None, module_lrs: dict[str, float] | None = None,
                     stream_options: dict | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.family = family
            self.module_lrs = dict(module_lrs or {})
            self.dropped: Counter = Counter()
            self.stream_options = dict(stream_options or {})
            self.stream = None  # the TrainStream, made by get_train_dataloader
            self.stream_resume: dict | None = None  # the data state of the checkpoint being resumed
            self._rope_index = None

        def get_train_dataloader(self):
            """The :class:`rscovlm.train.stream.TrainStream` of this rank (not sharded by accelerate: the stream
            gives each rank its own rows), positioned at the resumed checkpoint's data state. Its length is the
            whole run, so the Trainer sees one epoch of ``max_steps`` steps."""
            import math

            from rscovlm.train.stream import TrainStream

            o = self.stream_options
            args = self.args
            ga = args.gradient_accumulation_steps
            gather = None
            if args.world_size > 1:
                import torch.distributed as dist

                def gather(obj):
                    parts: list = [None] * dist.get_world_size()
                    dist.all_gather_object(parts, obj)
                    return parts

            epochs = None if o.get("max_steps", -1) > 0 else o.get("epochs", 1.0)
            total = o["max_steps"] * ga if o.get("max_steps", -1) > 0 else None
            self.stream = TrainStream(
                self.train_dataset, self.data_collator, batch_size=args.per_device_train_batch_size,
                seed=o.get("seed", args.seed), shuffle=o.get("shuffle", True), packing=o.get("packing", False),
                max_length=o.get("max_length", 6144), buffer=o.get("buffer", 64), rank=args.process_index,
                world_size=args.world_size, num_workers=args.dataloader_num_workers, epochs=epochs,
                total_batches=total, gather=gather, progress=args.process_index == 0)
            if self.stream_resume is not None:
                self.stream.load_state_dict(self.stream_resume)
            if total is None:
                args.max_steps = math.ceil(self.stream.total_batches / ga)
            args.ignore_data_skip = True  # the stream is positioned by its own state, not by skipping batches
            return self.stream

        _staging = False

        def _get_output_dir(self, trial):
            run_dir = super()._get_output_dir(trial)
            return os.path.join(run_dir, STAGING) if self._staging else run_dir

        def _save_checkpoint(self, model, trial):
            # the stock writer, redirected into <output_dir>/incomplete-checkpoints/checkpoint-N; published by one
            # rename once every process has written its part (rscovlm.train.checkpoints)
            from transformers.trainer_utils import rotate_checkpoints

            run_dir = super()._get_output_dir(trial)
            if self.args.should_save:
                clear_staging(run_dir)  # leftovers of an interrupted write
            self.accelerator.wait_for_everyone()
            self._staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = False
            if self.args.should_save and self.stream is not None:  # the data position, inside the checkpoint
                state = self.stream.state_dict()
                staged = staged_path(run_dir, self.state.global_step)
                (staged / DATA_STATE).write_text(json.dumps(state, indent=1) + "\n")
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                publish(staged_path(run_dir, self.state.global_step), self.state.global_step)
                rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
            self.accelerator.wait_for_everyone()

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # transformers saves Qwen-VL weights under the hub's key names (visual.*, model.layers.*) and its resume
            # path loads them with load_state_dict(strict=False) without the renaming from_pretrained applies:
            # nothing is restored and no error is raised (huggingface/transformers#43701). Load through
            # from_pretrained instead and copy strictly. DeepSpeed / FSDP / PEFT checkpoints keep their own paths.
            from transformers import PreTrainedModel

            model = self.model if model is None else model
            if (self.is_deepspeed_enabled or self.is_fsdp_enabled or not isinstance(model, PreTrainedModel)
                    or hasattr(model, "peft_config")):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            dtype = next(model.parameters()).dtype
            restored = type(model).from_pretrained(resume_from_checkpoint, dtype=dtype,
                                                   attn_implementation=model.config._attn_implementation)
            model.load_state_dict(restored.state_dict(), strict=True)
            del restored

        def create_optimizer(self, model=None):
            from rscovlm.model.loading import module_groups

            if self.optimizer is not None or not self.module_lrs or self.family is None:
                return super().create_optimizer(model)
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            params = dict(opt_model.named_parameters())
            groups = []
            by_module = module_groups(opt_model, self.family)
            # the language model first: the Trainer logs the first group's rate as "learning_rate"
            for group in ("language_model", "vision_tower", "merger"):
                names = by_module[group]
                lr = self.module_lrs.get(group, self.args.learning_rate)
                for with_decay in (True, False):
                    chosen = [params[n] for n in names if params[n].requires_grad and ((n in decay) == with_decay)]
                    if chosen:
                        groups.append({"params": chosen, "lr": lr,
                                       "name": f"{group}/{'decay' if with_decay else 'no_decay'}",
                                       "weight_decay": self.args.weight_decay if with_decay else 0.0})
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
            return self.optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            from rscovlm.model.collator import packed_model_inputs, rope_index_function

            dropped = inputs.pop("rscovlm_dropped", None)
            if dropped:
                self.dropped.update({k: int(v) for k, v in dropped.items()})
            where = inputs.pop("rscovlm_stream", None)
            if where is not None and self.stream is not None and model.training:
                self._consumed(where)
            if "packed_samples" in inputs:
                if self._rope_index is None:
                    self._rope_index = rope_index_function(model)
                inputs = packed_model_inputs(model, inputs, self._rope_index)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def _consumed(self, where: dict) -> None:
            """Move the stream's state past the micro-batch ``where`` (and record its samples when asked)."""
            self.stream.advance(where["epoch"], where["batch"])
            if self.stream_options.get("record_samples"):
                path = samples_record_path(self.args.output_dir, self.args.process_index, self.args.world_size)
                path.parent.mkdir(parents=True, exist_ok=True)
                line = {"step": self.state.global_step + 1, "rank": self.args.process_index,
                        "epoch": where["epoch"], "batch": where["batch"], "rows": where["ids"],
                        "keys": where["keys"]}
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")

        def dropped_totals(self) -> dict[str, int]:
            """Dropped-sample counts summed over all processes (a collective call when distributed)."""
            import torch
            import torch.distributed as dist

            dropped = self.dropped + (self.stream.dropped if self.stream is not None else Counter())
            counts = torch.tensor([dropped.get(r, 0) for r in DROP_REASONS], dtype=torch.long)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                counts = counts.to(self.args.device)
                dist.all_reduce(counts)
            return dict(zip(DROP_REASONS, (int(c) for c in counts.tolist())))

        def log(self, logs, start_time=None):
            if "loss" in logs:
                for reason, count in self.dropped_totals().items():
                    logs[f"dropped_{reason}"] = count
            super().log(logs, start_time)

    return RSCoVLMTrainer


def _bar_only_progress(desc: str | None):
    """The Trainer's progress bar with the latest loss as its postfix instead of log dicts printed between bar
    lines (the losses still go to ``state.log_history``)."""
    from tqdm.auto import tqdm
    from transformers import ProgressCallback

    class BarOnlyProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, desc=desc, unit="step", dynamic_ncols=True)
            self.current_step = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)

    return BarOnlyProgress()


CONSOLE_MODES = ("logs", "bar")


def __getattr__(name: str):
    if name == "RSCoVLMTrainer":
        return _trainer_class()
    raise AttributeError(name)


@dataclass
class TrainResult:
    """What a run produced."""

    output_dir: str
    global_step: int
    training_loss: float
    losses: list[float] = field(default_factory=list, metadata={"help": "logged training losses in order"})
    dropped: dict[str, int] = field(default_factory=dict,
                                    metadata={"help": "dropped samples per reason, summed over all ranks"})
    trainer: Any = field(default=None, repr=False, metadata={"help": "the RSCoVLMTrainer (model, processor, state)"})
    image_check: Any = field(default=None, metadata={
        "help": "the pre-flight image check (rscovlm.train.preflight.ImageCheckReport; None when not run)"})


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _release_process_group_at_exit() -> None:
    """Destroy the torch.distributed process group (made by transformers/accelerate for a torchrun launch) when the
    interpreter exits. Left to C++ static destruction, gloo's worker threads are destroyed while joinable and
    abort the rank ("terminate called without an active exception", exit -6) after a successful run. Registered
    once; runs after the caller's own code, so a process may still call :func:`train` again or use the group."""
    import atexit

    import torch.distributed as dist

    if getattr(_release_process_group_at_exit, "registered", False):
        return
    _release_process_group_at_exit.registered = True
    atexit.register(lambda: dist.destroy_process_group() if dist.is_available() and dist.is_initialized() else None)


def _say(message: str) -> None:
    """A warning or report line on stderr, from the main process only (called before the Trainer exists)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, file=sys.stderr, flush=True)


def _resume_path(value: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: ``latest`` = the complete checkpoint with the highest step in
    ``output_dir`` (incomplete ones are named in a warning and skipped); an explicit folder must be complete."""
    if value is None:
        return None
    if value == "latest":
        scan = latest_complete(output_dir)
        for line in scan.warnings():
            _say(f"warning: train.resume_from_checkpoint=latest: {line}")
        if scan.latest is None:
            found = f" ({len(scan.skipped)} incomplete ones skipped)" if scan.skipped else ""
            raise ConfigError(f"train.resume_from_checkpoint=latest: no complete checkpoint-* folder in "
                              f"{output_dir}{found}")
        return str(scan.latest)
    if not Path(value).is_dir():
        raise ConfigError(f"train.resume_from_checkpoint: {value} is not a checkpoint folder")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ConfigError(f"train.resume_from_checkpoint: {value} is not a complete checkpoint: {problem}")
    return value


def check_model(cfg: Config) -> None:
    """A ``model.model_name_or_path`` that is a local path must be a model folder (no hub look-up, no waiting)."""
    from rscovlm.model.loading import local_model_problem

    problem = local_model_problem(cfg.model.model_name_or_path)
    if problem is not None:
        raise ConfigError(f"model.model_name_or_path={problem}")


def checkpoint_family(cfg: Config):
    """The :class:`~rscovlm.model.families.ModelFamily` of ``model.model_name_or_path``, from its config alone (no
    weights are read)."""
    from transformers import AutoConfig

    from rscovlm.model.families import family_for

    check_model(cfg)
    name = cfg.model.model_name_or_path
    try:
        return family_for(AutoConfig.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code))
    except (OSError, KeyError, ValueError) as err:
        raise _load_error(name, err) from err


def _load_error(name: str, err: Exception) -> ConfigError:
    if Path(name).exists():
        return ConfigError(f"model.model_name_or_path={name}: cannot load: {err}")
    return ConfigError(f"model.model_name_or_path={name}: cannot load (it is not a local folder, so it was looked up "
                       f"on the hub): {err}\nWithout network access, train the offline tiny model: `rscovlm model "
                       "tiny --out runs/tiny`, then `rscovlm train --config configs/tiny_cpu.yaml data.paths=[...]`")


def check_data_files(cfg: Config) -> None:
    """A mixture source's YAML and the files and image folders of its units, before anything else is read (the
    model's config included): every missing one is listed with its unit and the path expected."""
    if cfg.data.source != "mixture":
        return
    from rscovlm.data.mixture import MixtureError, missing_data, training_mixture_config

    try:
        config = training_mixture_config(cfg.data)
    except (MixtureError, ValueError) as err:
        raise ConfigError(f"data (mixture): {err}") from err
    missing = missing_data(config.units)
    if missing:
        raise ConfigError(f"data (mixture): {len(missing)} missing file(s) or folder(s) of the mixture's units (data "
                          f"root {config.data_root or 'not set'}):\n  " + "\n  ".join(missing))


def check_pixels(cfg: Config, family) -> None:
    """``data.max_pixels`` must hold one merged patch of the family (``factor`` x ``factor`` pixels); smaller bounds
    cannot be met and would silently be exceeded."""
    smallest = family.factor * family.factor
    if cfg.data.max_pixels < smallest:
        raise ConfigError(f"data.max_pixels: {cfg.data.max_pixels} is below the smallest input of a {family.name} "
                          f"model ({family.factor}x{family.factor} = {smallest} pixels)")


def build_data(cfg: Config, with_report: bool = False, family=None):
    """The training dataset of ``cfg.data``. A source that writes box targets itself (the ``mixture``; see
    :func:`rscovlm.train.sources.source_uses_family`) is given the family of the checkpoint, so its targets are in
    the box frame that model reads and writes (resized pixels for Qwen2.5-VL, the 0-1000 grid for Qwen2-VL and
    Qwen3-VL) at its side factor; a family option the user forces on such a source that contradicts the checkpoint
    is an error (raised by the source). Errors become :class:`ConfigError` naming the source. Every image the data
    references is checked before returning (:func:`check_data_images`); ``with_report`` returns
    ``(dataset, report)``; ``family``: the checkpoint's, when the caller has it already."""
    from rscovlm.train.sources import build_source, source_uses_family

    if source_uses_family(cfg.data.source):
        family = family or checkpoint_family(cfg)
    else:
        family = None
    try:
        dataset = build_source(cfg.data, seed=cfg.train.seed, family=family)
    except (ValueError, OSError) as err:
        raise ConfigError(f"data ({cfg.data.source}): {err}") from err
    report = check_data_images(cfg, dataset)
    return (dataset, report) if with_report else dataset


def check_data_images(cfg: Config, dataset):
    """The pre-flight image check of ``dataset`` (:mod:`rscovlm.train.preflight`) as configured by
    ``data.check_images`` / ``data.skip_invalid_images``; prints its one-line summary. None when the dataset does
    not list its images or the check is off."""
    from rscovlm.train.preflight import PreflightError, apply_image_check, supports_image_check

    if cfg.data.check_images == "none" or not supports_image_check(dataset):
        return None
    shard, gather = (0, 1), None
    if _distributed():  # the ranks split the files and exchange what they found: every rank drops the same records
        import torch.distributed as dist

        shard = (dist.get_rank(), dist.get_world_size())

        def gather(found: dict) -> dict:
            parts: list = [None] * shard[1]
            dist.all_gather_object(parts, found)
            return {path: value for part in parts for path, value in part.items()}

    try:
        report = apply_image_check(dataset, cfg.data.check_images, cfg.data.skip_invalid_images, shard=shard,
                                   gather=gather)
    except PreflightError as err:
        raise ConfigError(str(err)) from err
    _say(f"data: {report.summary()}")
    for line in report.listing() if report.skipped_records else []:
        _say(line)
    return report


def build_trainer(cfg: Config, dataset=None, callbacks=None, console: str = "logs",
                  progress_desc: str | None = None):
    """The configured :class:`RSCoVLMTrainer` (model, processor and encoded dataset loaded). ``console``:
    ``"logs"`` = the Trainer's progress bar with every log dict printed, ``"bar"`` = only the bar (described by
    ``progress_desc``) with the latest loss."""
    from transformers import set_seed

    from rscovlm.model.collator import Collator, ConversationEncoder, EncodedDataset
    from rscovlm.model.loading import load_model, load_processor
    from rscovlm.resolution import ResolutionPolicy
    from rscovlm.train.sources import source_uses_family

    if console not in CONSOLE_MODES:
        raise ValueError(f"console must be one of {CONSOLE_MODES}, got {console!r}")
    check_model(cfg)  # a local path that is not there fails at once
    check_data_files(cfg)
    args = build_training_arguments(cfg)
    # before the weights: a bad data file or image should fail in seconds, not after loading 7B weights
    image_check = None
    family = checkpoint_family(cfg) if dataset is None and source_uses_family(cfg.data.source) else None
    if dataset is not None:
        conversations = dataset
    else:
        conversations, image_check = build_data(cfg, with_report=True, family=family)
    check_pixels(cfg, family or checkpoint_family(cfg))  # the model's config only
    set_seed(cfg.train.seed)
    model_cfg = cfg.model
    if model_cfg.dtype == "auto":
        # DeepSpeed keeps fp32 master weights itself; without it the weights stay fp32 under autocast
        bf16_weights = args.bf16 and args.deepspeed is not None
        model_cfg = type(model_cfg)(**{**model_cfg.__dict__, "dtype": "bfloat16" if bf16_weights else "float32"})
    try:
        model, family = load_model(model_cfg)
        processor = load_processor(cfg.model.model_name_or_path, cfg.data.min_pixels, cfg.data.max_pixels)
    except (OSError, KeyError, ValueError) as err:  # missing folder / unknown hub id / unknown family / all frozen
        raise _load_error(cfg.model.model_name_or_path, err) from err
    if args.gradient_checkpointing:
        model.config.use_cache = False
    policy = ResolutionPolicy(min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels,
                              factor=family.factor, uhr_min_pixels=max(cfg.data.max_pixels, 4 * 1008 * 1008))
    encoder = ConversationEncoder(processor, policy=policy, max_length=cfg.data.max_length)
    module_lrs = {k: v for k, v in (("vision_tower", cfg.train.vision_lr), ("merger", cfg.train.merger_lr))
                  if v is not None}
    trainer_cls = _trainer_class()
    # flash-attention reads packed samples from the position ids of a single row (batch size 1)
    flatten = cfg.train.packing and str(model.config._attn_implementation).startswith("flash")
    stream_options = {"seed": cfg.train.seed, "shuffle": cfg.data.shuffle, "packing": cfg.train.packing,
                      "max_length": cfg.data.max_length, "buffer": cfg.train.packing_buffer,
                      "epochs": cfg.train.num_train_epochs, "max_steps": cfg.train.max_steps,
                      "record_samples": cfg.train.record_samples}
    trainer = trainer_cls(
        model=model, args=args, train_dataset=EncodedDataset(conversations, encoder, drop=cfg.data.drop_overlong),
        data_collator=Collator(processor.tokenizer.pad_token_id, packing=cfg.train.packing, flatten=flatten),
        processing_class=processor, callbacks=callbacks, family=family, module_lrs=module_lrs,
        stream_options=stream_options,
    )
    trainer.image_check = image_check
    if console == "bar":
        from transformers import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_bar_only_progress(progress_desc))
    return trainer


def train(cfg: Config, dataset=None, callbacks=None, console: str = "logs",
          progress_desc: str | None = None) -> TrainResult:
    """Run training for ``cfg``; ``dataset`` (any map-style dataset of conversations) replaces the configured
    data source; ``console`` / ``progress_desc`` as in :func:`build_trainer`. Writes ``rscovlm_config.json`` and
    ``rscovlm_prompt_sets.json`` (the prompt sets the samples were built with,
    :func:`rscovlm.train.sources.dataset_prompt_sets`) beside the checkpoints."""
    if console not in CONSOLE_MODES:
        raise ValueError(f"console must be one of {CONSOLE_MODES}, got {console!r}")
    # everything that can be checked without the model first: resume folder, model path, data and images
    resume = _resume_path(cfg.train.resume_from_checkpoint, cfg.train.output_dir)
    trainer = build_trainer(cfg, dataset=dataset, callbacks=callbacks, console=console,
                            progress_desc=progress_desc)
    if _distributed():
        _release_process_group_at_exit()
    if resume is not None:
        trainer.stream_resume = _data_state(resume, trainer)
    out = Path(cfg.train.output_dir)
    if trainer.is_world_process_zero():
        from rscovlm.train.sources import dataset_prompt_sets

        out.mkdir(parents=True, exist_ok=True)
        (out / "rscovlm_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
        sets = dataset_prompt_sets(trainer.train_dataset.conversations)
        (out / "rscovlm_prompt_sets.json").write_text(json.dumps(sets, indent=2) + "\n")
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        _close_progress_bars(trainer)  # the error message then starts on its own line, not after the bar
        raise
    dropped = trainer.dropped_totals()
    trainer.save_model(str(out))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(output_dir=str(out), global_step=trainer.state.global_step,
                       training_loss=float(result.training_loss), losses=losses, dropped=dropped, trainer=trainer,
                       image_check=trainer.image_check)


def _data_state(checkpoint: str, trainer) -> dict:
    """The data stream's state stored in ``checkpoint``; for a checkpoint without one (written before the stream
    was stored), the position ``global_step x accumulation`` micro-batches into the run. A record of the batches
    (``train.record_samples``) loses the lines of the steps after the checkpoint, which the resumed run writes
    again."""
    path = Path(checkpoint) / DATA_STATE
    if path.is_file():
        state = json.loads(path.read_text())
    else:
        step = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"]
        state = {"consumed_batches": step * trainer.args.gradient_accumulation_steps}
    record = samples_record_path(trainer.args.output_dir, trainer.args.process_index, trainer.args.world_size)
    if record.is_file():
        step = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"]
        lines = [line for line in record.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        record.write_text("".join(line + "\n" for line in lines))
    return state


def _close_progress_bars(trainer) -> None:
    for callback in trainer.callback_handler.callbacks:
        bar = getattr(callback, "training_bar", None)
        if bar is not None:
            bar.close()
            callback.training_bar = None
