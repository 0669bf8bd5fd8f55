"""LI-Net inference: T, then R, then G (Fig. 2), and loading the networks from a ``gan-bridge train linet`` run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from gan_bridge.face.linet_prep import landmark_image

from .baseline import Pix2PixGenerator, conditional_discriminator
from .config import LinetConfig
from .discriminators import image_discriminator, landmark_discriminator
from .generator import ExpressionGenerator
from .rotation import FaceRotation, PosePredictor
from .transformer import IdentityClassifier, LandmarkTransformer

# Networks of each stage: the trained ones and their helpers (classifier, discriminators).
STAGE_MODULES = {"transformer": ("T", "C_id", "D_r"), "rotation": ("R", "D", "D_p"), "generator": ("G", "D_G"),
                 "pix2pix": ("P", "D_P")}


def build_networks(config: LinetConfig) -> dict[str, nn.Module]:
    """All networks of ``config``: T, C_id, D_r (Sec. 3.1), R, D, D_p (3.2), G, D_G (3.3) and the pix2pix baseline
    P, D_P."""
    c = config
    w = dict(base=c.base, levels=c.levels, max_channels=c.max_channels)
    return {"T": LandmarkTransformer(**w), "C_id": IdentityClassifier(c.identities, **w),
            "D_r": landmark_discriminator(**w), "R": FaceRotation(res_blocks=c.res_blocks, **w),
            "D": image_discriminator(**w), "D_p": PosePredictor(**w),
            "G": ExpressionGenerator(res_blocks=c.res_blocks, style_dim=c.style_dim, **w),
            "D_G": image_discriminator(**w), "P": Pix2PixGenerator(res_blocks=c.res_blocks, **w),
            "D_P": conditional_discriminator(**w)}


@dataclass
class ReenactResult:
    """landmarks: (B, 1, H, W) the landmark image that drives R and G (T's output, or the driving landmarks
    without T); rotated: (B, 3, H, W) R's output I_R; final: (B, 3, H, W) G's reenacted face, in [-1, 1]."""

    landmarks: torch.Tensor
    rotated: torch.Tensor
    final: torch.Tensor


def reenact(T: Optional[nn.Module], R: nn.Module, G: nn.Module, source: torch.Tensor, source_landmarks: torch.Tensor,
            driving_landmarks: torch.Tensor) -> ReenactResult:
    """source: (B, 3, H, W) [-1, 1]; source_landmarks, driving_landmarks: (B, 1, H, W) landmark images.
    T = None skips the landmark transformer (the 'without T' ablation)."""
    if source.shape[0] == 0:
        raise ValueError("empty batch: give at least one source face")
    if not torch.isfinite(source).all():
        raise ValueError("source images contain NaN or inf")
    lm = driving_landmarks if T is None else T(source_landmarks, driving_landmarks).clamp(0, 1)
    rotated = R(source, lm)
    return ReenactResult(lm, rotated, G(rotated, source, lm))


class Reenactor:
    """Trained LI-Net networks. ``Reenactor.load(run)`` reads a ``gan-bridge train linet`` run folder or ckpt-*.pt;
    ``__call__`` reenacts faces from 68-point landmarks."""

    def __init__(self, config: LinetConfig, networks: dict[str, nn.Module]):
        self.config = config
        self.networks = {k: v.eval().requires_grad_(False) for k, v in networks.items()}

    @classmethod
    def load(cls, path: str | Path) -> "Reenactor":
        from gan_bridge.train import latest_checkpoint, load_checkpoint
        from gan_bridge.train.config import from_dict
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"weights {path} do not exist; train with 'gan-bridge train linet'")
        ckpt = latest_checkpoint(path) if path.is_dir() else path
        if ckpt is None:
            raise ValueError(f"{path} holds no checkpoint; train with 'gan-bridge train linet run_dir={path}'")
        state = load_checkpoint(ckpt)
        try:
            config = from_dict(LinetConfig, state["config"])
            nets = build_networks(config)
            for name, net in nets.items():
                net.load_state_dict(state["modules"][name])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{ckpt} is not an LI-Net checkpoint ({type(exc).__name__}: {str(exc)[:80]}); "
                             "give a 'gan-bridge train linet' run") from None
        return cls(config, nets)

    @property
    def size(self) -> int:
        return self.config.image_size

    def landmark_image(self, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) pixels of this model's image size -> (B, 1, S, S)."""
        return landmark_image(landmarks, self.size, self.config.landmark_sigma)

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, source_landmarks: torch.Tensor, driving_landmarks: torch.Tensor,
                 use_transformer: bool = True) -> ReenactResult:
        """source: (B, 3, S, S) [-1, 1]; source_landmarks, driving_landmarks: (B, 68, 2) pixels of S x S images."""
        if source.dim() != 4 or source.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"source images must be (B, 3, {self.size}, {self.size}), got {tuple(source.shape)}")
        n = self.networks
        return reenact(n["T"] if use_transformer else None, n["R"], n["G"], source,
                       self.landmark_image(source_landmarks), self.landmark_image(driving_landmarks))

    @torch.no_grad()
    def baseline(self, source: torch.Tensor, driving_landmarks: torch.Tensor) -> torch.Tensor:
        """The pix2pix baseline: source (B, 3, S, S), driving landmarks (B, 68, 2) -> (B, 3, S, S) in [-1, 1]."""
        return self.networks["P"](source, self.landmark_image(driving_landmarks))


__all__ = ["ReenactResult", "Reenactor", "STAGE_MODULES", "build_networks", "reenact"]
