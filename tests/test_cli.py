import argparse
import json
import re

import numpy as np
import pytest

from rscovlm.cli import build_parser, format_default, main, shows_default


def test_help_lists_command_groups(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "rscovlm" in out


def test_parser_builds():
    assert build_parser().prog == "rscovlm"


def _walk(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_command_renders_its_help():
    parsers = list(_walk(build_parser()))
    assert len(parsers) > 15
    for parser in parsers:
        assert parser.format_help()  # argparse expands %-formats here: a stray '%' in a help text raises


def _option_blocks(text: str) -> dict[str, str]:
    """Option string -> its whole entry (invocation + help, whitespace collapsed) in a rendered --help."""
    blocks: dict[str, str] = {}
    entry: list[str] = []
    for line in text.splitlines() + [""]:
        if re.match(r"^  \S", line) or not line.strip():
            if entry:
                joined = " ".join(" ".join(entry).split())
                for opt in re.findall(r"(?:^|, )(-{1,2}[\w-]+|\w[\w-]*)", joined.split("  ")[0]):
                    blocks.setdefault(opt.lstrip(", "), joined)
                blocks.setdefault(entry[0].split()[0], joined)
            entry = [line] if line.strip() else []
        elif entry:
            entry.append(line)
    return blocks


def test_every_command_has_a_description_and_shows_defaults_and_choices(monkeypatch):
    """Each command says what it does (no raw module docstrings), every option has help text, every option with
    a meaningful default shows '(default: X)' and every option with choices lists them, in the rendered help."""
    import rscovlm.cli as cli_pkg
    from rscovlm.cli import _command_modules

    monkeypatch.setenv("COLUMNS", "100")
    docstrings = {" ".join((__import__(f"rscovlm.cli.{m}", fromlist=["_"]).__doc__ or "").split())
                  for m in _command_modules()} | {" ".join(cli_pkg.__doc__.split())}
    checked_defaults = checked_choices = 0
    for parser in _walk(build_parser()):
        text = parser.format_help()
        desc = parser.description or ""
        assert desc.strip(), f"{parser.prog}: no description"
        assert "``" not in desc and ":func:" not in desc and " ".join(desc.split()) not in docstrings, parser.prog
        assert " ".join(desc.split()) in " ".join(text.split()), parser.prog
        blocks = _option_blocks(text)
        for action in parser._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction, argparse._VersionAction)):
                continue
            name = action.option_strings[0] if action.option_strings else action.metavar or action.dest
            assert action.help, f"{parser.prog} {name}: no help text"
            block = blocks[name]
            if shows_default(action):
                assert f"(default: {format_default(action.default)})" in block, (parser.prog, name, block)
                assert block.count("default:") == 1, f"{parser.prog} {name}: default stated twice: {block}"
                checked_defaults += 1
            elif action.default is not None and action.nargs != 0 and action.option_strings:
                pytest.fail(f"{parser.prog} {name}: default {action.default!r} not shown")
            if action.choices:
                assert all(str(c) in block for c in action.choices), (parser.prog, name, block)
                checked_choices += 1
    assert checked_defaults > 30 and checked_choices > 10
    # spot checks of the rendering the issue measured
    split = next(p for p in _walk(build_parser()) if p.prog == "rscovlm dota split").format_help()
    assert "(default: 1024)" in split and "{error,empty}" in split and "(default: error)" in split
    assert "tiny" in next(p for p in _walk(build_parser()) if p.prog == "rscovlm model tiny").description


def test_formatter_lists_choices_hidden_by_a_metavar_and_skips_meaningless_defaults():
    from rscovlm.cli import Parser

    p = Parser(prog="x")
    p.add_argument("--mode", choices=["a", "b"], default="a", metavar="M", help="mode")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--none", default=None, help="nothing")
    p.add_argument("--zero", type=int, default=0, help="zero is a real default")
    p.add_argument("--sizes", type=int, nargs="+", default=[3, 4], help="sizes")
    p.add_argument("--pct", default="5%", help="percent")
    text = " ".join(p.format_help().split())
    assert "mode (choices: a, b; default: a)" in text
    assert "a flag --none" in text and "nothing --zero" in text  # no '(default: False)' / '(default: None)'
    assert "zero is a real default (default: 0)" in text and "sizes (default: 3 4)" in text
    assert "percent (default: 5%)" in text
    sub = p.add_subparsers().add_parser("cmd", help="do the thing")
    assert sub.description == "Do the thing." and isinstance(sub, Parser)


