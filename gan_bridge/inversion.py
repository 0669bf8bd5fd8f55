"""GAN inversion: project photos into a StyleGAN2's W or W+ space by optimisation.

Three schedules, all expressed by :class:`InversionConfig` (every number configurable):

- ``projector`` (StyleGAN2, Karras et al. 2020, Appendix D): W, Adam lr 0.1 with a cosine ramp-down and
  a short ramp-up, Gaussian noise on w that fades over the first 75 % of the steps, LPIPS (VGG16)
  distance, per-layer noise maps optimised too and kept decorrelated by the multi-scale
  autocorrelation regulariser (weight 1e5), 1000 steps.
- ``image2stylegan`` (Abdal et al. 2019): W+, Adam lr 0.01, pixel MSE + VGG16 perceptual loss on
  conv1_1, conv1_2, conv3_2, conv4_2, 5000 steps, noise fixed.
- ``pie`` (Tewari et al. 2020, PIE Sec. 4.1 and 4.4): hierarchical, 2000 steps in W (step size 50) then
  1000 in W+ (step size 10), ADADELTA, step size decayed by 0.1 every 2000 steps, synthesis energy
  ``1e-6 ||I - I(w)||^2 + 1e-6 ||Phi(I) - Phi(I(w))||^2`` with Phi the same VGG16 layers on images
  downsampled by 4 and pixel values in [0, 255] (sums, as the paper's weights imply). PIE's editing,
  invariance and recognition terms need a RigNet: they enter through ``invert``'s ``energy`` hook
  (:mod:`gan_bridge.stylerig.pie`).

Images are ``(B, 3, H, W)`` float in [-1, 1] at the generator's resolution; every image of a batch gets
its own latent. ``weights`` (B, 1, H, W) in [0, 1] optionally restrict the loss to a region (e.g. the
face from :func:`gan_bridge.face.regions.face_region_weights`): the pixel term is weighted per pixel and
the perceptual term sees ``weights * synth + (1 - weights) * target``.

The generator is any module with ``mapping(z)``, ``synthesis(ws, noise_mode=..., noise=[...])``,
``synthesis.noise_layers()``, ``num_ws``, ``z_dim`` and ``w_dim`` (``gan_bridge.networks.stylegan2``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics.image import psnr, ssim
from .networks.perceptual import LPIPS, VGG16Features

SPACES = ("w", "w+")
PIE_VGG_LAYERS = ("conv1_1", "conv1_2", "conv3_2", "conv4_2")


@dataclass
class Stage:
    """One optimisation stage: ``steps`` iterations in ``space`` ('w' or 'w+') from step size ``lr``."""

    space: str
    steps: int
    lr: float


@dataclass
class InversionConfig:
    """What to optimise and how. Use :func:`preset` for the published schedules.

    stages: run in order; a 'w' stage followed by a 'w+' stage copies w to every layer (PIE).
    optimizer: 'adam' (betas 0.9, 0.999) or 'adadelta' (rho 0.95, eps 1e-8, as TensorFlow's).
    schedule: 'ramp' (StyleGAN2 projector: cosine ramp-down over the last ``rampdown`` of each stage,
        linear ramp-up over the first ``rampup``), 'step' (x ``decay`` every ``decay_every`` steps,
        counted over all stages) or 'constant'.
    loss: 'lpips' (LPIPS VGG16 distance, summed over the batch) or 'mse+vgg' (``pixel_weight`` x pixel
        term + ``perceptual_weight`` x VGG16 feature term on ``perceptual_layers``).
    pixel_scale: 'mean' (mean squared error of [-1, 1] images) or 'sum255' (sum of squared errors of
        [0, 255] images and features, PIE's scale for its 1e-6 weights).
    perceptual_downsample: images are average-pooled by this factor before the VGG features (PIE: 4).
    latent_noise: initial std of the noise added to w, in units of the W-space std, fading to zero
        over the first ``latent_noise_ramp`` of each stage (projector: 0.05 over 0.75).
    optimize_noise / noise_reg_weight: also fit the per-layer noise maps, regularised (projector).
    w_avg_samples: z samples to estimate the W mean and spread (start point and noise scale).
    """

    stages: tuple = (Stage("w", 1000, 0.1),)
    optimizer: str = "adam"
    schedule: str = "ramp"
    rampdown: float = 0.25
    rampup: float = 0.05
    decay: float = 0.1
    decay_every: int = 2000
    loss: str = "lpips"
    pixel_weight: float = 0.0
    perceptual_weight: float = 1.0
    perceptual_layers: tuple = PIE_VGG_LAYERS
    pixel_scale: str = "mean"
    perceptual_downsample: int = 1
    latent_noise: float = 0.05
    latent_noise_ramp: float = 0.75
    optimize_noise: bool = True
    noise_reg_weight: float = 1e5
    w_avg_samples: int = 10000
    seed: int = 0

    def __post_init__(self):
        self.stages = tuple(s if isinstance(s, Stage) else Stage(**s) for s in self.stages)
        if not self.stages:
            raise ValueError("inversion needs at least one stage")
        for s in self.stages:
            if s.space not in SPACES:
                raise ValueError(f"unknown latent space {s.space!r}: use 'w' or 'w+'")
            if s.steps < 0 or not s.lr > 0:
                raise ValueError(f"stage {s}: steps must be >= 0 and lr > 0")
        if [s.space for s in self.stages] not in (["w"], ["w+"], ["w", "w+"]):
            raise ValueError("stages must be W, W+, or W then W+ (hierarchical)")
        if self.optimizer not in ("adam", "adadelta"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use 'adam' or 'adadelta'")
        if self.schedule not in ("ramp", "step", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}: use 'ramp', 'step' or 'constant'")
        if self.loss not in ("lpips", "mse+vgg"):
            raise ValueError(f"unknown loss {self.loss!r}: use 'lpips' or 'mse+vgg'")
        if self.pixel_scale not in ("mean", "sum255"):
            raise ValueError(f"unknown pixel_scale {self.pixel_scale!r}: use 'mean' or 'sum255'")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def scaled(self, factor: float) -> "InversionConfig":
        """The same schedule with every stage's (and the step decay's) step count multiplied by ``factor``."""
        stages = tuple(replace(s, steps=max(1, round(s.steps * factor))) for s in self.stages)
        return replace(self, stages=stages, decay_every=max(1, round(self.decay_every * factor)))


PRESETS = {
    "projector": InversionConfig(),
    "image2stylegan": InversionConfig(stages=(Stage("w+", 5000, 0.01),), schedule="constant", loss="mse+vgg",
                                      pixel_weight=1.0, perceptual_weight=1.0, latent_noise=0.0,
                                      optimize_noise=False),
    "pie": InversionConfig(stages=(Stage("w", 2000, 50.0), Stage("w+", 1000, 10.0)), optimizer="adadelta",
                           schedule="step", decay=0.1, decay_every=2000, loss="mse+vgg", pixel_weight=1e-6,
                           perceptual_weight=1e-6, pixel_scale="sum255", perceptual_downsample=4,
                           latent_noise=0.0, optimize_noise=False),
}


def preset(name: str, **overrides) -> InversionConfig:
    """A published schedule by name ('projector', 'image2stylegan', 'pie'), with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown inversion preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass
class InversionResult:
    """ws: (B, num_ws, w_dim) W+ codes (W results repeated over layers); w: (B, w_dim) for W-only runs
    else None; noise: per-layer noise maps (for ``synthesis(ws, noise=noise)``) or None when they were not
    fitted (use noise_mode='const'); image: (B, 3, H, W) reconstruction in [-1, 1]; metrics: per-image
    'psnr' (dB), 'ssim', 'lpips' (AlexNet) lists; history: (step, loss) pairs."""

    ws: torch.Tensor
    w: torch.Tensor | None
    noise: list | None
    image: torch.Tensor
    metrics: dict
    history: list = field(default_factory=list)


def w_stats(G, samples: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean w (w_dim,) and its spread ``sqrt(E|w - mean|^2)`` (a float) from ``samples`` random z."""
    device = next(G.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    ws = []
    with torch.no_grad():
        for start in range(0, samples, 1000):
            z = torch.randn(min(1000, samples - start), G.z_dim, generator=gen, device=device)
            ws.append(G.mapping(z, update_w_avg=False)[:, 0])
    ws = torch.cat(ws)
    mean = ws.mean(0)
    return mean, float(((ws - mean) ** 2).sum(1).mean().sqrt())


def noise_regularization(noises: list) -> torch.Tensor:
    """StyleGAN2 projector's penalty on spatial autocorrelation of noise maps, over a pyramid down to 8x8.

    noises: tensors (B, 1, r, r). Returns a scalar.
    """
    reg = noises[0].new_zeros([])
    for n in noises:
        while True:
            reg = reg + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return reg


def _normalize_noise_(noises: list) -> None:
    with torch.no_grad():
        for n in noises:
            n -= n.mean(dim=(1, 2, 3), keepdim=True)
            n *= n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def _lr_factor(config: InversionConfig, stage: Stage, i: int, global_step: int) -> float:
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.decay ** (global_step // config.decay_every)
    t = i / max(1, stage.steps)
    ramp = min(1.0, (1.0 - t) / config.rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / config.rampup) if config.rampup > 0 else ramp


class _SynthesisLoss:
    """The image term of the energy for one batch of targets (B, 3, H, W) in [-1, 1]."""

    def __init__(self, config: InversionConfig, target: torch.Tensor, weights: torch.Tensor | None):
        self.config, self.target, self.weights = config, target, weights
        if config.loss == "lpips":
            self.net = LPIPS("vgg").to(target.device)
        else:
            self.net = VGG16Features(config.perceptual_layers).to(target.device)
            with torch.no_grad():
                self.target_features = self.net.run(self._perceptual_input(target))

    def _perceptual_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights is not None:
            x = self.weights * x + (1 - self.weights) * self.target
        k = self.config.perceptual_downsample
        if k > 1:
            x = F.avg_pool2d(x, k)
        if self.config.loss == "lpips" and x.shape[-1] > 256:  # as the projector: LPIPS at 256 px at most
            x = F.interpolate(x, size=(256, 256), mode="area")
        return x

    def __call__(self, synth: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.loss == "lpips":
            return self.net(self._perceptual_input(synth), self._perceptual_input(self.target)).sum()
        diff = synth - self.target
        if self.weights is not None:
            diff = diff * self.weights
        feats = self.net.run(self._perceptual_input(synth))
        if c.pixel_scale == "sum255":  # [-1, 1] -> [0, 255]: differences scale by 127.5 (features ~linearly)
            pixel = (127.5 * diff).square().sum()
            perc = sum((127.5 * (f - t)).square().sum() for f, t in zip(feats, self.target_features))
        else:
            pixel = diff.square().mean(dim=(1, 2, 3)).sum()
            perc = sum((f - t).square().mean(dim=(1, 2, 3)).sum() for f, t in zip(feats, self.target_features))
        return c.pixel_weight * pixel + c.perceptual_weight * perc


def _check_targets(G, images: torch.Tensor, weights: torch.Tensor | None) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch: pass at least one image")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or Inf values")
    if images.min() < -1.5 or images.max() > 1.5:
        raise ValueError("images must be in [-1, 1] (got values outside [-1.5, 1.5]; divide 0..255 images "
                         "by 127.5 and subtract 1)")
    res = G.resolution
    if images.shape[-2:] != (res, res):
        raise ValueError(f"images are {images.shape[-2]}x{images.shape[-1]} px but the generator makes {res}x{res}:"
                         f" crop/resize the photo to {res}x{res} first")
    if weights is not None and (weights.shape[0] != images.shape[0] or weights.shape[1] != 1
                                or weights.shape[-2:] != images.shape[-2:]):
        raise ValueError(f"weights must be (B, 1, H, W) matching the images, got {tuple(weights.shape)}")


def invert(G, images: torch.Tensor, config: InversionConfig | None = None, weights: torch.Tensor | None = None,
           progress: bool = True, energy=None) -> InversionResult:
    """Find latents whose images match ``images`` (B, 3, H, W) in [-1, 1] at the generator's resolution.

    energy: optional extra terms, a callable ``(ws (B, num_ws, w_dim), synth (B, 3, H, W), step) -> scalar``
    added to the synthesis energy each step (PIE's editing and recognition terms:
    :class:`gan_bridge.stylerig.pie.PIEEnergy`); it sees the frozen copy of G through ``ws`` only.

    G is not modified (a frozen copy is used). Returns :class:`InversionResult` with PSNR / SSIM / LPIPS
    of the reconstruction.
    """
    config = config or InversionConfig()
    _check_targets(G, images, weights)
    device = images.device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    batch = images.shape[0]
    w_mean, w_spread = w_stats(G, config.w_avg_samples, config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)

    layers = G.synthesis.noise_layers()
    if config.optimize_noise:
        noises = [torch.randn(batch, 1, l.resolution, l.resolution, generator=gen, device=device).requires_grad_()
                  for l in layers]
    else:
        noises = [l.noise_const.reshape(1, 1, *l.noise_const.shape[-2:]).expand(batch, 1, -1, -1) for l in layers]
    target_loss = _SynthesisLoss(config, images, weights)

    latent = w_mean.expand(batch, -1).clone()  # (B, w_dim) in W; becomes (B, num_ws, w_dim) in W+
    history, global_step = [], 0
    bar = tqdm(total=config.total_steps, desc="invert", disable=not progress, leave=False)
    for stage in config.stages:
        if stage.space == "w+" and latent.dim() == 2:
            latent = latent[:, None].repeat(1, G.num_ws, 1)
        latent = latent.detach().requires_grad_()
        params = [latent] + (noises if config.optimize_noise else [])
        opt = (torch.optim.Adam(params, lr=stage.lr, betas=(0.9, 0.999)) if config.optimizer == "adam"
               else torch.optim.Adadelta(params, lr=stage.lr, rho=0.95, eps=1e-8))
        for i in range(stage.steps):
            t = i / max(1, stage.steps)
            for group in opt.param_groups:
                group["lr"] = stage.lr * _lr_factor(config, stage, i, global_step)
            noise_std = w_spread * config.latent_noise * max(0.0, 1.0 - t / config.latent_noise_ramp) ** 2 \
                if config.latent_noise_ramp > 0 else 0.0
            code = latent + torch.randn(latent.shape, generator=gen, device=device) * noise_std
            ws = code[:, None].expand(-1, G.num_ws, -1) if code.dim() == 2 else code
            synth = G.synthesis(ws, noise=noises)
            loss = target_loss(synth)
            if energy is not None:
                loss = loss + energy(ws, synth, global_step)
            if config.optimize_noise and config.noise_reg_weight > 0:
                loss = loss + config.noise_reg_weight * noise_regularization(noises)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"inversion diverged at step {global_step} (loss {loss.item()}): "
                                         "lower the step size")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if config.optimize_noise:
                _normalize_noise_(noises)
            history.append((global_step, loss.item()))
            global_step += 1
            bar.update(1)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{history[-1][1]:.4g}")
    bar.close()

    with torch.no_grad():
        latent = latent.detach()
        ws = latent[:, None].repeat(1, G.num_ws, 1) if latent.dim() == 2 else latent
        final_noise = [n.detach() for n in noises] if config.optimize_noise else None
        image = G.synthesis(ws, noise=final_noise, noise_mode="const").clamp(-1, 1)
        metrics = reconstruction_metrics(image, images)
    return InversionResult(ws=ws, w=latent if latent.dim() == 2 else None, noise=final_noise, image=image,
                           metrics=metrics, history=history)


def reconstruction_metrics(image: torch.Tensor, target: torch.Tensor) -> dict:
    """Per-image PSNR (dB), SSIM and LPIPS (AlexNet) of ``image`` against ``target``, both (B, 3, H, W) in
    [-1, 1]; returns lists of floats. SSIM needs at least 11x11 px."""
    with torch.no_grad():
        out = {"psnr": psnr(image, target).tolist()}
        if min(image.shape[-2:]) >= 11:
            out["ssim"] = ssim(image, target).tolist()
        out["lpips"] = LPIPS("alex").to(image.device)(image, target).tolist()
    return out
