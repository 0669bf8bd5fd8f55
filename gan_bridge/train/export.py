"""One command shape for writing a run's trained part as a standalone file: ``python -m MODULE export RUN OUT``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence


def export_main(argv: Optional[Sequence[str]], prog: str, help: str, out_help: str,
                export: Callable[..., Path], half_default: Optional[bool] = None) -> int:
    """Parse ``export RUN OUT`` and print ``export(run, out)``'s path.

    RUN: a run folder or one of its ckpt-*.pt. half_default: None when the file has one precision; True
    (float16 by default) adds ``--float32`` and False adds ``--float16``; either passes ``half=`` to ``export``.
    """
    ap = argparse.ArgumentParser(prog=prog)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help=help)
    e.add_argument("run", help="run folder or ckpt-*.pt")
    e.add_argument("out", help=out_help)
    if half_default is not None:
        flag = "--float32" if half_default else "--float16"
        e.add_argument(flag, dest="switch", action="store_true",
                       help=f"store {flag[2:]} weights (default {'float16' if half_default else 'float32'})")
    args = ap.parse_args(argv)
    kwargs = {} if half_default is None else {"half": half_default != args.switch}
    print(export(args.run, args.out, **kwargs))
    return 0


__all__ = ["export_main"]
