"""Every command written in README.md and docs/*.md exists as written.

Each ``rscovlm ...`` / ``torchrun ... -m rscovlm ...`` / ``accelerate launch ... -m rscovlm ...`` command found in
inline code or in fenced blocks is checked against the real CLI: its command path exists, every ``--option`` it
names is an option of that command, and every ``key=value`` override of ``rscovlm train`` is a real config key
that accepts the value (placeholders such as ``X.yaml`` or ``key=value`` are recognised and skipped). A renamed
flag or key therefore breaks this test instead of the user's first try. The README's runnable commands are run
end to end on small data by tests/test_readme_commands.py.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from rscovlm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```")
_SPAN = re.compile(r"`([^`]+)`")
_LAUNCHERS = ("rscovlm ", "torchrun ", "accelerate launch ")
PLACEHOLDER_VALUES = {"key=value", "KEY=VALUE", "..."}


def _fenced_and_prose(text: str) -> tuple[list[str], list[str]]:
    """Lines inside ``` fences (continuations joined) and lines outside them."""
    fenced, prose, inside, pending = [], [], False, ""
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            inside = not inside
            continue
        if not inside:
            prose.append(line)
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        fenced.append(line)
    return fenced, prose


def _indented_blocks(prose: list[str]) -> list[str]:
    """Markdown indented code lines (4 spaces after a blank line), continuations joined."""
    out, pending = [], ""
    for line in prose:
        if line.startswith("    ") and line.strip():
            line = pending + line.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            out.append(line)
    return out


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command text)`` of every CLI command in the docs."""
    found = []
    for path in DOC_FILES:
        text = path.read_text()
        fenced, prose = _fenced_and_prose(text)
        code_lines = fenced + _indented_blocks(prose)
        # a span may wrap onto the next line: read spans from the prose joined into one line
        spans = _SPAN.findall(" ".join(line.strip() for line in prose))
        for source in code_lines + spans:
            source = source.split(" #", 1)[0].strip()
            for part in source.split("&&"):
                part = part.strip()
                # a launcher named in prose without its module (`torchrun --nproc_per_node 2`) is not a command
                if part.startswith(_LAUNCHERS) and (part.startswith("rscovlm ") or "-m rscovlm" in part):
                    found.append((path.name, part))
    return found


def _expand(tokens: list[str]) -> list[str]:
    """Markdown conventions -> argv: the brackets of ``[--opt X]`` and ``[--flag]`` optional groups are dropped
    (the option is checked), ``...`` is dropped; brackets that are part of a value (``data.paths=[a.jsonl]``) stay."""
    clean = []
    for tok in tokens:
        tok = tok.replace("\\|", "|")
        if tok.startswith("[-") and tok.endswith("]"):  # a flag alone in brackets: `[--geojson]`
            tok = tok[1:-1]
        while tok.startswith("[") and tok.count("[") > tok.count("]"):
            tok = tok[1:]
        while tok.endswith("]") and tok.count("]") > tok.count("["):
            tok = tok[:-1]
        if tok and tok != "...":
            clean.append(tok)
    return clean


def _alternatives(value: str) -> list[str]:
    """``a|b`` and ``{a,b}`` spell alternatives of a value."""
    if value.startswith("{") and value.endswith("}"):
        return value[1:-1].split(",")
    return value.split("|")


def _argv(command: str) -> list[str]:
    tokens = shlex.split(command.replace("\\|", "|"))
    if tokens[0] in ("torchrun", "accelerate"):
        assert "-m" in tokens and tokens[tokens.index("-m") + 1] == "rscovlm", command
        tokens = tokens[tokens.index("-m") + 1:]
    assert tokens[0] == "rscovlm", command
    return _expand(tokens[1:])


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _resolve(argv: list[str]) -> list[tuple[list[str], argparse.ArgumentParser, list[str]]]:
    """Walk the command words; returns ``(path, parser, rest)`` for each alternative of ``a|b`` words."""
    results = []

    def walk(path, parser, rest):
        subs = _subparsers(parser)
        if rest and subs and not rest[0].startswith("-"):
            for word in rest[0].split("|"):
                assert word in subs, f"'rscovlm {' '.join(path + [word])}': no such command"
                walk(path + [word], subs[word], rest[1:])
            return
        results.append((path, parser, rest))

    walk([], build_parser(), argv)
    return results


def _check_overrides(command: str, rest: list[str]) -> int:
    from rscovlm.train.config import ConfigError, build_config

    overrides = [t for t in rest if "=" in t and not t.startswith("-") and t not in PLACEHOLDER_VALUES]
    for item in overrides:
        try:
            build_config({}, [item])
        except ConfigError as err:
            pytest.fail(f"{command!r}: override {item!r} is refused: {err}")
    return len(overrides)


COMMANDS = documented_commands()


def test_the_docs_hold_commands_of_every_group():
    groups = {_argv(c)[0] for _, c in COMMANDS if _argv(c)}
    assert {"demo", "train", "dota", "synth", "eval", "data", "model"} <= groups, groups


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_matches_the_cli(where, command):
    for path, parser, rest in _resolve(_argv(command)):
        actions = {opt: action for action in parser._actions for opt in action.option_strings}
        for i, tok in enumerate(rest):
            if not tok.startswith("--"):
                continue
            name, _, inline = tok.partition("=")
            assert name in actions, f"{where}: '{command}': 'rscovlm {' '.join(path)}' has no option {name}"
            action = actions[name]
            value = inline or (rest[i + 1] if i + 1 < len(rest) and action.nargs != 0 else "")
            if action.choices and value and not value.isupper():  # upper case = a placeholder such as SET
                for alt in _alternatives(value):
                    assert alt in action.choices, f"{where}: '{command}': {name} {alt!r} is not one of " \
                                                  f"{sorted(action.choices)}"
        if path == ["train"]:
            _check_overrides(command, rest)
