"""``rscovlm model ...``: build the offline tiny model, describe a checkpoint."""

from __future__ import annotations

import sys

from rscovlm.cli import CliError, add_group, library_output_to_stderr

HELP = "model folders: build the offline tiny Qwen2.5-VL, inspect a checkpoint"


def register(sub) -> None:
    group = add_group(sub, "model", HELP)

    tiny = group.add_parser(
        "tiny", help="write a randomly initialised tiny Qwen2.5-VL folder (no downloads)",
        description="Write a randomly initialised tiny Qwen2.5-VL (real vision geometry, special tokens and chat "
                    "template; a small tokenizer trained on the fly; about 1 MB) that AutoProcessor and "
                    "AutoModelForImageTextToText load like any checkpoint. Nothing is downloaded. Train it with "
                    "`rscovlm train --config configs/tiny_cpu.yaml model.model_name_or_path=OUT data.paths=[...]`.",
    )
    tiny.add_argument("--out", required=True, help="output folder (created; files inside are overwritten)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(handler=_tiny)

    info = group.add_parser(
        "info", help="print the family, box frame and parameter counts of a checkpoint",
        description="Load a checkpoint (local folder or hub id) and print its model family, the box frame it "
                    "writes coordinates in, its patch geometry and parameter counts per module group.",
    )
    info.add_argument("model", help="local folder or hub id (a path that looks local is never looked up on the hub)")
    info.set_defaults(handler=_info)


def _tiny(args) -> int:
    with library_output_to_stderr():
        from rscovlm.model.tiny import TinySpec, build_tiny_model

        out = build_tiny_model(args.out, TinySpec(seed=args.seed))
    print(f"tiny Qwen2.5-VL written to {out}", file=sys.stderr)
    return 0


def _info(args) -> int:
    from rscovlm.model.loading import local_model_problem

    problem = local_model_problem(args.model)
    if problem is not None:
        raise CliError(problem)
    try:
        with library_output_to_stderr():
            from rscovlm.model.loading import ModelConfig, load_model, trainable_summary

            model, family = load_model(ModelConfig(model_name_or_path=args.model, dtype="float32"))
    except (OSError, KeyError, ValueError) as err:
        raise CliError(f"cannot load {args.model}: {err}") from err
    print(f"family: {family.name}  box frame: {family.box_frame}  patch: {family.patch_size}  "
          f"merge: {family.merge_size}  side granularity: {family.factor} px")
    for group, (trainable, total) in trainable_summary(model, family).items():
        print(f"{group:>15}: {total:,} parameters")
    return 0