def _scene(tmp_path):
    """One 96 x 96 image with its labelTxt and a perfect Task1 folder."""
    import cv2

    img_dir, ann_dir, det_dir = (tmp_path / d for d in ("img", "ann", "det"))
    for d in (img_dir, ann_dir, det_dir):
        d.mkdir()
    cv2.imwrite(str(img_dir / "P1.png"), np.full((96, 96, 3), 90, np.uint8))
    (ann_dir / "P1.txt").write_text("10 10 40 10 40 30 10 30 plane 0\n50 50 80 50 80 90 50 90 ship 0\n")
    (det_dir / "Task1_plane.txt").write_text("P1 0.9 10 10 40 10 40 30 10 30\n")
    (det_dir / "Task1_ship.txt").write_text("P1 0.8 50 50 80 50 80 90 50 90\n")
    return img_dir, ann_dir, det_dir


def test_results_on_stdout_progress_and_status_on_stderr(tmp_path, capfd):
    """Progress bars and stage/status lines share stderr (so piped logs keep their order); stdout holds only
    results: score tables, listings, JSON."""
    img_dir, ann_dir, det_dir = _scene(tmp_path)
    assert main(["dota", "split", "--img-dir", str(img_dir), "--ann-dir", str(ann_dir), "--out-dir",
                 str(tmp_path / "patches"), "--size", "64", "--gap", "16"]) == 0
    got = capfd.readouterr()
    assert got.out == ""
    assert "split: 100%" in got.err and "patches" in got.err  # the bar and the summary, both on stderr

    assert main(["model", "tiny", "--out", str(tmp_path / "tiny")]) == 0
    got = capfd.readouterr()
    assert got.out == "" and "written to" in got.err

    rc = main(["eval", "dota", "--gt-dir", str(ann_dir), "--det-dir", str(det_dir), "--json",
               str(tmp_path / "r.json")])
    got = capfd.readouterr()
    assert rc == 0 and "mAP" in got.out and "%|" not in got.out
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == pytest.approx(1.0)

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "a", "source": "s", "task": "vqa", "messages": [
        {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}]}) + "\n")
    assert main(["data", "validate", str(good)]) == 0
    got = capfd.readouterr()
    assert got.out == "" and f"{good}: ok" in got.err


def test_train_log_lines_join_the_progress_bar_on_stderr(tmp_path, capfd, tiny_model_dir):
    """`rscovlm train` printed the Trainer's log dicts (and DeepSpeed's import warning) on stdout between the bar
    lines on stderr; now all of it, and the closing summary, is on stderr."""
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yes"}]}) + "\n")
    assert main(["train", f"model.model_name_or_path={tiny_model_dir}", f"data.paths=[{data}]",
                 f"output_dir={tmp_path / 'run'}", "max_steps=2", "logging_steps=1", "save_steps=100",
                 "global_batch_size=1", "deepspeed=none", "dataloader_num_workers=0", "report_to=none"]) == 0
    got = capfd.readouterr()
    assert got.out == ""
    assert "{'loss'" in got.err and "100%" in got.err and "trained 2 steps" in got.err
    assert main(["train", f"model.model_name_or_path={tiny_model_dir}", "--print-config"]) == 0
    assert "max_steps" in capfd.readouterr().out  # a result: the resolved config


# ---- start-up: only the command being run is registered, and registering it loads no heavy package -----------

_HEAVY = ("numpy", "torch", "transformers", "cv2", "shapely", "yaml", "PIL", "numba", "matplotlib")


def _modules_after(argv: list[str]) -> set[str]:
    """Top-level and rscovlm modules imported by ``rscovlm ARGV`` (run in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nfrom rscovlm.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_loads_no_heavy_package_and_no_command_but_the_one_run():
    from rscovlm.cli import _command_modules

    top = _modules_after(["--help"])
    assert not [m for m in top if m.split(".")[0] in _HEAVY]
    assert not [m for m in top if m.startswith("rscovlm.") and not m.startswith(("rscovlm.cli", "rscovlm._"))]
    for argv in (["eval", "dota", "--help"], ["eval", "dota-sweep", "--help"], ["eval", "responses", "--help"]):
        mods = _modules_after(argv)
        assert not [m for m in mods if m.split(".")[0] in _HEAVY], argv
        assert "rscovlm.eval.dota_map" not in mods and "rscovlm.demo" not in mods, argv
    for name in _command_modules():  # every command module states its line of `rscovlm --help` (HELP)
        module = __import__(f"rscovlm.cli.{name}", fromlist=["_"])
        assert isinstance(getattr(module, "HELP", None), str) and module.HELP, name


def test_lazy_parser_lists_every_command_and_runs_the_chosen_one(capsys):
    from rscovlm.cli import _command_modules, build_parser

    full = build_parser()
    lazy = build_parser("eval")
    listed = [{c.dest: c.help for c in a._choices_actions} for p in (full, lazy) for a in p._actions
              if isinstance(a, argparse._SubParsersAction)]
    assert list(listed[0]) == list(listed[1]) == _command_modules()
    assert listed[0] == listed[1]  # the same line for each command in `rscovlm --help`
    with pytest.raises(SystemExit):
        main(["nonsense"])
    assert "invalid choice" in capsys.readouterr().err
