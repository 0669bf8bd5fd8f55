"""lambda-space VAEs (Sec. 3.1, suppl. I): one MLP VAE per factor, z_i ~ N(0, I) -> lambda_i.

Factors: ``identity`` alpha = [shape, texture] coefficients, ``expression`` beta, ``lighting`` gamma (27 SH)
and ``pose`` theta (Euler [yaw, pitch, roll], radians). Each VAE standardises its data with stored
mean / std, has three hidden ReLU layers (512, 256, 128) each side and a Gaussian decoder with a learned
scalar variance (the first stage of Dai & Wipf's two-stage VAE, the schedule the paper follows).
"""
from __future__ import annotations

import math

import torch
from torch import nn

FACTORS = ("identity", "expression", "lighting", "pose")
BFM_DIMS = {"identity": 160, "expression": 64, "lighting": 27, "pose": 3}
BFM_LATENTS = {"identity": 128, "expression": 32, "lighting": 16, "pose": 3}


def factor_dims(dims: dict) -> dict[str, int]:
    """Model widths (``morph3d.model.model_dims``: identity, texture, expression, ...) -> lambda width per factor."""
    return {"identity": int(dims["identity"]) + int(dims["texture"]), "expression": int(dims["expression"]),
            "lighting": int(dims["lighting"]), "pose": int(dims["rotation"])}


def latent_sizes(lam_dims: dict[str, int]) -> dict[str, int]:
    """z size per factor: the paper's (128, 32, 16, 3) for the BFM layout (160, 64, 27, 3); otherwise the
    same ratio of the factor's width, rounded, at least 1 (pose keeps all its angles)."""
    if {f: lam_dims[f] for f in FACTORS} == BFM_DIMS:
        return dict(BFM_LATENTS)
    return {f: max(1, round(lam_dims[f] * BFM_LATENTS[f] / BFM_DIMS[f])) for f in FACTORS}


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FactorVAE(nn.Module):
    """VAE for one factor: lambda (B, D) <-> z (B, Z). ``hidden``: encoder widths (the decoder mirrors them)."""

    def __init__(self, dim: int, latent: int, hidden: tuple[int, ...] = (512, 256, 128)):
        super().__init__()
        if dim < 1 or latent < 1:
            raise ValueError(f"a factor VAE needs dim >= 1 and latent >= 1, got {dim}, {latent}")
        self.dim, self.latent = int(dim), int(latent)
        self.encoder = _mlp([dim, *hidden, 2 * latent])
        self.decoder = _mlp([latent, *reversed(hidden), dim])
        self.log_gamma = nn.Parameter(torch.zeros([]))  # decoder std, in standardised units
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_data_stats(self, data: torch.Tensor) -> None:
        """Store the standardisation of ``data`` (N, D)."""
        self.mean.copy_(data.mean(0))
        self.std.copy_(data.std(0).clamp_min(1e-6) if data.shape[0] > 1 else torch.ones_like(self.std))

    def encode(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """lambda (B, D) -> posterior mean and log-variance, (B, Z) each."""
        mu, logvar = self.encoder((lam - self.mean) / self.std).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) -> lambda (B, D) in the factor's own units (the decoder mean)."""
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"expected z of shape (B, {self.latent}), got {tuple(z.shape)}")
        return self.decoder(z) * self.std + self.mean

    def loss(self, lam: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per sample (nats, constants dropped), mean over the batch of (B, D) lambda."""
        mu, logvar = self.encode(lam)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        x = (lam - self.mean) / self.std
        err = (self.decoder(z) - x).square().sum(1)
        rec = 0.5 * err * torch.exp(-2 * self.log_gamma) + self.dim * self.log_gamma
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return (rec + kl).mean()


class LambdaVAEs(nn.Module):
    """The four factor VAEs. ``dims``: lambda width per factor (:func:`factor_dims`); ``latents`` default
    to :func:`latent_sizes`. ``split`` / ``join`` convert between (B, sum D) vectors and factor dicts."""

    def __init__(self, dims: dict[str, int], latents: dict[str, int] | None = None,
                 hidden: tuple[int, ...] = (512, 256, 128)):
        super().__init__()
        dims = {f: int(dims[f]) for f in FACTORS}
        latents = latents or latent_sizes(dims)
        self.dims, self.latents = dims, {f: int(latents[f]) for f in FACTORS}
        self.vaes = nn.ModuleDict({f: FactorVAE(dims[f], self.latents[f], tuple(hidden)) for f in FACTORS})

    @property
    def lambda_dim(self) -> int:
        return sum(self.dims.values())

    @property
    def z_dim(self) -> int:
        return sum(self.latents.values())

    def split_z(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, z_dim) -> {factor: (B, Z_f)} in FACTORS order."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected factor latents of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        return dict(zip(FACTORS, z.split([self.latents[f] for f in FACTORS], 1)))

    def split(self, lam: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, lambda_dim) -> {factor: (B, D_f)}."""
        if lam.ndim != 2 or lam.shape[1] != self.lambda_dim:
            raise ValueError(f"expected lambda of shape (B, {self.lambda_dim}), got {tuple(lam.shape)}")
        return dict(zip(FACTORS, lam.split([self.dims[f] for f in FACTORS], 1)))

    def join(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([parts[f] for f in FACTORS], 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> lambda (B, lambda_dim)."""
        return self.join({f: self.vaes[f].decode(v) for f, v in self.split_z(z).items()})

    def standardise(self, lam: torch.Tensor) -> torch.Tensor:
        """lambda (B, lambda_dim) in model units -> per-dimension standardised (the generator's input)."""
        mean = torch.cat([self.vaes[f].mean for f in FACTORS])
        std = torch.cat([self.vaes[f].std for f in FACTORS])
        return (lam - mean) / std


def fit_vaes(vaes: LambdaVAEs, lam: torch.Tensor, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
             seed: int = 0) -> dict[str, float]:
    """Train every factor VAE on lambda samples (N, lambda_dim) with Adam; returns the final loss per factor.
    The VAEs end frozen in eval mode."""
    if lam.ndim != 2 or lam.shape[0] < 2:
        raise ValueError(f"fitting the lambda VAEs needs at least 2 parameter rows, got {tuple(lam.shape)}")
    if not torch.isfinite(lam).all():
        raise ValueError("the lambda samples contain NaN or inf; clean the parameter table first")
    parts = vaes.split(lam.float())
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for f in FACTORS:
        vae, data = vaes.vaes[f], parts[f]
        vae.set_data_stats(data)
        vae.train().requires_grad_(True)
        opt = torch.optim.Adam(vae.parameters(), lr=lr)
        for _ in range(int(steps)):
            idx = torch.randint(0, data.shape[0], (min(batch_size, data.shape[0]),), generator=gen)
            loss = vae.loss(data[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out[f] = float(loss.detach()) if steps else math.nan
    vaes.eval().requires_grad_(False)
    return out


__all__ = ["BFM_DIMS", "BFM_LATENTS", "FACTORS", "FactorVAE", "LambdaVAEs", "factor_dims", "fit_vaes",
           "latent_sizes"]
