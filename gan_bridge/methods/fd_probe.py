"""Fréchet distance of a generator's samples against a fixed set of reference images, in VGG16 space.

The features are ImageNet VGG16 ``relu5_3`` averaged over the image (``gan_bridge.metrics.features
.vgg16_space``): numbers compare runs of this project with each other, not with published FIDs. The
generator's latents come from a private seeded generator and its noise is the fixed buffer, so a probe
gives the same number for the same weights and never touches the global random streams (training
resumes stay exact).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gan_bridge.metrics.features import FeatureSpace, vgg16_space
from gan_bridge.metrics.frechet import frechet_distance


def prepare_images(images: torch.Tensor, resolution: int, feature_size: int) -> torch.Tensor:
    """(B, 3, S, S) uint8 or float in [-1, 1] -> area-downsampled to ``resolution`` (if larger), then
    bilinearly resized to ``feature_size``: (B, 3, feature_size, feature_size) float in [-1, 1]."""
    x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float().clamp(-1, 1)
    if x.shape[-1] > resolution:
        x = F.adaptive_avg_pool2d(x, resolution)
    if x.shape[-1] != feature_size:
        x = F.interpolate(x, size=feature_size, mode="bilinear", align_corners=False)
    return x


class FDProbe:
    """Fréchet distance of a generator at ``resolution`` px against reference renders.

    reference: (N, 3, S, S) uint8 or float in [-1, 1], S >= resolution; n: images per side (2 <= n <= N).
    Both sets are brought to ``resolution`` (area downsampling) and then to ``feature_size`` px
    (bilinear: VGG16 needs >= 32 px and sees more at 64) the same way. ``probe(G)`` draws ``n`` images
    from ``G`` (z from ``torch.Generator().manual_seed(seed)``, ``noise_mode="const"``).
    """

    def __init__(self, reference: torch.Tensor, resolution: int, n: int = 256, seed: int = 0,
                 feature_size: int = 64, batch_size: int = 64, space: FeatureSpace | None = None):
        if reference.ndim != 4 or reference.shape[1] != 3:
            raise ValueError(f"reference images must be (N, 3, S, S), got {tuple(reference.shape)}")
        if not 2 <= n <= reference.shape[0]:
            raise ValueError(f"the FD needs 2 <= n <= {reference.shape[0]} reference images, got n={n}; "
                             f"render more held-out images or lower the sample count")
        if reference.shape[-1] < resolution:
            raise ValueError(f"reference images of {reference.shape[-1]} px cannot judge a {resolution} px generator")
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.resolution, self.feature_size = int(resolution), int(feature_size)
        self.space = space or vgg16_space()
        ref = prepare_images(reference[:n], self.resolution, self.feature_size)
        self.reference = self.space.extract(ref, batch_size)

    @torch.no_grad()
    def samples(self, G) -> torch.Tensor:
        """(n, 3, resolution, resolution) float in [-1, 1]: ``G``'s images at this probe's fixed latents."""
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(self.n, G.z_dim, generator=gen)
        device = next(G.parameters()).device
        dtype = next(G.parameters()).dtype
        out = [G(chunk.to(device, dtype), noise_mode="const").float().cpu() for chunk in z.split(self.batch_size)]
        return torch.cat(out).clamp(-1, 1)

    def __call__(self, G) -> float:
        was_training = G.training
        G.eval()
        try:
            images = prepare_images(self.samples(G), self.resolution, self.feature_size)
            feats = self.space.extract(images, self.batch_size)
        finally:
            G.train(was_training)
        return frechet_distance(feats, self.reference)


__all__ = ["FDProbe", "prepare_images"]
