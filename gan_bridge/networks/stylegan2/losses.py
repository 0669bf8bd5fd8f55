"""StyleGAN2 training losses (Karras et al. 2020, config F) and generator EMA (stylegan2-ada rule).

- non-saturating logistic losses: G ``softplus(-D(G(z)))``, D ``softplus(D(G(z))) + softplus(-D(x))``;
- lazy R1 on reals: ``gamma / 2 * |grad_x D(x)|^2`` every ``r1_interval`` D steps, scaled by the interval;
- path-length regularisation: ``(|J_w^T y| - a)^2`` with ``y ~ N(0, I) / sqrt(H W)``, ``a`` an EMA (decay
  0.01) of the lengths, weight 2, every ``pl_interval`` G steps on a batch shrunk by ``pl_batch_shrink``;
- ``ema_beta``: the EMA decay ``beta = 0.5 ** (batch / (ema_kimg * 1000))`` for ``gan_bridge.train.ema_update``.

With lazy regularisation the optimiser's lr and betas should be scaled by ``lazy_ratio(interval)``
(``lr * c``, ``beta ** c``), as the paper does.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Mean ``softplus(-D(G(z)))`` over fake logits (B, 1) -> scalar."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Mean ``softplus(D(G(z))) + softplus(-D(x))`` -> scalar."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Per-sample ``|d sum(D(x)) / dx|^2`` (B,), differentiable (``create_graph``).

    real_images must have ``requires_grad=True`` and have produced real_logits.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images with requires_grad=True before running D on them")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_length_penalty(images: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor, decay: float = 0.01,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-length penalty of images (B, C, H, W) w.r.t. the ws (B, num_ws, w_dim) that made them.

    Returns ``(penalty (B,), new_pl_mean ())``: lengths ``sqrt(mean_i |J_{w_i}^T y|^2)`` with
    ``y ~ N(0, 1) / sqrt(H W)``; ``new_pl_mean = pl_mean + decay * (mean(lengths) - pl_mean)`` (detached);
    penalty ``(lengths - new_pl_mean)^2``. The caller stores new_pl_mean.
    """
    noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator)
    noise = noise / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
    new_mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - new_mean).square(), new_mean


def lazy_ratio(interval: int) -> float:
    """Adam lr / beta exponent correction for a regulariser applied every ``interval`` steps."""
    return interval / (interval + 1)


def ema_beta(batch_size: int, ema_kimg: float = 10.0, cur_nimg: int | None = None,
             ema_rampup: float | None = None) -> float:
    """EMA decay per step so that the average has a half-life of ``ema_kimg`` thousand images.

    With ``ema_rampup`` (e.g. 0.05) the half-life is at most ``cur_nimg * ema_rampup`` early in training.
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None and cur_nimg is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@dataclass
class StyleGAN2LossConfig:
    """Loss hyper-parameters (StyleGAN2 config F defaults; r1_gamma = 10 is FFHQ 1024's)."""
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9


class StyleGAN2Losses:
    """Loss steps for the shared training loop. Each returns a dict of tensors whose ``'loss'`` entry is
    the scalar to backpropagate (with lazy regularisers already scaled by their interval); other entries
    are detached values for logging. ``step`` is the loop's iteration counter for that network.
    Holds the path-length running mean ``pl_mean`` (save/restore it with ``state_dict``).
    """

    def __init__(self, config: StyleGAN2LossConfig | None = None):
        self.config = config or StyleGAN2LossConfig()
        self.pl_mean = torch.zeros([])

    def state_dict(self) -> dict:
        return {"pl_mean": self.pl_mean.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.pl_mean = state["pl_mean"].detach().clone()

    def _z(self, G, batch_size, device, generator):
        return torch.randn(batch_size, G.z_dim, device=device, generator=generator)

    def _generate(self, G, z, generator):
        ws = G.mapping(z)
        ws = G.mix_styles(ws, self.config.style_mixing_prob, generator=generator)
        return G.synthesis(ws, noise_mode="random", generator=generator), ws

    def d_step(self, G, D, real: torch.Tensor, step: int = 0, generator: torch.Generator | None = None) -> dict:
        """real: (B, C, R, R) in [-1, 1]. Logistic D loss on B fakes (G not differentiated), plus
        ``r1_gamma / 2 * r1 * r1_interval`` when ``step % r1_interval == 0``."""
        cfg = self.config
        if real.shape[0] == 0:
            raise ValueError("d_step got an empty batch of real images")
        with torch.no_grad():
            fake, _ = self._generate(G, self._z(G, real.shape[0], real.device, generator), generator)
        do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_interval == 0
        real = real.detach().requires_grad_(do_r1)
        real_logits, fake_logits = D(real), D(fake)
        loss_main = d_logistic_loss(real_logits, fake_logits)
        out = {"d_loss": loss_main.detach(), "real_score": real_logits.mean().detach(),
               "fake_score": fake_logits.mean().detach()}
        loss = loss_main
        if do_r1:
            r1 = r1_penalty(real_logits, real).mean()
            loss = loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
            out["r1"] = r1.detach()
        out["loss"] = loss
        return out

    def g_step(self, G, D, batch_size: int, step: int = 0, device="cpu",
               generator: torch.Generator | None = None) -> dict:
        """Non-saturating G loss on ``batch_size`` fakes, plus ``pl_weight * penalty * pl_interval`` on
        ``batch_size // pl_batch_shrink`` fakes when ``step % pl_interval == 0`` (updates pl_mean).
        D's parameters receive gradients too: freeze D (``requires_grad_(False)``) or zero them before its step.
        ``generator`` (on ``device``) seeds z, style mixing and noise."""
        cfg = self.config
        if batch_size <= 0:
            raise ValueError(f"g_step needs a positive batch size, got {batch_size}")
        fake, _ = self._generate(G, self._z(G, batch_size, device, generator), generator)
        loss_main = g_nonsaturating_loss(D(fake))
        out = {"g_loss": loss_main.detach()}
        loss = loss_main
        if cfg.pl_weight > 0 and step % cfg.pl_interval == 0:
            pl_batch = max(batch_size // cfg.pl_batch_shrink, 1)
            img, ws = self._generate(G, self._z(G, pl_batch, device, generator), generator)
            penalty, self.pl_mean = path_length_penalty(img, ws, self.pl_mean.to(img.device), cfg.pl_decay,
                                                        generator=generator)
            loss = loss + penalty.mean() * cfg.pl_weight * cfg.pl_interval
            out["pl_penalty"] = penalty.mean().detach()
            out["pl_mean"] = self.pl_mean.detach()
        out["loss"] = loss
        return out
