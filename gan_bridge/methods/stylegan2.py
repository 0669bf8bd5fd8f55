"""StyleGAN2 (config F losses) trained with the shared loop on images of the synthetic face world.

``gan-bridge train stylegan2 run_dir=RUN resolution=64 ...`` trains G, D and the EMA generator G_ema:
Adam (lr, betas (0, 0.99)) with the lazy-regularisation corrections (lr * c, beta ** c, c = k / (k + 1)),
lazy R1 on reals (gamma from the StyleGAN2-ADA heuristic ``0.0002 * res^2 / batch`` unless given),
path-length regularisation, style mixing and a G_ema whose half-life is ``ema_kimg`` thousand images.
Training images are a fixed set of world renders cached as uint8 (``gan_bridge.methods.world_cache``;
rendered on first use). Every ``fd_every`` steps the Fréchet distance in VGG16 space between ``fd_samples``
G_ema images and as many held-out-identity renders is logged as ``fd``.

Gradients of G and D are averaged over processes with explicit all-reduces (as StyleGAN2-ADA does): the
losses call ``G.mapping`` / ``G.synthesis`` directly and R1 needs a double backward, neither of which
DistributedDataParallel's forward hook supports.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from gan_bridge.networks.stylegan2 import (Discriminator, Generator, StyleGAN2LossConfig, StyleGAN2Losses,
                                           ema_beta, lazy_ratio)
from gan_bridge.train import Method, TrainConfig, barrier, ema_update, sharded_loader

from .world_cache import CachedImages, batch_collate, cached_world_images, load_world_cache


@dataclass
class StyleGAN2TrainConfig(TrainConfig):
    """StyleGAN2 on the synthetic face world (fields beyond :class:`gan_bridge.train.TrainConfig`).

    resolution: image side in pixels (power of two, >= 8). Networks: ``z_dim``, ``w_dim``, ``n_mlp``
    mapping layers, channels per resolution ``min(channel_base // res, channel_max)`` for G and D.
    lr / betas: Adam's, before the lazy-regularisation correction. r1_gamma: R1 weight (<= 0: the ADA
    heuristic ``0.0002 * resolution^2 / batch_size``); r1_interval, pl_weight, pl_interval,
    pl_batch_shrink, style_mixing_prob: the losses' (``StyleGAN2LossConfig``). ema_kimg: G_ema half-life in
    thousands of images, ema_rampup: early half-life cap ``images seen * ema_rampup`` (<= 0: none).
    data: ``"synthetic"`` (the world's train split, cached in ``data_cache``, default
    ``<run_dir>/world_train_<render_size>.pt``) or the path of an existing world-cache file.
    data_count: training images; render_size: their pixel size (0: resolution; a multiple of it is
    area-downsampled); world_seed: the world's seed. fd_every: steps between FD evaluations (0: never);
    fd_samples: images per side; fd_cache: held-out renders (default ``<run_dir>/world_heldout_<size>.pt``).
    cache_workers: processes that render a missing cache.
    """

    run_dir: str = "runs/stylegan2"
    steps: int = 10000
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    sample_every: int = 500
    num_samples: int = 64
    resolution: int = 64
    z_dim: int = 128
    w_dim: int = 128
    n_mlp: int = 4
    channel_base: int = 4096
    channel_max: int = 128
    r1_gamma: float = 0.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    data: str = "synthetic"
    data_cache: str = ""
    data_count: int = 30000
    render_size: int = 0
    world_seed: int = 0
    fd_every: int = 0
    fd_samples: int = 256
    fd_cache: str = ""
    cache_workers: int = 1

    def __post_init__(self):
        r = int(self.resolution)
        if r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if self.render_size and self.render_size % r:
            raise ValueError(f"render_size {self.render_size} must be a multiple of resolution {r}")
        if self.fd_every and self.fd_samples < 2:
            raise ValueError(f"fd_samples must be >= 2, got {self.fd_samples}")

    @property
    def gamma(self) -> float:
        """The R1 weight in use."""
        return self.r1_gamma if self.r1_gamma > 0 else 0.0002 * self.resolution ** 2 / self.batch_size

    @property
    def image_size(self) -> int:
        """Pixel size of the cached renders."""
        return self.render_size or self.resolution

    def cache_path(self, split: str) -> Path:
        given = self.data_cache if split == "train" else self.fd_cache
        return Path(given) if given else Path(self.run_dir) / f"world_{split}_{self.image_size}.pt"


def _adam(module, lr: float, betas, interval: int) -> torch.optim.Adam:
    c = lazy_ratio(interval) if interval > 0 else 1.0
    return torch.optim.Adam(module.parameters(), lr=lr * c, betas=(betas[0] ** c, betas[1] ** c), eps=1e-8)


class StyleGAN2(Method):
    """Method for :func:`gan_bridge.train.train`; modules ``G``, ``D``, ``G_ema``, optimisers ``G``, ``D``."""

    config_class = StyleGAN2TrainConfig

    def __init__(self, config: StyleGAN2TrainConfig | None = None):
        super().__init__(config)
        c = self.config
        self.losses = StyleGAN2Losses(StyleGAN2LossConfig(
            r1_gamma=c.gamma, r1_interval=c.r1_interval, pl_weight=c.pl_weight, pl_interval=c.pl_interval,
            pl_batch_shrink=c.pl_batch_shrink, style_mixing_prob=c.style_mixing_prob))
        self._fd_probe = None

    def build(self, config: StyleGAN2TrainConfig, device):
        if device.type == "cpu":
            # process-wide: denormal floats made this GAN's CPU steps 5-20x slower (measured, 32 px)
            torch.set_flush_denormal(True)
        G = Generator(config.resolution, z_dim=config.z_dim, w_dim=config.w_dim, channel_base=config.channel_base,
                      channel_max=config.channel_max, n_mlp=config.n_mlp).to(device)
        D = Discriminator(config.resolution, channel_base=config.channel_base,
                          channel_max=config.channel_max).to(device)
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        if self.dist.distributed:  # DDP gives every rank rank 0's G and D; G_ema must start from that G too
            for t in [*G_ema.parameters(), *G_ema.buffers()]:
                dist.broadcast(t, 0)
        optimizers = {"G": _adam(G, config.lr, config.betas, config.pl_interval if config.pl_weight > 0 else 0),
                      "D": _adam(D, config.lr, config.betas, config.r1_interval if config.gamma > 0 else 0)}
        return {"G": G, "D": D, "G_ema": G_ema}, optimizers

    # ---- data ---------------------------------------------------------------------------------
    def _images(self, split: str, count: int) -> torch.Tensor:
        """(count, 3, S, S) uint8 renders of ``split``; rank 0 renders a missing cache, the others wait."""
        c = self.config
        if split == "train" and c.data != "synthetic":
            images = load_world_cache(c.data)["images"]
            if images.shape[0] < count:
                raise ValueError(f"{c.data} has {images.shape[0]} images, fewer than data_count={count}")
            return images[:count]
        path = c.cache_path(split)
        if self.dist.is_main:
            images = cached_world_images(path, count, c.image_size, split, c.world_seed, c.cache_workers)
        barrier(self.dist)
        if not self.dist.is_main:
            images = cached_world_images(path, count, c.image_size, split, c.world_seed)
        return images

    def data(self, start_step: int):
        c = self.config
        dataset = CachedImages(self._images("train", c.data_count), c.resolution)
        return sharded_loader(dataset, c.batch_size, self.dist, c.seed, start_step, c.num_workers,
                              collate_fn=batch_collate)

    # ---- training -----------------------------------------------------------------------------
    def _sync_grads(self, module) -> None:
        if not self.dist.distributed:
            return
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.dist.world_size

    def _update(self, name: str, loss: torch.Tensor) -> None:
        module, opt = self.module(name), self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self._sync_grads(module)
        opt.step()

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """batch: (B, 3, R, R) float in [-1, 1] (this process's share). One D step, one G step, EMA."""
        c = self.config
        G, D = self.module("G"), self.module("D")
        real = batch.to(self.device, non_blocking=True)
        if real.shape[0] == 0:
            raise ValueError("got an empty batch of real images; use batch_size >= the number of processes")

        G.requires_grad_(False)
        D.requires_grad_(True)
        d_out = self.losses.d_step(G, D, real, step)
        self._update("D", d_out["loss"])

        G.requires_grad_(True)
        D.requires_grad_(False)
        g_out = self.losses.g_step(G, D, real.shape[0], step, self.device)
        self._update("G", g_out["loss"])
        D.requires_grad_(True)

        seen = (step + 1) * c.batch_size
        beta = ema_beta(c.batch_size, c.ema_kimg, seen, c.ema_rampup if c.ema_rampup > 0 else None)
        ema_update(self.module("G_ema"), G, beta)

        out = {k: float(v) for k, v in {**d_out, **g_out}.items() if k != "loss"}
        if c.fd_every > 0 and (step + 1) % c.fd_every == 0:
            out["fd"] = self._fd()
        return out

    def _fd(self) -> float:
        """FD of G_ema against held-out renders, computed on rank 0 and shared with every process."""
        c = self.config
        value = torch.zeros([], dtype=torch.float64, device=self.device)
        if self.dist.is_main:
            if self._fd_probe is None:
                from .fd_probe import FDProbe
                held = self._images_main("heldout", c.fd_samples)
                self._fd_probe = FDProbe(held, c.resolution, c.fd_samples, seed=c.seed + 1)
            value.fill_(self._fd_probe(self.module("G_ema")))
        if self.dist.distributed:
            dist.broadcast(value, 0)
        return float(value)

    def _images_main(self, split: str, count: int) -> torch.Tensor:
        c = self.config
        return cached_world_images(c.cache_path(split), count, c.image_size, split, c.world_seed, c.cache_workers)

    # ---- samples and extra state -----------------------------------------------------------------
    def fixed_inputs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=generator)

    def sample(self, fixed: torch.Tensor) -> torch.Tensor:
        G_ema = self.module("G_ema")
        return torch.cat([G_ema(z.to(self.device), noise_mode="const") for z in fixed.split(32)])

    def state_dict(self) -> dict:
        return {"losses": self.losses.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "losses" in state:
            self.losses.load_state_dict(state["losses"])


def generator_from_checkpoint(checkpoint: str | Path) -> tuple[Generator, int]:
    """(G_ema in eval mode, step) of a StyleGAN2 run checkpoint (``ckpt-*.pt``)."""
    from gan_bridge.train import from_dict, load_checkpoint
    state = load_checkpoint(checkpoint)
    if "G_ema" not in state.get("modules", {}):
        raise ValueError(f"{checkpoint} is not a StyleGAN2 run checkpoint (no G_ema); pass a ckpt-*.pt of such a run")
    config = from_dict(StyleGAN2TrainConfig, state["config"])
    G = Generator(config.resolution, z_dim=config.z_dim, w_dim=config.w_dim, channel_base=config.channel_base,
                  channel_max=config.channel_max, n_mlp=config.n_mlp)
    G.load_state_dict(state["modules"]["G_ema"])
    return G.eval().requires_grad_(False), int(state["step"])


def export_generator(checkpoint: str | Path, out: str | Path, half: bool = False) -> Path:
    """Write a run checkpoint's G_ema to ``out`` for ``load_generator`` (fp16 weights if ``half``)."""
    from gan_bridge.networks.stylegan2 import save_networks
    G, _ = generator_from_checkpoint(checkpoint)
    save_networks(out, G=G.half() if half else G)
    return Path(out)


__all__ = ["StyleGAN2", "StyleGAN2TrainConfig", "export_generator", "generator_from_checkpoint"]
