"""Named training methods for ``gan-bridge train``: short names mapped to ``"module:Class"``.

A method package registers itself with ``register("stylegan2", "gan_bridge.x.y:StyleGAN2")``; the CLI
also accepts any ``module:Class`` directly.
"""
from __future__ import annotations

import importlib

from .method import Method

METHODS: dict[str, str] = {"stylegan2": "gan_bridge.methods.stylegan2:StyleGAN2",
                           "directions": "gan_bridge.directions.method:DirectionsMethod",
                           "stylerig": "gan_bridge.stylerig.method:StyleRigMethod",
                           "regressor": "gan_bridge.methods.regressor:Regressor",
                           "pas": "gan_bridge.pas.method:PasMethod",
                           "linet": "gan_bridge.linet.method:LinetMethod",
                           "disco": "gan_bridge.disco.method:DiscoMethod"}


def register(name: str, target: str) -> None:
    """Make ``gan-bridge train <name>`` run the Method ``target`` (``"package.module:Class"``)."""
    if ":" not in target:
        raise ValueError(f"method target must be 'package.module:Class', got {target!r}")
    METHODS[name] = target


def resolve_method(spec: str) -> type[Method]:
    """A registered name or ``"package.module:Class"`` -> the Method subclass."""
    target = METHODS.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(METHODS)) or "none registered"
        raise ValueError(f"unknown method '{spec}'; give package.module:Class or a registered name ({known})")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import method module '{module_name}': {exc}") from None
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ValueError(f"'{target}' is not a gan_bridge.train.Method subclass")
    return cls


__all__ = ["METHODS", "register", "resolve_method"]
