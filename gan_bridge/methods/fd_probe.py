"""Fréchet distance of a generator's samples against a fixed set of reference images, in VGG16 space.

The features are ImageNet VGG16 ``relu5_3`` averaged over the image (``gan_bridge.metrics.features
.vgg16_space``): numbers compare runs of this project with each other, not with published FIDs. The
generator's latents come from a private seeded generator and its noise is the fixed buffer, so a probe
gives the same number for the same weights and never touches the global random streams (training
resumes stay exact).
"""
from __future__ import annotations

import torch

from gan_bridge.metrics.features import FeatureSpace, vgg16_space
from gan_bridge.metrics.frechet import frechet_distance


class FDProbe:
    """reference: (N, 3, S, S) float in [-1, 1] or uint8 images; n: samples per side (<= N, >= 2).

    ``probe(G)`` draws ``n`` images from ``G`` (z from ``torch.Generator().manual_seed(seed)``,
    ``noise_mode="const"``), resizes them to the reference's size (area / bilinear) and returns the
    Fréchet distance between the two feature sets.
    """

    def __init__(self, reference: torch.Tensor, n: int = 256, seed: int = 0, batch_size: int = 64,
                 space: FeatureSpace | None = None):
        if reference.ndim != 4 or reference.shape[1] != 3:
            raise ValueError(f"reference images must be (N, 3, S, S), got {tuple(reference.shape)}")
        if not 2 <= n <= reference.shape[0]:
            raise ValueError(f"the FD needs 2 <= n <= {reference.shape[0]} reference images, got n={n}; "
                             f"render more held-out images or lower the sample count")
        ref = reference[:n]
        ref = ref.float() / 127.5 - 1.0 if ref.dtype == torch.uint8 else ref.float()
        self.n, self.seed, self.batch_size, self.size = int(n), int(seed), int(batch_size), ref.shape[-1]
        self.space = space or vgg16_space()
        self.reference = self.space.extract(ref, batch_size)

    @torch.no_grad()
    def samples(self, G) -> torch.Tensor:
        """(n, 3, S, S) float in [-1, 1]: ``G``'s images at this probe's fixed latents."""
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(self.n, G.z_dim, generator=gen)
        device = next(G.parameters()).device
        out = []
        for chunk in z.split(self.batch_size):
            img = G(chunk.to(device), noise_mode="const").float().clamp(-1, 1).cpu()
            if img.shape[-1] > self.size:
                img = torch.nn.functional.adaptive_avg_pool2d(img, self.size)
            elif img.shape[-1] < self.size:
                img = torch.nn.functional.interpolate(img, size=self.size, mode="bilinear", align_corners=False)
            out.append(img)
        return torch.cat(out)

    def __call__(self, G) -> float:
        was_training = G.training
        G.eval()
        try:
            feats = self.space.extract(self.samples(G), self.batch_size)
        finally:
            G.train(was_training)
        return frechet_distance(feats, self.reference)


__all__ = ["FDProbe"]
