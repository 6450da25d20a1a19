"""The `kumoflow` command.

Each subsystem owns its subcommands: a module listed in COMMAND_MODULES has a
``register(subparsers)`` function that adds them and sets ``func`` on each
parser. Modules are imported only when the command line is built, so the
command starts fast and a subsystem's dependencies load only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "kumoflow.ofp.cli",
    "kumoflow.demo",
    "kumoflow.controller.cli",
    "kumoflow.switch.cli",
    "kumoflow.net.cli",
    "kumoflow.show",
    "kumoflow.apply",
    "kumoflow.pki",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kumoflow",
        description="kumoflow: an OpenFlow 1.3 SDN platform",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _version() -> str:
    from kumoflow import __version__

    return f"kumoflow {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
