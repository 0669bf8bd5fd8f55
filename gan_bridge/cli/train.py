"""``gan-bridge train METHOD [CONFIG] [key=value | --key value ...]``: run a method with the shared loop."""
from __future__ import annotations

import argparse
import json

from gan_bridge.cli import CommandError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a method (single process, or under torchrun for DDP)",
        description="Train a method with the shared loop. METHOD is a registered name or package.module:Class; "
                    "CONFIG is a .yaml/.json file; then overrides as key=value or --key value (nested keys "
                    "with dots, e.g. optim.lr=1e-3). --print-config shows the resolved config and exits. "
                    "Multi-process: torchrun --nproc_per_node N -m gan_bridge train ...",
        epilog="The run resumes from the latest checkpoint in run_dir unless resume=never.")
    p.add_argument("method", help="registered method name or package.module:Class")
    p.add_argument("args", nargs=argparse.REMAINDER, help="[CONFIG] then overrides")
    p.set_defaults(run=run)


def _split(args: list[str]) -> tuple[str | None, list[str], bool]:
    rest = list(args)
    show = "--print-config" in rest
    rest = [a for a in rest if a != "--print-config"]
    config = None
    if rest and not rest[0].startswith("--") and "=" not in rest[0]:
        config = rest.pop(0)
    return config, rest, show


def run(args) -> int:
    from gan_bridge.train import config_to_dict, load_config, train
    from gan_bridge.train.registry import resolve_method

    method_cls = resolve_method(args.method)
    config_path, overrides, show = _split(args.args)
    if config_path is not None and not config_path.endswith((".yaml", ".yml", ".json")):
        raise CommandError(f"'{config_path}' is neither a .yaml/.json config nor a key=value override")
    config = load_config(method_cls.config_class, config_path, overrides)
    if show:
        print(json.dumps(config_to_dict(config), indent=1))
        return 0
    result = train(method_cls(config))
    if result.scalars and result.rank == 0:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in result.scalars.items())
        print(f"step {result.step}: {summary}; run in {result.run_dir}")
    return 0
