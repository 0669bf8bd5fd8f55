"""The ``morph3d`` command line. Each sub-command lives in its own module with
``add_parser(subparsers)`` and ``run(args) -> int``."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from contextlib import contextmanager

COMMANDS = ("info", "convert", "render", "fit", "fit_table")


class CommandError(Exception):
    """A user-facing failure: printed as ``morph3d <cmd>: error: <message>`` with exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up (no partial outputs) runs."""


def build_parser() -> argparse.ArgumentParser:
    from morph3d import __version__
    parser = argparse.ArgumentParser(prog="morph3d", description="3D morphable face toolkit")
    parser.add_argument("--version", action="version", version=f"morph3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"morph3d.cli.{name}").add_parser(sub)
    return parser


def _raise_terminated(signum, frame):
    raise Terminated


@contextmanager
def _sigterm_as_interrupt():
    """While the command runs, SIGTERM raises :class:`Terminated` (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            return int(args.run(args) or 0)
    except (CommandError, ValueError, KeyError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"morph3d {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"morph3d {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"morph3d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
