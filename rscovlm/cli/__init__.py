"""The ``rscovlm`` command line.

Command modules (how a command is found and kept cheap to start)
----------------------------------------------------------------
Each module ``rscovlm/cli/NAME.py`` (not starting with ``_``) is the top-level command ``rscovlm NAME`` and is
found by its file name, so adding a command is adding a file. It defines

* ``HELP``: the one line shown for it in ``rscovlm --help``;
* ``register(sub)``: adds its parser (``add_group(sub, NAME, HELP)`` for a group, or
  ``sub.add_parser(NAME, help=HELP, ...)``) with its options, sub-commands and ``handler``.

Only the command being run is registered: ``rscovlm eval dota ...`` imports ``rscovlm.cli.eval`` and calls its
``register``; every other module is imported only to read its ``HELP`` (``rscovlm --help`` registers none). So,
to keep ``rscovlm --help`` and ``rscovlm CMD --help`` instant (well under 0.15 s):

* a command module imports at module level only the standard library and ``rscovlm.cli``;
* ``register`` imports nothing that loads numpy, torch, transformers, OpenCV or the like - choices and help
  texts that live in library modules come from light modules without such imports (e.g.
  :mod:`rscovlm.eval.names`), or are written out;
* handlers import the library (and with it numpy, torch, ...) when they run.

``tests/test_cli.py`` checks both for every module (no heavy package in ``sys.modules`` after ``--help``).
:func:`build_parser` without arguments registers every command (the full tree, for tests and docs checks). A
module without ``HELP`` still works but is registered in full for every command (slow start-up).

Every parser in the tree is a :class:`Parser` and formats its help with :class:`HelpFormatter`: a command's
``help`` (its line in the parent's list) doubles as its description unless it gives a longer one, and every
option's help ends with its choices and default. Streams: results (tables, listings, JSON, config dumps) go to
stdout; progress bars, stage and status lines (``wrote ...``, counts of what was written or skipped), notes and
errors go to stderr, so ``rscovlm ... > result.txt`` keeps only the result and piped logs do not interleave.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import textwrap


def _command_modules() -> list[str]:
    """Names of the command modules (the ``*.py`` files and packages of this folder not starting with ``_``)."""
    names = set()
    for folder in __path__:
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for e in entries:
                stem = e.name[:-3] if e.name.endswith(".py") else e.name if e.is_dir() and \
                    os.path.exists(os.path.join(e.path, "__init__.py")) else ""
                if stem.isidentifier() and not stem.startswith("_"):
                    names.add(stem)
    return sorted(names)


def format_default(value) -> str:
    """A default as the user would type it: lists space-separated (as ``nargs`` takes them)."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def shows_default(action: argparse.Action) -> bool:
    """Whether ``action``'s help states its default: options (and optional positionals) whose default means
    something, i.e. not None, not a flag's False/True, not suppressed."""
    if action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
        return False
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions keep their line breaks (each line is wrapped to the terminal); an option's help ends with
    ``(choices: ...; default: ...)``: the choices when a metavar hides the usual ``{a,b}``, the default when
    :func:`shows_default`."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent,
                                       break_on_hyphens=False)
                         for line in text.splitlines())

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if text is argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            return text
        notes = []
        if action.choices is not None and action.metavar is not None:
            notes.append("choices: " + ", ".join(str(c) for c in action.choices).replace("%", "%%"))
        if shows_default(action) and "%(default)" not in text:
            notes.append("default: " + format_default(action.default).replace("%", "%%"))
        return f"{text} ({'; '.join(notes)})".strip() if notes else text


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


class _Commands(argparse._SubParsersAction):
    """Sub-command collection whose commands get a description (their help as a sentence) when none is given."""

    def add_parser(self, name, **kwargs):
        if kwargs.get("description") is None and kwargs.get("help"):
            kwargs["description"] = _sentence(kwargs["help"])
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    """The parser class of every ``rscovlm`` command (sub-parsers inherit it): :class:`HelpFormatter` and
    commands with descriptions."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``rscovlm`` parser. ``only=None``: every command registered (the full tree); ``only=NAME``: just
    ``NAME`` registered, the others listed by their ``HELP`` (what :func:`main` builds; ``only=""``: none)."""
    from rscovlm import __version__

    parser = Parser(prog="rscovlm", description="Remote Sensing Co-trained VLM toolkit.")
    parser.add_argument("--version", action="version", version=f"rscovlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        summary = getattr(module, "HELP", None)
        if only is None or name == only or summary is None:
            module.register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command_of(argv: list[str]) -> str:
    """The command named on the command line (its first word that is not an option), or ``""``."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result = handler(args)
    except CliError as err:
        print(f"rscovlm: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


def status(message: str = "") -> None:
    """A stage or status line: to stderr (with the progress bars), flushed so it lands between them in order."""
    print(message, file=sys.stderr, flush=True)


def library_output_to_stderr():
    """Context manager for a handler's heavy imports and long runs: what libraries print to stdout goes to stderr.
    DeepSpeed (imported by transformers) binds its logger to the ``sys.stdout`` of its import time and the
    Trainer writes its log lines with ``tqdm.write`` (stdout); under this they join the progress bars."""
    return contextlib.redirect_stdout(sys.stderr)


def config_help(cls, name: str) -> str:
    """The help text of field ``name`` of the dataclass config ``cls`` (its ``metadata["help"]``), escaped for
    argparse."""
    return cls.__dataclass_fields__[name].metadata.get("help", "").replace("%", "%%")


def config_option(cls, name: str) -> dict:
    """``add_argument`` keywords of an option that sets field ``name`` of the dataclass config ``cls``: the field's
    default and help text, so the command line and the config cannot drift apart."""
    return {"default": cls.__dataclass_fields__[name].default, "help": config_help(cls, name)}


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def add_group(sub, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``rscovlm NAME ...``) and return its own sub-parser collection."""
    group = sub.add_parser(name, help=help)
    group.set_defaults(handler=lambda _args, _g=group: (_g.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
