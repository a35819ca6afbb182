"""The README's commands, run as a user runs them: whole commands in a fresh folder, on small data.

Every command of README.md (as found by tests/test_docs_commands.py) needs a recipe here, keyed by its command
path (``dota split``, ``train``, ...); a command without one fails the test, so the README cannot gain a command
that no test runs. A recipe runs the README's own argv with its placeholders filled in (``I`` -> an image folder,
``/path/to/Qwen2.5-VL-7B-Instruct`` -> the demo's trained model, ...) and, where the README's values are sized for
real data, states the smaller values it substitutes. Commands that only name a command in prose (``rscovlm
train`` without arguments) are covered by a runnable command of the same path. The claims the README makes about
the demo's scores are checked against the report it writes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_docs_commands import _argv, _resolve, documented_commands

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.readme]

README_COMMANDS = [c for where, c in documented_commands() if where == "README.md"]


@dataclass
class Workspace:
    """The folder the commands run in (the README's relative paths resolve against it) and what they made."""

    dir: Path
    made: dict = field(default_factory=dict)

    def run(self, argv: list[str], timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
        exe = argv[0]
        if exe in ("rscovlm", "torchrun"):
            exe = str(BIN / exe) if (BIN / exe).exists() else shutil.which(exe)
        full_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                      "MASTER_ADDR", "MASTER_PORT")}
        full_env.update(env or {})
        proc = subprocess.run([exe, *argv[1:]], cwd=self.dir, capture_output=True, text=True, timeout=timeout,
                              env=full_env)
        assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        return proc


def _sub(argv: list[str], mapping: dict[str, str]) -> list[str]:
    return [mapping.get(tok, tok) for tok in argv]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


# The tiny-data settings appended to training commands whose README form trains a 7B model on GPUs.
# (the paper config reads the RSCoVLM mixture; here the demo's conversations as jsonl)
TINY_TRAIN = ["model.model_name_or_path=demo_out/tiny_model", "data.source=jsonl",
              "data.paths=[demo_out/data/train.jsonl]",
              "max_steps=2", "global_batch_size=4", "per_device_batch_size=2", "precision=fp32",
              "use_liger_kernel=false", "dataloader_num_workers=0", "save_steps=1000"]


# ---- recipes: command path -> run(argv, workspace) ----------------------------------------------------------

RECIPES = {}


def recipe(*paths: str, order: int):
    def register(fn):
        for p in paths:
            RECIPES[p] = (order, fn)
        return fn
    return register


def _scores(report: dict, split: str) -> dict:
    r = report[split]
    return {"classification": r["classification"]["accuracy"], "vqa": r["vqa"]["accuracy"],
            "Acc@0.5": r["grounding"]["acc@0.5"], "AP_nc50": r["detection"]["AP_nc50"],
            "AP_nc50:95": r["detection"]["AP_nc50:95"], "mF1": r["detection"]["mF1"], "exact": r["all"]["exact"]}


def check_readme_demo_claims(report: dict) -> None:
    """README: every trained-scene prompt answered exactly; 100% classification, VQA, Acc@0.5, AP_nc50, mF1;
    AP_nc50:95 95-99%; held-out scenes far lower."""
    train, held = _scores(report, "train"), _scores(report, "holdout")
    for key in ("classification", "vqa", "Acc@0.5", "AP_nc50", "mF1", "exact"):
        assert train[key] == pytest.approx(1.0), (key, train)
    assert 0.95 <= train["AP_nc50:95"] <= 1.0, train
    assert held["exact"] < 0.5 and held["AP_nc50"] < 0.5, held


@recipe("demo", order=0)
def run_demo(argv: list[str], ws: Workspace) -> None:
    if "--model" not in argv:
        proc = ws.run(argv)
        report = json.loads((ws.dir / "demo_out" / "report.json").read_text())
        check_readme_demo_claims(report)
        assert proc.stdout.splitlines()[0].split()[:2] == ["task", "metric"], proc.stdout  # the table on stdout
        assert "1/4 scenes" in proc.stderr and "4/4 answering" in proc.stderr  # progress on stderr
        ws.made["demo"] = report
        return
    # --model CHECKPOINT --steps 0: the demo's trained model, saved and loaded back, on the same scenes
    argv = _sub(argv, {"/path/to/Qwen2.5-VL-7B-Instruct": "demo_out/run"}) + ["--out", "demo_eval"]
    ws.run(argv)
    report = json.loads((ws.dir / "demo_eval" / "report.json").read_text())
    assert _scores(report, "train") == _scores(ws.made["demo"], "train")


