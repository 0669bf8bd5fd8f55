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
# What inference needs: LI-Net's T, R, G (required) and the pix2pix baseline P (optional).
REQUIRED_MODULES = ("T", "R", "G")
INFERENCE_MODULES = REQUIRED_MODULES + ("P",)


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
        """A training run folder, one of its ckpt-*.pt, or an :func:`export`ed file (inference networks only)."""
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
            built = build_networks(config)
            modules = state["modules"]
            nets = {name: built[name] for name in INFERENCE_MODULES if name in modules or name in REQUIRED_MODULES}
            for name, net in nets.items():
                net.load_state_dict(modules[name])  # fp16 exports are cast to the networks' fp32
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
        if "P" not in self.networks:
            raise ValueError("these weights hold no pix2pix baseline; export a run trained with stage 'pix2pix'")
        return self.networks["P"](source, self.landmark_image(driving_landmarks))


def export(run: str | Path, out: str | Path, half: bool = True) -> Path:
    """Write the inference networks (T, R, G, and P when trained) of run folder ``run`` (or a ckpt-*.pt) to
    ``out`` with the run's config and recipe text; ``half`` stores the weights as float16 (half the size;
    :meth:`Reenactor.load` casts them back to float32)."""
    from gan_bridge.train import load_checkpoint, run_checkpoint
    from gan_bridge.train.export import write_inference_file
    ckpt, recipe = run_checkpoint(run)
    state = load_checkpoint(ckpt)
    Reenactor.load(ckpt)  # one-line error if it is not an LI-Net run
    trained = {m for s in state["config"]["stages"] for m in STAGE_MODULES[s]}
    names = [n for n in INFERENCE_MODULES if n in REQUIRED_MODULES or n in trained]
    return write_inference_file(state, names, recipe, out, half)


def main(argv=None) -> int:
    from gan_bridge.train.export import export_main
    return export_main(argv, "python -m gan_bridge.linet.reenact",
                       "write a run's inference networks (T, R, G, P) as one small file",
                       "output .pt (use it as --weights)", export, half_default=True)


__all__ = ["INFERENCE_MODULES", "REQUIRED_MODULES", "ReenactResult", "Reenactor", "STAGE_MODULES", "build_networks",
           "export", "reenact"]

if __name__ == "__main__":
    raise SystemExit(main())
