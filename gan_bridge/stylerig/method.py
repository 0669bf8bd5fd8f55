"""Training a RigNet with the shared loop (StyleRig, Tewari et al. 2020): ``gan-bridge train stylerig``.

Each step draws two batches of codes v, w (random z through the frozen generator's mapping, truncated),
and minimises :func:`gan_bridge.stylerig.losses.stylerig_losses` for the RigNet of ``mode``. No paired
data: the encoder (image -> 3DMM regressor) reads every image's parameters.

Recipe for the three RigNets of one generator (then ``gan-bridge edit ... --rignet rignets``):

    for m in pose lighting expression; do
      gan-bridge train stylerig generator=G.pt mode=$m run_dir=runs/rig-$m
      python -m gan_bridge.stylerig.method export runs/rig-$m rignets/$m.pt
    done
    python -m gan_bridge.stylerig.evaluate --generator G.pt --rignet rignets --mode pose --out eval.json
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from gan_bridge.face.rig import RigFace, tau
from gan_bridge.face.shape import load_encoder
from gan_bridge.networks.stylegan2 import load_frozen_generator
from gan_bridge.train import Method
from gan_bridge.train.export import export_main
from gan_bridge.train.registry import register

from .config import StyleRigConfig
from .losses import stylerig_losses, weighted_total
from .rignet import RigNet, load_rignet, save_rignet


def tau_dim(face: RigFace, mode: str) -> int:
    return {"pose": 3, "expression": face.model.expression_dim, "lighting": 27}[mode]


class StyleRigMethod(Method):
    """Method ``stylerig``: module ``rignet``, optimiser ``rignet`` (Adam).

    generator / face (a :class:`RigFace`) may be given (tests, custom encoders); otherwise they are built
    from the config.
    """

    config_class = StyleRigConfig

    def __init__(self, config: StyleRigConfig | None = None, generator=None, face: RigFace | None = None):
        super().__init__(config)
        self.G, self.face = generator, face

    def build(self, config: StyleRigConfig, device):
        c = config
        if self.G is None:
            self.G = load_frozen_generator(c.generator)
        self.G = self.G.to(device).eval().requires_grad_(False)
        if self.face is None:
            self.face = RigFace(load_encoder(c.encoder or None, c.shape_model, c.encoder_box, c.encoder_reframe))
        self.face = self.face.to(device).requires_grad_(False)
        rignet = RigNet(c.mode, self.G.num_ws, self.G.w_dim, tau_dim(self.face, c.mode), c.latent_dim,
                        c.hidden or None).to(device)
        return {"rignet": rignet}, {"rignet": torch.optim.Adam(rignet.parameters(), lr=c.lr)}

    def data(self, start_step: int):
        """The step index: each step's codes come from a generator seeded by (seed, rank, step)."""
        return itertools.count(start_step)

    def _codes(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
        with torch.no_grad():
            return self.G.mapping(z, truncation_psi=self.config.truncation_psi)

    def losses(self, v: torch.Tensor, w: torch.Tensor, rignet=None) -> dict[str, torch.Tensor]:
        c = self.config
        terms = stylerig_losses(self.G, rignet or self.modules["rignet"], self.face, v, w, c.photometric_weight,
                                c.landmark_weight)
        weights = {"rec": c.lambda_rec, "edit": c.lambda_edit, "consist": c.lambda_consist, "cycle": c.lambda_cycle}
        terms["loss"] = weighted_total(terms, weights)
        return terms

    def train_step(self, batch: int, step: int) -> dict[str, float]:
        n = self.local_batch
        if n < 1:
            raise ValueError("empty batch: use batch_size >= the number of processes")
        gen = torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.dist.rank) * 1_000_003 + step)
        terms = self.losses(self._codes(n, gen), self._codes(n, gen))
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"stylerig loss is {terms['loss'].item()} at step {step}; lower lr")
        opt = self.optimizers["rignet"]
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def fixed_inputs(self, n: int, generator: torch.Generator):
        return torch.randn(n, self.G.z_dim, generator=generator), torch.randn(n, self.G.z_dim, generator=generator)

    @torch.no_grad()
    def sample(self, fixed) -> torch.Tensor:
        """Rows of v, w and rignet(v, theta_w^tau): (3n, 3, H, W) in [-1, 1]."""
        G, net, psi = self.G, self.module("rignet"), self.config.truncation_psi
        v = G.mapping(fixed[0].to(self.device), truncation_psi=psi)
        w = G.mapping(fixed[1].to(self.device), truncation_psi=psi)
        img_v, img_w = G.synthesis(v, noise_mode="const"), G.synthesis(w, noise_mode="const")
        edited = G.synthesis(net(v, tau(self.face.estimate(img_w).params, net.mode)), noise_mode="const")
        return torch.cat([img_v, img_w, edited]).clamp(-1, 1)

    def state_dict(self) -> dict:
        return {"rignet_config": self.module("rignet").config()}


def export(run: str | Path, out: str | Path) -> Path:
    """Write the latest RigNet of run folder ``run`` (or a ckpt-*.pt) to ``out`` with the run's recipe."""
    from gan_bridge.train import run_checkpoint
    ckpt, recipe = run_checkpoint(run)
    net = load_rignet(ckpt)
    return save_rignet(net, out, recipe=recipe or json.dumps(net.config()))


def main(argv=None) -> int:
    return export_main(argv, "python -m gan_bridge.stylerig.method", "write a run's RigNet as a standalone <mode>.pt",
                       "output .pt (name it pose.pt, expression.pt or lighting.pt for gan-bridge edit)", export)


register("stylerig", "gan_bridge.stylerig.method:StyleRigMethod")

__all__ = ["StyleRigMethod", "export"]

if __name__ == "__main__":
    raise SystemExit(main())
