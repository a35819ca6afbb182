"""``rscovlm data ...``: convert sources to unified records, validate them, inspect and preview mixtures."""

from __future__ import annotations

import argparse
import sys

from rscovlm.cli import CliError, add_group

HELP = "data curation: convert, validate, mixture statistics, previews"


def register(sub) -> None:
    from rscovlm.protocol.categories import CATEGORY_SETS

    group = add_group(sub, "data", HELP)

    p = group.add_parser("convert", help="convert one source to unified records (+ OUT.report.json)",
                         description="Convert one source dataset to unified records (conversations as jsonl, "
                                     "detection as COCO json, grounding as jsonl; boxes in original pixels) and "
                                     "write a count of every change and drop to OUT.report.json. The input is "
                                     "streamed (bounded memory) with a progress bar; a killed run is resumed by "
                                     "running the same command again (OUT.partial + OUT.partial.ckpt). `rscovlm "
                                     "data sources` lists the sources.")
    p.add_argument("--source", required=True, help="source name (see `rscovlm data sources`)")
    p.add_argument("--in", dest="input", required=True,
                   help="source file or folder (DOTA labelTxt folder; parquet file or folder of shards)")
    p.add_argument("--images", default=None,
                   help="image root of the source (paths stay relative to it); for parquet input the folder the "
                        "embedded images are written to")
    p.add_argument("--out", required=True, help="output file (.jsonl, or .json for COCO detection)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="drop malformed records and count them instead of stopping at the first one")
    p.add_argument("--no-clean", action="store_true", help="do not apply the rule-based text cleaning")
    p.add_argument("--typo-table", default=None, help="YAML typo table replacing the packaged one")
    p.add_argument("--task", default=None, help="task name for records whose source names none")
    p.add_argument("--categories", default=None, choices=sorted(CATEGORY_SETS),
                   help="--source dota: class vocabulary of the labels; dota-v1.0 when not given")
    p.add_argument("--checkpoint-every", type=int, default=2000,
                   help="input records between checkpoints of the output (resume after a kill)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_convert)

    p = group.add_parser("build-zoom", help="build LRS-VQA-Zoom: zoom-chain conversations from UHR detection labels",
                         description="Build LRS-VQA-Zoom (paper 3.4) from UHR detection datasets (DOTA labelTxt "
                                     "v1.0/1.5/2.0, STAR, GLH-Bridge, unified COCO files): template count/compare "
                                     "questions on a 3 x 3 grid, LLM region QA from an OpenAI-compatible endpoint "
                                     "(cached, resumable), multiple-choice conversion; written as zoom-chain or "
                                     "single-turn conversation records OUT/{template,region,mcq}.jsonl with a "
                                     "summary by type, category and source. Config fields: docs/zoom_data.md, "
                                     "configs/data/zoom_data.yaml.")
    p.add_argument("--config", required=True, help="build config YAML")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_build_zoom)

    p = group.add_parser("sources", help="list the registered converters")
    p.set_defaults(handler=_sources)

    p = group.add_parser("validate", help="check a unified record file; lists file:line: field: problem")
    p.add_argument("file", help="unified record file (.jsonl, or .json for COCO detection)")
    p.add_argument("--kind", choices=["conversation", "detection", "grounding"], default=None,
                   help="record kind (default: detected from the file)")
    p.add_argument("--images", default=None, help="also check that every image exists under this root")
    p.add_argument("--max-print", type=int, default=200, help="print at most this many problems")
    p.set_defaults(handler=_validate)

    p = group.add_parser("mix-stats", help="effective shares of a mixture and its expected tokens per epoch",
                         description="Effective shares of a mixture by unit, source, task and box kind (weights "
                                     "and the reference's rates side by side) and its expected tokens per epoch, "
                                     "counted on built samples. CONFIG is a mixture YAML or a training config "
                                     "with data.source: mixture (then its data section sets the data root, pixel "
                                     "bounds and max_length, and its model the tokenizer). A missing unit file or "
                                     "image folder is an error naming the unit and the path expected.")
    p.add_argument("config", help="mixture YAML, or training config (configs/*.yaml) using a mixture")
    p.add_argument("--prompt-set", default=None,
                   help="prompt set (name or folder) replacing the mixture's (builder and units); shown per unit")
    p.add_argument("--data-root", default=None,
                   help="folder ${data_root} in unit paths stands for (replaces the config's)")
    p.add_argument("--model", default=None,
                   help="model folder whose processor counts the tokens exactly (default: a training config's "
                        "model when it loads offline; otherwise an approximate rule)")
    p.add_argument("--samples-per-unit", type=int, default=32, help="built samples counted per unit; 0 = no tokens")
    p.add_argument("--max-length", type=int, default=None,
                   help="token limit per sample (default: the training config's data.max_length, else 6144)")
    p.set_defaults(handler=_mix_stats)

    p = group.add_parser("preview", help="render built samples (image with boxes, prompt, target) to PNG + HTML")
    p.add_argument("config", help="mixture YAML")
    p.add_argument("--n", type=int, default=8, help="number of samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--epoch", type=int, default=0, help="mixture epoch to draw from")
    p.add_argument("--eval", action="store_true", help="deterministic evaluation prompts instead of training ones")
    p.add_argument("--prompt-set", default=None,
                   help="prompt set (name or folder: reference, rscovlm-v0, ...) replacing the mixture's (builder "
                        "and units); default: the mixture's")
    p.set_defaults(handler=_preview)


def _build_zoom(args: argparse.Namespace) -> int:
    from rscovlm.data.zoom.build import build_zoom, load_build_config
    from rscovlm.data.zoom.inputs import InputError
    from rscovlm.infer.openai_backend import OpenAIBackendError

    try:
        cfg = load_build_config(args.config)
        summary = build_zoom(cfg, progress=not args.no_progress)
    except (InputError, OpenAIBackendError, ValueError, OSError) as err:
        raise CliError(str(err))
    print(summary.format())
    print(f"wrote {cfg.out}/{{template,region,mcq}}.jsonl and summary.json", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from rscovlm.data.converters import CONVERTERS, ConvertConfig, convert, report_path
    from rscovlm.data.records import RecordError

    if args.source not in CONVERTERS:
        raise CliError(f"unknown source {args.source!r}; known: {', '.join(sorted(CONVERTERS))}")
    if args.categories is not None and args.source != "dota":
        raise CliError(f"--categories is for --source dota (the DOTA class vocabulary), not {args.source!r}")
    if args.checkpoint_every < 1:
        raise CliError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    cfg = ConvertConfig(input=args.input, output=args.out, images=args.images, skip_invalid=args.skip_invalid,
                        clean=not args.no_clean, typo_table=args.typo_table, task=args.task,
                        categories=args.categories, checkpoint_every=args.checkpoint_every,
                        progress=not args.no_progress)
    try:
        report = convert(args.source, cfg)
    except RecordError as err:
        hint = "" if args.skip_invalid else " (use --skip-invalid to drop and count malformed records)"
        raise CliError(f"{err}{hint}")
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as err:
        # ValueError: e.g. a bad --typo-table; ImportError: a missing optional package (names its extra)
        raise CliError(str(err))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    print(report.summary(), file=sys.stderr)
    print(f"report: {report_path(args.out)}", file=sys.stderr)
    return 0


def _sources(args: argparse.Namespace) -> int:
    from rscovlm.data.converters import CONVERTERS

    for name, cls in sorted(CONVERTERS.items()):
        print(f"{name:16s} {cls.summary}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from rscovlm.data.records import validate_file

    try:
        problems = validate_file(args.file, args.kind, args.images)
    except (FileNotFoundError, IsADirectoryError) as err:
        raise CliError(str(err))
    for prob in problems[: args.max_print]:
        print(prob)
    if len(problems) > args.max_print:
        print(f"... and {len(problems) - args.max_print} more")
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: ok", file=sys.stderr)
    return 0


def _mix_stats(args: argparse.Namespace) -> int:
    from rscovlm.data.mixture import MixtureError, format_stats
    from rscovlm.data.records import RecordError
    from rscovlm.data.tokens import estimate_tokens, format_tokens
    from rscovlm.train.sources import mix_stats_inputs  # a mixture YAML or a training config that uses one

    try:
        mix, counter, settings = mix_stats_inputs(args.config, prompt_set=args.prompt_set, data_root=args.data_root,
                                                  model=args.model, max_length=args.max_length)
        print(format_stats(mix.stats()))
        if args.samples_per_unit > 0:
            estimate = estimate_tokens(mix, counter, per_unit=args.samples_per_unit)
            print(format_tokens(estimate, settings["max_length"], settings.get("global_batch"), settings["note"]))
    except (MixtureError, RecordError, ValueError, OSError) as err:
        raise CliError(str(err))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from rscovlm.data.builder import BuildError
    from rscovlm.data.mixture import MixtureError
    from rscovlm.data.preview import render_preview
    from rscovlm.data.records import RecordError

    try:
        index = render_preview(args.config, args.out, n=args.n, epoch=args.epoch, eval_mode=args.eval,
                               prompt_set=args.prompt_set)
    except (MixtureError, BuildError, RecordError, FileNotFoundError) as err:
        raise CliError(str(err))
    print(f"wrote {index}", file=sys.stderr)
    return 0
