"""Semantic edits of embedded faces with RigNets, sequential across control modes (PIE Fig. 10).

An :class:`EditSpec` says what to change: head pose offsets in degrees (added to the face's current
pose), expression coefficients by name (set; ``smile`` stands for ``smile_left`` and ``smile_right``),
and lighting (SH coefficient k = 1..8 of every channel set to ``value`` x the channel's constant
coefficient; ``scale`` multiplies all 27). :func:`sequential_edit` applies pose, then lighting, then
expression, each with its own RigNet on the previous result. Every edit uses PIE's feedback correction
theta_new = theta + (theta - theta_est) (Sec. 5), theta_est read from the first edit's image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gan_bridge.face.rig import MODES, RigFace, tau

ORDER = ("pose", "lighting", "expression")


@dataclass
class EditSpec:
    """yaw / pitch / roll: degrees added to the current pose (docs/conventions.md); expression: {name:
    value} (model blendshape names, or a prefix of a _left/_right pair); light: {k: value} for SH
    coefficients k in 1..8 relative to the constant one; light_scale: multiplies the whole light."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    expression: dict = field(default_factory=dict)
    light: dict = field(default_factory=dict)
    light_scale: float = 1.0

    def __post_init__(self):
        values = [self.yaw, self.pitch, self.roll, self.light_scale, *self.expression.values(), *self.light.values()]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("edit values must be finite numbers (got NaN or Inf)")

    def modes(self) -> list[str]:
        """The control modes this spec changes, in :data:`ORDER`."""
        wanted = {"pose": any((self.yaw, self.pitch, self.roll)), "expression": bool(self.expression),
                  "lighting": bool(self.light) or self.light_scale != 1.0}
        return [m for m in ORDER if wanted[m]]

    @classmethod
    def from_dict(cls, d: dict) -> "EditSpec":
        unknown = set(d) - {"yaw", "pitch", "roll", "expression", "light", "light_scale"}
        if unknown:
            raise ValueError(f"unknown edit keys {sorted(unknown)}; use yaw, pitch, roll, expression, light, "
                             "light_scale")
        light = {int(k): float(v) for k, v in (d.get("light") or {}).items()}
        return cls(float(d.get("yaw", 0)), float(d.get("pitch", 0)), float(d.get("roll", 0)),
                   {str(k): float(v) for k, v in (d.get("expression") or {}).items()}, light,
                   float(d.get("light_scale", 1.0)))


def expression_indices(model, name: str) -> list[int]:
    """Indices of expression ``name`` in ``model`` (exact, or the _left/_right pair of a prefix)."""
    names = list(model.expression_names or [])
    if name in names:
        return [names.index(name)]
    pair = [names.index(n) for n in (f"{name}_left", f"{name}_right") if n in names]
    if not pair:
        raise ValueError(f"model '{model.name}' has no expression {name!r}; available: {', '.join(names)}")
    return pair


def target_tau(current: torch.Tensor, mode: str, spec: EditSpec, model) -> torch.Tensor:
    """theta^tau after the edit: current (B, P) block of ``mode`` -> (B, P)."""
    out = current.detach().clone()
    if mode == "pose":
        out += out.new_tensor([math.radians(spec.yaw), math.radians(spec.pitch), math.radians(spec.roll)])
    elif mode == "expression":
        for name, value in spec.expression.items():
            out[:, expression_indices(model, name)] = value
    elif mode == "lighting":
        sh = out.view(-1, 3, 9)
        for k, value in spec.light.items():
            if not 1 <= k <= 8:
                raise ValueError(f"light coefficient index {k} must be 1..8 (0 is the constant term)")
            sh[..., k] = value * sh[..., 0]
        out = sh.flatten(1) * spec.light_scale
    else:
        raise ValueError(f"unknown control mode {mode!r}; use one of {', '.join(MODES)}")
    return out


def apply_edit(G, rignet, face: RigFace, ws: torch.Tensor, theta_tau: torch.Tensor, feedback: bool = True
               ) -> torch.Tensor:
    """rignet(ws, theta^tau), corrected once by theta_new = theta + (theta - theta_est) when ``feedback``.

    ws: (B, num_ws, w_dim); theta_tau: (B, P) -> edited codes (B, num_ws, w_dim)."""
    edited = rignet(ws, theta_tau)
    if feedback:
        estimate = tau(face.estimate(G.synthesis(edited, noise_mode="const").clamp(-1, 1)).params, rignet.mode)
        edited = rignet(ws, theta_tau + (theta_tau - estimate))
    return edited


@torch.no_grad()
def sequential_edit(G, rignets: dict, face: RigFace, ws: torch.Tensor, spec: EditSpec, feedback: bool = True
                    ) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Edits of ``spec`` one mode after another (pose, lighting, expression) from codes ``ws``.

    Returns one (mode, target theta^tau (B, P), codes (B, num_ws, w_dim), image (B, 3, H, W) in [-1, 1])
    per edited mode."""
    steps = []
    for mode in spec.modes():
        if mode not in rignets:
            raise ValueError(f"the edit changes {mode} but no {mode} RigNet was given ({mode}.pt)")
        net = rignets[mode]
        net.check_generator(G)
        current = face.estimate(G.synthesis(ws, noise_mode="const").clamp(-1, 1)).params
        target = target_tau(tau(current, mode), mode, spec, face.model)
        ws = apply_edit(G, net, face, ws, target, feedback)
        steps.append((mode, target, ws, G.synthesis(ws, noise_mode="const").clamp(-1, 1)))
    return steps


__all__ = ["EditSpec", "ORDER", "apply_edit", "expression_indices", "sequential_edit", "target_tau"]
