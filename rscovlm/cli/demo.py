"""``rscovlm demo``: synthetic data -> training -> inference -> scored report and overlay PNGs, offline."""

from __future__ import annotations

import dataclasses

from rscovlm.cli import CliError, library_output_to_stderr, status

HELP = ("train the offline tiny model on synthetic aerial scenes and score every task (about 2 min on 2 idle CPU "
        "cores, 3-4 min on busy ones)")


def register(sub) -> None:
    from rscovlm.demo import DemoConfig

    parser = sub.add_parser(
        "demo", help=HELP,
        description="Build the offline tiny Qwen2.5-VL, generate synthetic scenes with classification, VQA, "
                    "grounding and detection samples (the prompts and answer format of --prompt-set, the "
                    "reference's by default), train, answer every prompt, print accuracy / Acc@0.5 / "
                    "AP_nc / mF1 / exact answers (the table on stdout, progress on stderr) and write overlay PNGs "
                    "(ground truth | prediction). Same options on one machine, same report: the run is seeded "
                    "and uses exactly --threads threads. With --model CHECKPOINT --steps 0 it evaluates a real "
                    "checkpoint on the same scenes.",
    )
    for f in dataclasses.fields(DemoConfig):
        kind = {"int": int, "float": float}.get(str(f.type).replace("'", ""), str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=f.default,
                            help=f.metadata["help"].replace("%", "%%"))
    parser.set_defaults(handler=_demo)


def _demo(args) -> int:
    from rscovlm.demo import DemoConfig, DemoError, format_report, run_demo

    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)})
    if cfg.scenes < 1 or cfg.batch < 1 or cfg.threads < 1 or cfg.steps < 0 or cfg.holdout < 0:
        raise CliError("--scenes, --batch and --threads must be positive, --steps and --holdout not negative")
    try:
        with library_output_to_stderr():
            report = run_demo(cfg)
    except DemoError as err:
        raise CliError(str(err)) from err
    print(format_report(report))
    run = report["run"]
    done = (f"trained {cfg.steps} steps on {run['train_samples']} samples" if cfg.steps
            else f"no training ({run['model']} as is), scored {run['train_samples']} samples")
    status(f"{done} from {cfg.scenes} scenes, also scored on {cfg.holdout} "
          f"unseen scenes; {run['seconds']:.0f} s. Report: {cfg.out}/report.json, answers: "
          f"{cfg.out}/responses.jsonl, {run['overlays']} overlays (ground truth | prediction): {cfg.out}/overlays/")
    return 0