@recipe("train", order=1)
def run_train(argv: list[str], ws: Workspace) -> None:
    if "configs/tiny_cpu.yaml" in argv:  # the offline command, as written
        proc = ws.run(argv)
        assert re.search(r"trained 100 steps", proc.stderr), proc.stderr[-2000:]
        return
    # the paper config: one process, DeepSpeed ZeRO-1 on the CPU; `[key=value ...]` = the tiny-data settings
    argv = [t for t in argv if t not in ("key=value", "...")] + TINY_TRAIN + ["output_dir=runs/paper_one"]
    proc = ws.run(argv)
    assert "trained 2 steps" in proc.stderr


@recipe("model tiny", order=1)
def run_model_tiny(argv: list[str], ws: Workspace) -> None:
    ws.run(argv)
    assert (ws.dir / "runs" / "tiny" / "config.json").is_file()


def torchrun_recipe(argv: list[str], ws: Workspace) -> None:
    """Both launch forms with 2 processes on this machine (the README's 8 GPUs / N nodes)."""
    config_yaml = ws.dir / "X.yaml"
    config_yaml.write_text((ROOT / "configs" / "tiny_cpu.yaml").read_text())
    mapping = {"8": "2", "N": "1", "$NODE_RANK": "0", "$MASTER_ADDR": "127.0.0.1", "29500": _free_port(),
               "X.yaml": str(config_yaml)}
    argv = _sub(argv, mapping) + TINY_TRAIN + [f"output_dir=runs/torchrun_{len(ws.made)}"]
    if "--master_port" not in argv:
        argv[1:1] = ["--master_port", _free_port()]
    proc = ws.run(argv)
    assert "trained 2 steps" in proc.stderr
    ws.made[f"torchrun_{len(ws.made)}"] = True


@recipe("synth scenes", order=2)
def run_synth_scenes(argv: list[str], ws: Workspace) -> None:
    # README: 8 scenes of 4000 px; here 3 scenes of 1400 px
    argv = _sub(argv, {"DIR": "scenes", "8": "3", "4000": "1400"})
    ws.run(argv)
    assert len(list((ws.dir / "scenes" / "images").glob("*.png"))) == 3


@recipe("dota split", order=3)
def run_dota_split(argv: list[str], ws: Workspace) -> None:
    # README: 1024 px patches of DOTA images; here 1024 px patches of the 1400 px synthetic scenes
    argv = _sub(argv, {"I": "scenes/images", "A": "scenes/labelTxt", "O": "split"})
    ws.run(argv)
    assert len(list((ws.dir / "split" / "images").glob("*.png"))) == 3 * 4


@recipe("data convert", order=4)
def run_data_convert(argv: list[str], ws: Workspace) -> None:
    # every source is converted by tests/test_data_converters.py on records in its released format; here the
    # README command on the DOTA source, whose files the synthetic split provides
    argv = [("dota" if t.startswith("{") else t) for t in argv]
    argv = _sub(argv, {"SRC": "split/annfiles", "DIR": "split/images", "OUT": "dota_split.json"})
    proc = ws.run(argv)
    assert (ws.dir / "dota_split.json").is_file() and (ws.dir / "dota_split.json.report.json").is_file()
    assert proc.stderr


@recipe("data validate", order=5)
def run_data_validate(argv: list[str], ws: Workspace) -> None:
    ws.run(_sub(argv, {"OUT": "dota_split.json"}))


@recipe("data mix-stats", "data preview", order=6)
def run_mixture_commands(argv: list[str], ws: Workspace) -> None:
    mix = ws.dir / "mix.yaml"
    if not mix.exists():
        mix.write_text("seed: 0\nunits:\n  - name: dota\n    path: dota_split.json\n    type: detection\n"
                       "    images: split/images\n    box_kinds: [hbb, obb, quad]\n    weight: 1\n")
    proc = ws.run(argv)
    if argv[:3] == ["rscovlm", "data", "preview"]:
        assert list((ws.dir / "prev").iterdir())
    else:
        assert "dota" in proc.stdout


@recipe("synth big", order=7)
def run_synth_big(argv: list[str], ws: Workspace) -> None:
    # README: 30000 x 30000 px; here 3000 x 2000 px (bounded memory at any size: benchmarks/bench_memory_big.py)
    argv = _sub(argv, {"30000": "3000"})
    argv[argv.index("--height") + 1] = "2000"
    ws.run(argv)
    assert (ws.dir / "big.tif").is_file() and (ws.dir / "big.txt").is_file()


