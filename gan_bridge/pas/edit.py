"""PAS inference: preprocess (Sec. 3.1) -> Pixel Attention Sampling (Sec. 3.2) -> inpainting (Sec. 3.3).

Images are (B, 3, H, W) in [-1, 1]; landmarks are 3D (B, 68, 3) pixels (:mod:`gan_bridge.face.pas_prep`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from gan_bridge.face.pas_prep import PasInputs, preprocess

from .config import PasConfig
from .networks import InpaintGenerator, PixelAttentionSampling, ProjectionDiscriminator, sample_pair

IdentityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, 2D landmarks (B, 68, 2)) -> (B, D)
DLIB_DIM = 128


def build_networks(config: PasConfig, identity_dim: int) -> dict[str, nn.Module]:
    """The variant's networks: ``pas`` (unless 'inpaint_only'), ``gen`` and ``disc`` (unless 'pas_only')."""
    c, s = config, config.image_size
    nets: dict[str, nn.Module] = {}
    if c.variant != "inpaint_only":
        nets["pas"] = PixelAttentionSampling(s, c.pas_base, c.pas_levels, c.feature_dim, c.sampler_hidden,
                                             c.max_channels, c.pas_attention)
    if c.variant != "pas_only":
        nets["gen"] = InpaintGenerator(s, c.gen_base, c.gen_levels, c.max_channels, identity_dim, c.identity_hidden,
                                     residual=c.gen_output == "residual")
        nets["disc"] = ProjectionDiscriminator(s, c.disc_base, c.disc_levels, c.max_channels)
    return nets


def default_identity(config: PasConfig) -> tuple[Optional[IdentityFn], int]:
    """(identity feature function, its dimension) for ``config.identity_net``; (None, 0) for 'none'."""
    if config.identity_net == "none":
        return None, 0
    from gan_bridge.face.identity import identity_embedding
    return identity_embedding, DLIB_DIM


@dataclass
class PasResult:
    """inputs: the preprocessing (I_tf, its landmarks and segmentation maps); sampled: (B, 3, H, W) PAS output
    J_hat_fake (I_tf itself without PAS); final: (B, 3, H, W) the inpainted J_fake (= sampled without inpainting);
    grid: (B, H, W, 2) the sampling map or None."""

    inputs: PasInputs
    sampled: torch.Tensor
    final: torch.Tensor
    grid: Optional[torch.Tensor]


def start_map(config: PasConfig, inputs: PasInputs) -> Optional[torch.Tensor]:
    """The map PAS starts from for ``config.pas_start``: (B, H, W, 2) for 'source', None (identity) for 'aligned'."""
    return inputs.unaligned_grid() if config.pas_start == "source" else None


