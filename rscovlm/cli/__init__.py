"""The ``rscovlm`` command line.

Each module in this package is one command group and exposes ``register(subparsers)``; the modules are found
by name, so adding a command group is adding a file. Handlers import their heavy dependencies (torch,
transformers) lazily so that ``rscovlm --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    from rscovlm import __version__

    parser = argparse.ArgumentParser(prog="rscovlm", description="Remote Sensing Co-trained VLM toolkit.")
    parser.add_argument("--version", action="version", version=f"rscovlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def add_group(sub, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``rscovlm NAME ...``) and return its own sub-parser collection."""
    group = sub.add_parser(name, help=help, description=help)
    group.set_defaults(handler=lambda _args, _g=group: (_g.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
