"""``rscovlm train --config X.yaml [section.key=value ...]``: supervised fine-tuning.

Run it under ``torchrun`` or ``accelerate launch`` for several GPUs or nodes (docs/training.md).
"""

from __future__ import annotations

import argparse
import sys

from rscovlm.cli import CliError, library_output_to_stderr

HELP = "fine-tune a Qwen-VL model on conversations (paper recipe by default)"


def register(sub) -> None:
    parser = sub.add_parser(
        "train", help=HELP,
        description="Fine-tune a Qwen-VL model. Settings come from --config (YAML with model / data / train "
                    "sections) and key=value overrides, e.g. train.learning_rate=1e-5 data.paths=[a.jsonl]. "
                    "Unknown keys and out-of-range values are errors. Before any weights load, a model path that "
                    "looks local must exist and every image the data references is checked (data.check_images, "
                    "data.skip_invalid_images). Offline: `rscovlm model tiny --out runs/tiny`, then "
                    "`rscovlm train --config configs/tiny_cpu.yaml data.paths=[...]`. Checkpoints are written "
                    "atomically with the data stream's position; train.resume_from_checkpoint=latest takes the "
                    "latest complete one and continues with exactly the samples an uninterrupted run would see. "
                    "--dry-run sets everything up without weights and without training.",
    )
    parser.add_argument("--config", help="YAML config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="set the run up without weights and without training: model config and processor, the "
                             "data (every unit file checked), the first samples encoded, packing, batch sizes, the "
                             "filled DeepSpeed config and what the run needs from its machine")
    parser.add_argument("--samples", type=int, default=4, help="--dry-run: samples built and encoded")
    parser.add_argument("--world-size", type=int, default=None,
                        help="--dry-run: number of processes of the planned run (default: WORLD_SIZE or 1)")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    import yaml

    from rscovlm.train.config import ConfigError, config_to_dict, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        raise CliError(str(err)) from err
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    from rscovlm.model.collator import SampleError

    if args.dry_run:
        try:
            with library_output_to_stderr():
                from rscovlm.train.dryrun import dry_run, format_dry_run

                report = dry_run(cfg, samples=args.samples, world_size=args.world_size)
        except (ConfigError, FileNotFoundError, SampleError) as err:
            raise CliError(str(err)) from err
        print(format_dry_run(report))
        return 0

    try:
        with library_output_to_stderr():
            from rscovlm.train.trainer import train

            result = train(cfg)
    except (ConfigError, FileNotFoundError, SampleError) as err:
        raise CliError(str(err)) from err
    if result.trainer is None or result.trainer.is_world_process_zero():
        dropped = ", ".join(f"{k}={v}" for k, v in result.dropped.items())
        skipped = result.image_check.skipped_records if result.image_check is not None else 0
        skipped_text = f"; skipped records with unusable images: {skipped}" if skipped else ""
        print(f"trained {result.global_step} steps, mean loss {result.training_loss:.4f}; dropped samples: "
              f"{dropped}{skipped_text}; model saved to {result.output_dir}", file=sys.stderr)
    return 0