def _write_eval_folders(ws: Workspace) -> None:
    """labelTxt/ and Task1/ of a small generated set; PATCH_TASK1 = detections on the split patches."""
    if (ws.dir / "labelTxt").exists():
        return
    from rscovlm.eval.synthetic_dets import make_detection_set, write_detection_set
    from rscovlm.protocol.categories import DOTA_V1_0

    ds = make_detection_set(12, 300, 900, classes=tuple(DOTA_V1_0.classes), seed=0)
    write_detection_set(ds, ws.dir / "labelTxt", ws.dir / "Task1")


@recipe("dota merge", order=8)
def run_dota_merge(argv: list[str], ws: Workspace) -> None:
    # patch detections = the split's own labels with score 1 (merge must give back one box per object)
    task1 = ws.dir / "PATCH_TASK1"
    task1.mkdir(exist_ok=True)
    rows: dict[str, list[str]] = {}
    for ann in sorted((ws.dir / "split" / "annfiles").glob("*.txt")):
        for line in ann.read_text().splitlines():
            parts = line.split()
            rows.setdefault(parts[8], []).append(f"{ann.stem} 1.0 {' '.join(parts[:8])}")
    for cls, lines in rows.items():
        (task1 / f"Task1_{cls}.txt").write_text("\n".join(lines) + "\n")
    ws.run(argv)
    assert list((ws.dir / "FULL_TASK1").glob("Task1_*.txt"))


@recipe("eval dota", "eval dota-nc", "eval dota-sweep", "eval dota-f1", order=9)
def run_eval_folders(argv: list[str], ws: Workspace) -> None:
    _write_eval_folders(ws)
    # `[--protocol dota|mmrotate1x|mmrotate]`: every alternative of every bracketed choice is run
    runs = [argv]
    for i, tok in enumerate(argv):
        if "|" in tok:
            runs = [r[:i] + [alt] + r[i + 1:] for r in runs for alt in tok.split("|")]
    for one in runs:
        proc = ws.run(one)
        assert proc.stdout.strip()
    if "--plot" in argv:
        assert (ws.dir / argv[argv.index("--plot") + 1]).is_file()


@recipe("eval responses", order=10)
def run_eval_responses(argv: list[str], ws: Workspace) -> None:
    _write_eval_folders(ws)
    # preds.jsonl: the demo's detection answers are for its own scenes; here responses that restate labelTxt
    from rscovlm.dota.io import read_labeltxt
    from rscovlm.protocol.detection import write_detections

    lines = []
    for path in sorted((ws.dir / "labelTxt").glob("*.txt")):
        objects = read_labeltxt(path).objects
        lines.append(json.dumps({"image_id": path.stem, "response": write_detections(objects, "plain"),
                                 "resize": {"original": [1024, 1024], "model": [1024, 1024]}}))
    (ws.dir / "preds.jsonl").write_text("\n".join(lines) + "\n")
    proc = ws.run(argv)
    assert "unparsed 0.00%" in proc.stdout


@recipe("eval list", order=11)
def run_eval_list(argv: list[str], ws: Workspace) -> None:
    proc = ws.run(argv)
    assert "lrs_vqa: LRS-VQA, one pass" in proc.stdout and "dota_val:" in proc.stdout


@recipe("eval run", order=11)
def run_eval_bench(argv: list[str], ws: Workspace) -> None:
    # README: a real checkpoint on the released benchmark files; here the demo's trained tiny model on fake files
    # in the same layouts, two items each and short answers
    from _fake_bench import make_fake_root

    if not (ws.dir / "DATA").exists():
        make_fake_root(ws.dir / "DATA")
    argv = _sub(argv, {"/path/to/checkpoint": "demo_out/run"}) + ["--limit", "2", "--max-new-tokens", "16"]
    proc = ws.run(argv)
    assert "lrs_vqa: 2 answered" in proc.stderr and "dota_val: 1 answered" in proc.stderr
    for bench in ("lrs_vqa", "dota_val"):
        assert len((ws.dir / "runs" / "ckpt" / bench / "answers.jsonl").read_text().splitlines()) in (1, 2)
    proc = ws.run(argv)  # run again: everything is there
    assert "lrs_vqa: 0 answered, 2 already there" in proc.stderr


@recipe("eval score", order=12)
def run_eval_score(argv: list[str], ws: Workspace) -> None:
    proc = ws.run(argv)
    assert "### LRS-VQA, one pass (`lrs_vqa`" in proc.stdout and "| AP_nc50 |" in proc.stdout
    assert json.loads((ws.dir / "runs" / "ckpt" / "scores.json").read_text())["results"]["dota_val"]["metrics"]


