"""The ``bitlens`` command: the GUI with no subcommand, headless work with one.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Errors cross one boundary here: a
:class:`~bitlens.core.errors.BitlensError` becomes a one-line message and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from bitlens import __version__
from bitlens.core.errors import BitlensError

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("inspect", "eval", "sweep", "search", "plan", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitlens",
        usage="%(prog)s [MODEL.onnx] | %(prog)s COMMAND ...",
        description=(
            "Inspect mixed-precision quantization of ONNX models. "
            "Without a subcommand, opens the Bitlens window (on MODEL.onnx if given, "
            "else on the bundled image sample)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bitlens {__version__}")
    # Smoke tests of the window: close it after MS milliseconds once idle (hidden).
    parser.add_argument("--quit-after", type=int, metavar="MS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="open the window offscreen on the image sample, evaluate and export, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"bitlens.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    model = None
    # `bitlens MODEL.onnx [options]`: a first word that is neither a subcommand nor an
    # option is a model for the window.
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        model = argv.pop(0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if model is not None and args.command is not None:
        parser.error(f"a model path ({model}) cannot come before the {args.command} subcommand")
    if args.command is None and args.selftest:
        from bitlens.gui.selftest import run as selftest

        return selftest()
    if args.command is None:
        args.model = model  # subcommands have their own `model` argument
        return _open_gui(args)
    try:  # the one memory budget holds from the first file read on
        from bitlens.cli.common import budget_of
        from bitlens.core.limits import set_memory_budget

        set_memory_budget(None)  # main() may run more than once in a process (tests)
        budget_of(args)
    except BitlensError as exc:
        print(f"bitlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)  # the core's warnings, e.g. a CPU fallback
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("bitlens: %(message)s"))
    logging.getLogger("bitlens").addHandler(handler)
    try:
        return int(args.func(args))
    except BitlensError as exc:
        print(f"bitlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`bitlens inspect m.onnx | head`): not an error of ours.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"bitlens {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("bitlens").removeHandler(handler)


def _open_gui(args: argparse.Namespace) -> int:
    try:
        gui = importlib.import_module("bitlens.gui.app")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("bitlens"):
            build_parser().print_help()
            return 0
        print(f"bitlens: error: cannot start the window: {exc}", file=sys.stderr)
        return 2
    return int(gui.run(args))
