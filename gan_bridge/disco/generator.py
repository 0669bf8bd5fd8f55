"""The DiscoFaceGAN generator: factor latents z_1..z_4 -> lambda (VAE decoders) + noise z_5 = epsilon -> StyleGAN2.

It exposes ``z_dim``, ``mapping``, ``mix_styles`` and ``synthesis`` like
:class:`gan_bridge.networks.stylegan2.Generator`, so :class:`StyleGAN2Losses` trains it unchanged: its z is
``[z_1, z_2, z_3, z_4, epsilon]`` (B, z_dim), all N(0, I). As the paper does, the mapping input is not
pixel-normalised (lambda's scale carries the factor) and styles are never mixed; lambda enters standardised.
"""
from __future__ import annotations

import torch
from torch import nn

from gan_bridge.networks.stylegan2 import Generator

from .vae import FACTORS, LambdaVAEs


class LambdaMapping(nn.Module):
    """[z_factors, epsilon] (B, z_dim) -> ws (B, num_ws, w_dim) through the frozen VAE decoders and the
    StyleGAN2 mapping layers (``base``'s fc layers, no input normalisation). ``w_avg`` is tracked as there."""

    def __init__(self, vaes: LambdaVAEs, base, noise_dim: int):
        super().__init__()
        self.vaes, self.base, self.noise_dim = vaes, base, int(noise_dim)
        self.z_dim = vaes.z_dim + self.noise_dim

    @property
    def w_avg(self) -> torch.Tensor:
        return self.base.w_avg

    def lam(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> lambda (B, lambda_dim), model units."""
        return self.vaes.decode(z[:, :self.vaes.z_dim])

    def from_lambda(self, lam: torch.Tensor, eps: torch.Tensor, truncation_psi: float = 1.0,
                    update_w_avg: bool = True) -> torch.Tensor:
        """lambda (B, lambda_dim) model units and epsilon (B, noise_dim) -> ws (B, num_ws, w_dim)."""
        if not (torch.isfinite(lam).all() and torch.isfinite(eps).all()):
            raise ValueError("the generator got non-finite lambda or noise; check the factor values given")
        base = self.base
        x = torch.cat([self.vaes.standardise(lam.float()), eps.float()], 1)
        for i in range(base.num_layers):
            x = getattr(base, f"fc{i}")(x)
        if self.training and update_w_avg:
            with torch.no_grad():
                base.w_avg.copy_(x.detach().mean(0).lerp(base.w_avg, base.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, base.num_ws, 1)
        return ws if truncation_psi == 1 else base.w_avg.lerp(ws, truncation_psi)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff=None,
                update_w_avg: bool = True) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] == 0:
            raise ValueError(f"the generator needs a non-empty z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        return self.from_lambda(self.lam(z), z[:, self.vaes.z_dim:], truncation_psi, update_w_avg)


class DiscoGenerator(nn.Module):
    """StyleGAN2 synthesis driven by lambda + epsilon. ``vaes``: fitted :class:`LambdaVAEs` (kept frozen);
    the other arguments are :class:`Generator`'s (its z_dim is lambda_dim + noise_dim).
    Images: (B, 3, R, R) float in ~[-1, 1]."""

    def __init__(self, vaes: LambdaVAEs, resolution: int, noise_dim: int = 32, w_dim: int = 128, n_mlp: int = 4,
                 channel_base: int = 4096, channel_max: int = 128):
        super().__init__()
        base = Generator(resolution, z_dim=vaes.lambda_dim + noise_dim, w_dim=w_dim, channel_base=channel_base,
                         channel_max=channel_max, n_mlp=n_mlp)
        vaes.requires_grad_(False)
        self.mapping = LambdaMapping(vaes, base.mapping, noise_dim)
        self.synthesis = base.synthesis
        self.z_dim, self.w_dim, self.num_ws, self.resolution = self.mapping.z_dim, w_dim, base.num_ws, resolution
        self.noise_dim = int(noise_dim)

    @property
    def vaes(self) -> LambdaVAEs:
        return self.mapping.vaes

    def mix_styles(self, ws: torch.Tensor, mixing_prob: float = 0.0, generator=None) -> torch.Tensor:
        return ws  # the paper discards style mixing

    def requires_grad_(self, requires_grad: bool = True):
        super().requires_grad_(requires_grad)
        self.mapping.vaes.requires_grad_(False)  # the VAE decoders stay as fitted
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.mapping.vaes.eval()
        return self

    def sample_z(self, n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def swap(self, z: torch.Tensor, z_other: torch.Tensor, factor: str) -> torch.Tensor:
        """z with the latent of ``factor`` (one of FACTORS or ``"noise"``) taken from ``z_other``; both (B, z_dim)."""
        names = [*FACTORS, "noise"]
        if factor not in names:
            raise ValueError(f"unknown factor {factor!r}; use one of {', '.join(names)}")
        sizes = [self.vaes.latents[f] for f in FACTORS] + [self.noise_dim]
        i = names.index(factor)
        lo = sum(sizes[:i])
        out = z.clone()
        out[:, lo:lo + sizes[i]] = z_other[:, lo:lo + sizes[i]]
        return out

    def from_lambda(self, lam: torch.Tensor, eps: torch.Tensor, noise_mode: str = "const",
                    truncation_psi: float = 1.0) -> torch.Tensor:
        """Images of chosen factors: lambda (B, lambda_dim) model units, eps (B, noise_dim)."""
        return self.synthesis(self.mapping.from_lambda(lam, eps, truncation_psi, update_w_avg=False),
                              noise_mode=noise_mode)

    def forward(self, z: torch.Tensor, noise_mode: str = "random", truncation_psi: float = 1.0,
                generator: torch.Generator | None = None, return_ws: bool = False):
        """z (B, z_dim) -> images (B, 3, R, R) (and ws (B, num_ws, w_dim) if return_ws)."""
        ws = self.mapping(z, truncation_psi)
        img = self.synthesis(ws, noise_mode=noise_mode, generator=generator)
        return (img, ws) if return_ws else img


__all__ = ["DiscoGenerator", "LambdaMapping"]