def pas_sample(pas: nn.Module, inputs: PasInputs, landmarks_target: torch.Tensor,
               start: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PAS on preprocessed inputs: its sampling map of I_tf (B, H, W, 2), computed from I_tf and the target's 3D
    landmarks as in the paper, is applied to I through the inverse similarity (:meth:`PasInputs.source_grid`), so
    the image and its segmentation are resampled once, in one fused call, instead of twice (once for I_tf).
    -> (sampled image (B, 3, H, W), sampled segmentation (B, C, H, W), map of I_tf)."""
    grid = pas.sampling_map(inputs.image_tf, landmarks_target, start)
    sampled, seg = sample_pair(inputs.image, inputs.seg_source, inputs.source_grid(grid))
    return sampled, seg, grid


def run_pipeline(pas: Optional[nn.Module], gen: Optional[nn.Module], inputs: PasInputs, landmarks_target: torch.Tensor,
                 identity_features: Optional[torch.Tensor] = None, start: Optional[torch.Tensor] = None) -> PasResult:
    """PAS (from sampling map ``start``, default the identity) then inpainting on preprocessed inputs; either network
    may be None (the ablations)."""
    if pas is not None:
        sampled, _, grid = pas_sample(pas, inputs, landmarks_target, start)
    else:
        sampled, grid = inputs.image_tf, None
    final = gen(sampled, landmarks_target, identity_features) if gen is not None else sampled
    return PasResult(inputs=inputs, sampled=sampled, final=final, grid=grid)


class PasEditor:
    """Trained PAS networks for pose editing. ``PasEditor.load(checkpoint)`` reads a ``gan-bridge train pas`` run
    folder or ckpt-*.pt; ``edit(...)`` rotates faces."""

    def __init__(self, config: PasConfig, networks: dict[str, nn.Module], identity: Optional[IdentityFn] = None):
        self.config = config
        self.pas, self.gen = networks.get("pas"), networks.get("gen")
        self.identity = identity
        for net in (self.pas, self.gen):
            if net is not None:
                net.eval().requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path, identity: Optional[IdentityFn] = None,
             identity_dim: Optional[int] = None) -> "PasEditor":
        """A run folder, one of its ckpt-*.pt, or an :func:`export`ed file. ``identity`` / ``identity_dim``: the
        features the run was trained with when it used a custom network."""
        from gan_bridge.train import latest_checkpoint, load_checkpoint
        from gan_bridge.train.config import from_dict
        path = Path(path)
        ckpt = latest_checkpoint(path) if path.is_dir() else path
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {path}; train with 'gan-bridge train pas' first")
        state = load_checkpoint(ckpt)
        try:
            config = from_dict(PasConfig, state["config"])
            if identity is None:
                identity, dim = default_identity(config)
            else:
                dim = identity_dim if identity_dim is not None else DLIB_DIM
            nets = build_networks(config, dim)
            nets.pop("disc", None)  # training only
            for name, net in nets.items():
                net.load_state_dict(state["modules"][name])  # fp16 exports are cast to the networks' fp32
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"{ckpt} is not a PAS checkpoint ({type(exc).__name__}: {str(exc)[:80]}); "
                             "pass a checkpoint of 'gan-bridge train pas'") from None
        return cls(config, nets, identity)

    @property
    def size(self) -> int:
        return self.config.image_size

    @torch.no_grad()
    def edit(self, image: torch.Tensor, landmarks_source: torch.Tensor, landmarks_target: torch.Tensor,
             landmarks_source_2d: Optional[torch.Tensor] = None) -> PasResult:
        """image: (B, 3, S, S) in [-1, 1] at the editor's size S; landmarks (B, 68, 3) pixels of I and the target."""
        if image.dim() != 4 or image.shape[-2:] != (self.size, self.size):
            raise ValueError(f"images must be (B, 3, {self.size}, {self.size}) for this model, got "
                             f"{tuple(image.shape)}; crop them to {self.size} px first")
        inputs = preprocess(image, landmarks_source, landmarks_target, landmarks_source_2d=landmarks_source_2d)
        feats = None
        if self.gen is not None and self.identity is not None:
            lm2d = landmarks_source[..., :2] if landmarks_source_2d is None else landmarks_source_2d
            feats = self.identity(image, lm2d)
        result = run_pipeline(self.pas, self.gen, inputs, landmarks_target, feats, start_map(self.config, inputs))
        result.final = result.final.clamp(-1, 1)
        return result


def export(run: str | Path, out: str | Path, half: bool = True) -> Path:
    """Write the inference networks (PAS and/or the inpainting generator) of run folder ``run`` (or a ckpt-*.pt)
    to ``out`` with the run's config and recipe text; ``half`` stores the weights as float16 (half the size;
    :meth:`PasEditor.load` casts them back to float32)."""
    from gan_bridge.train import load_checkpoint, run_checkpoint
    from gan_bridge.train.export import write_inference_file
    ckpt, recipe = run_checkpoint(run)
    editor = PasEditor.load(ckpt)  # one-line error if it is not a PAS run
    names = [n for n, net in (("pas", editor.pas), ("gen", editor.gen)) if net is not None]
    return write_inference_file(load_checkpoint(ckpt), names, recipe, out, half)


def main(argv=None) -> int:
    from gan_bridge.train.export import export_main
    return export_main(argv, "python -m gan_bridge.pas.edit", "write a run's inference networks (PAS, inpainting) "
                       "as one small file", "output .pt (use it as --weights)", export, half_default=True)


__all__ = ["DLIB_DIM", "PasEditor", "PasResult", "build_networks", "default_identity", "export", "pas_sample",
           "run_pipeline", "start_map"]

if __name__ == "__main__":
    raise SystemExit(main())