# predict / zoom / detect: the demo's untrained tiny model folder on a synthetic scene (1400 px, 16 patches of
# 512); answers are cut at a few new tokens (the README's commands use the per-task budgets, up to 16384) and
# images, patches (and Max Mode's upsampling) go to at most 448^2 pixels instead of 1008^2, to keep the run short.
# One alternative of a `a|b` value runs: the transformers backend (openai: tests/test_infer_cli.py and
# test_infer_zoom.py against local servers; vllm: tests/test_infer_vllm.py where vLLM and a GPU exist), the
# original crop source (the untrained model makes no tool call; both sources: tests/test_infer_zoom.py).
INFER_SMALL = ["--max-new-tokens", "6", "--max-pixels", str(448 * 448), "--no-progress"]


def _infer_argv(argv: list[str], ws: Workspace) -> list[str]:
    scene = sorted((ws.dir / "scenes" / "images").glob("*.png"))[0]
    argv = _sub(argv, {"IMAGE": str(scene.relative_to(ws.dir)), "M": "demo_out/tiny_model", "DIR": "detect_out"})
    return [_first_alternative(t) if t.startswith(("transformers|", "original|")) else t for t in argv] + INFER_SMALL


@recipe("predict", "zoom", order=11)
def run_predict_zoom(argv: list[str], ws: Workspace) -> None:
    proc = ws.run(_infer_argv(argv, ws))
    (line,) = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    assert line["size"] == [1400, 1400] and line["n_new_tokens"] <= 6 and "raw" in line, line
    assert "1 images, 1 answers" in proc.stderr, proc.stderr


@recipe("detect", order=11)
def run_detect(argv: list[str], ws: Workspace) -> None:
    proc = ws.run(_infer_argv(argv, ws) + ["--categories", "plane,ship"])
    stem = sorted((ws.dir / "scenes" / "images").glob("*.png"))[0].stem
    assert "1 images, 16 patches answered" in proc.stderr, proc.stderr
    assert (ws.dir / "detect_out" / "labelTxt" / f"{stem}.txt").is_file()
    assert (ws.dir / "detect_out" / "geojson" / f"{stem}.geojson").is_file()
    assert sorted(p.name for p in (ws.dir / "detect_out" / "Task1").iterdir()) == ["Task1_plane.txt",
                                                                                  "Task1_ship.txt"]


# ---- the test ----------------------------------------------------------------------------------------------

def _command_path(command: str) -> tuple[str, list[str]]:
    argv = _argv(command)
    path, _, _ = _resolve(argv)[0]
    return " ".join(path), argv


def _runnable(command: str) -> bool:
    """Whether the command is complete (argparse accepts it) rather than a command named in prose."""
    from rscovlm.cli import build_parser

    argv = _argv(command)
    if command.startswith(("torchrun", "accelerate")):
        return True
    try:
        with open(os.devnull, "w") as devnull, _redirect_stderr(devnull):
            build_parser().parse_args([_first_alternative(a) for a in argv])
    except SystemExit:
        return False
    return True


def _first_alternative(token: str) -> str:
    if token.startswith("{") and token.endswith("}"):
        return token[1:-1].split(",")[0]
    return token.split("|")[0]


def _redirect_stderr(target):
    import contextlib

    return contextlib.redirect_stderr(target)


def test_every_readme_command_has_a_recipe_or_a_runnable_sibling():
    runnable_paths = {_command_path(c)[0] for c in README_COMMANDS if _runnable(c)}
    for command in README_COMMANDS:
        path, _ = _command_path(command)
        if command.startswith(("torchrun", "accelerate")):
            continue
        assert path in RECIPES, f"README command {command!r}: no recipe for 'rscovlm {path}' in this file"
        if not _runnable(command):
            assert path in runnable_paths, f"README names {command!r} but never gives it runnable"


def test_readme_commands_run(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("readme"))
    (ws.dir / "configs").symlink_to(ROOT / "configs")
    plan = []
    for k, command in enumerate(README_COMMANDS):
        if not _runnable(command):
            continue
        path, argv = _command_path(command)
        if command.startswith(("torchrun", "accelerate")):
            plan.append((1.5, k, command, torchrun_recipe, shlex.split(command)))
        else:
            order, fn = RECIPES[path]
            plan.append((order, k, command, fn, ["rscovlm", *argv]))
    for _, _, command, fn, argv in sorted(plan, key=lambda p: p[:2]):
        try:
            fn(argv, ws)
        except AssertionError as err:
            raise AssertionError(f"README command {command!r}: {err}") from None
