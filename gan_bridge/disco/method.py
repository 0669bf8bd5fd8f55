"""DiscoFaceGAN training through the shared loop: ``gan-bridge train disco run_dir=RUN ...``.

Before the GAN, the lambda VAEs are fitted (``param_table``'s rows, or the world's exact parameters of
``vae_count`` training samples) and frozen inside G. The GAN is :class:`StyleGAN2`'s (same data, D step,
R1, path length, EMA, FD probe) with G's step extended by the imitative losses and, from step
``contrastive_start`` on, the contrastive ones (see :mod:`gan_bridge.disco.losses`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from gan_bridge.methods.stylegan2 import StyleGAN2, _adam
from gan_bridge.networks.stylegan2 import Discriminator

from .config import DiscoConfig
from .generator import DiscoGenerator
from .losses import DiscoLosses
from .vae import LambdaVAEs, factor_dims, fit_vaes


def training_lambda(config: DiscoConfig) -> tuple[torch.Tensor, dict]:
    """(N, D) lambda rows the VAEs learn from and the model's widths."""
    from morph3d.model import load_model, model_dims
    from gan_bridge.face.disco import params_to_lambda, world_lambda
    model = load_model(config.shape_model)
    if config.param_table:
        from gan_bridge.face.param_table import ParamTable
        table = ParamTable.load(config.param_table)
        lam = params_to_lambda(table.face_params(range(len(table)))).float()
    else:
        from gan_bridge.face.world import FaceWorld, WorldConfig
        world = FaceWorld(WorldConfig(image_size=config.image_size, seed=config.world_seed, model=config.shape_model),
                          model=model)
        lam = world_lambda(world, config.vae_count)
    dims = model_dims(model)
    if lam.shape[1] != sum(factor_dims(dims).values()):
        raise ValueError(f"the parameter rows have {lam.shape[1]} lambda values but shape_model "
                         f"{config.shape_model!r} needs {sum(factor_dims(dims).values())}; fit the table with that model")
    return lam, dims


def build_generator(config: DiscoConfig, vaes: LambdaVAEs) -> DiscoGenerator:
    return DiscoGenerator(vaes, config.resolution, noise_dim=config.noise_dim, w_dim=config.w_dim,
                          n_mlp=config.n_mlp, channel_base=config.channel_base, channel_max=config.channel_max)


class DiscoMethod(StyleGAN2):
    """Modules ``G`` (a :class:`DiscoGenerator`, VAEs inside), ``D``, ``G_ema``; optimisers ``G``, ``D``.
    ``face``: the 3DMM side of the losses (default :class:`gan_bridge.face.disco.DiscoFace`; tests pass stubs)."""

    config_class = DiscoConfig

    def __init__(self, config: DiscoConfig | None = None, face=None):
        super().__init__(config)
        self._face = face
        self._step = 0
        self._terms: dict = {}
        self.vae_losses: dict = {}

    @property
    def face(self):
        if self._face is None:
            from gan_bridge.face.disco import DiscoFace
            c = self.config
            self._face = DiscoFace(c.shape_model, distance_mm=c.render_distance_mm, focal=c.render_focal,
                                   box=c.encoder_box, reframe=c.encoder_reframe, encoder_weights=c.encoder
                                   ).to(self.device)
        return self._face

    def build(self, config: DiscoConfig, device):
        if device.type == "cpu":
            torch.set_flush_denormal(True)
        lam, dims = training_lambda(config)
        vaes = LambdaVAEs(factor_dims(dims), hidden=tuple(config.vae_hidden))
        self.vae_losses = fit_vaes(vaes, lam, config.vae_steps, config.vae_batch, config.vae_lr, seed=config.seed)
        G = build_generator(config, vaes).to(device)
        D = Discriminator(config.resolution, channel_base=config.channel_base,
                          channel_max=config.channel_max).to(device)
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        if self.dist.distributed:
            import torch.distributed as dist
            for t in [*G.parameters(), *G.buffers(), *G_ema.parameters(), *G_ema.buffers()]:
                dist.broadcast(t, 0)  # every rank takes rank 0's VAEs and G
        optimizers = {"G": _adam(G, config.lr, config.betas, config.pl_interval if config.pl_weight > 0 else 0),
                      "D": _adam(D, config.lr, config.betas, config.r1_interval if config.gamma > 0 else 0)}
        return {"G": G, "D": D, "G_ema": G_ema}, optimizers

    # ---- training: StyleGAN2's step, G's loss extended ----------------------------------------------
    def disco_loss(self, G: DiscoGenerator, batch_size: int, step: int) -> dict:
        """The imitative (+ contrastive) terms of one G step on ``batch_size`` fresh samples."""
        c = self.config
        out: dict = {}
        if not c.imitative:
            return out
        contrastive_on = c.contrastive and step >= c.contrastive_start
        z = G.sample_z(batch_size, device=self.device)
        x = G(z, noise_mode="random")
        im = DiscoLosses(c, self.face).imitative(x, G.mapping.lam(z).detach(), contrastive_on)
        out.update(im)
        if contrastive_on:
            co = DiscoLosses(c, self.face).contrastive(G, z)
            out.update({k: v for k, v in co.items() if k != "loss"})
            out["loss"] = im["loss"] + co["loss"]
        return out

    def _update(self, name: str, loss: torch.Tensor) -> None:
        if name == "G":
            extra = self.disco_loss(self.module("G"), self.local_batch, self._step)
            if extra:
                loss = loss + extra.pop("loss")
            self._terms = {k: float(v.detach()) for k, v in extra.items()}
        super()._update(name, loss)

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """batch: (B, 3, R, R) in [-1, 1]. D step, G step (adversarial + imitative + contrastive), EMA."""
        self._step = step
        out = super().train_step(batch, step)
        out.update(self._terms)
        return out

    def fixed_inputs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.module("G").z_dim, generator=generator)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "vae_losses": dict(self.vae_losses)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.vae_losses = dict(state.get("vae_losses", {}))


def load_disco(checkpoint: str | Path) -> tuple[DiscoGenerator, DiscoConfig, int]:
    """(G_ema in eval mode, config, step) of a disco run checkpoint (``ckpt-*.pt``) or run directory."""
    from gan_bridge.train import from_dict, latest_checkpoint, load_checkpoint
    path = Path(checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path} holds no checkpoint; train with gan-bridge train disco run_dir={path}")
        path = found
    state = load_checkpoint(path)
    modules = state.get("modules", {})
    if "G_ema" not in modules or not any(k.startswith("mapping.vaes.") for k in modules["G_ema"]):
        raise ValueError(f"{path} is not a disco run checkpoint (no G_ema with lambda VAEs); pass one of "
                         "gan-bridge train disco")
    config = from_dict(DiscoConfig, state["config"])
    from morph3d.model import load_model, model_dims
    dims = factor_dims(model_dims(load_model(config.shape_model)))
    G = build_generator(config, LambdaVAEs(dims, hidden=tuple(config.vae_hidden)))
    G.load_state_dict(modules["G_ema"])
    return G.eval().requires_grad_(False), config, int(state["step"])


__all__ = ["DiscoMethod", "build_generator", "load_disco", "training_lambda"]
