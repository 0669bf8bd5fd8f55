"""Standalone files of a run's trained part, and one command shape that writes them: ``python -m MODULE export RUN OUT``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch


def write_inference_file(state: dict, names, recipe: str, out: str | Path, half: bool = True) -> Path:
    """Write the modules ``names`` of checkpoint ``state`` with its step, config and ``recipe`` text to ``out``
    (atomically); ``half`` stores floating-point weights as float16 (loaders cast them back)."""
    from morph3d.io import atomic_write
    modules = {n: {k: v.half() if half and v.is_floating_point() else v for k, v in state["modules"][n].items()}
               for n in names}
    record = {"step": state["step"], "config": state["config"], "modules": modules, "recipe": recipe}
    return atomic_write(Path(out), lambda tmp: torch.save(record, tmp))


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


__all__ = ["export_main", "write_inference_file"]
