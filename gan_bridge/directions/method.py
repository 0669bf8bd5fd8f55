"""Training the reenactment directions A with the shared loop (Bounareli et al., Sec. 3).

Each step draws source / target latents (random z through the frozen generator's mapping; with
``real_latents``, ``real_fraction`` of them are inverted real codes, Sec. 3.2), reads both images' 3DMM
coefficients with the encoder, and rescales their pose vectors p to [-a, a]. For ``single_attribute_prob``
of the samples Delta p changes one random attribute by U[-a, a]. The reenacted image ``G(w_s + A Delta p)``
must have the shape of the source identity in the target pose / expression (L_sh, L_eye, L_mouth), the
source's identity (L_id) and look like the source (L_per). With ``paired`` (Sec. 3.3) source and target
are two views of one identity and L_id, L_per and L_pix compare the reenacted image with the target.

    gan-bridge train directions generator=G.pt run_dir=runs/dirs stats_samples=10000
    python -m gan_bridge.directions.method export runs/dirs A.pt
    gan-bridge train directions generator=G.pt run_dir=runs/ft paired=pairs.pt init_directions=A.pt
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from gan_bridge.face.shape import FaceCoefficients, ShapeModel, load_encoder
from gan_bridge.networks.stylegan2 import load_frozen_generator
from gan_bridge.train import Method
from gan_bridge.train.export import export_main
from gan_bridge.train.registry import register

from .config import DirectionsConfig
from .losses import EYE_PAIRS, MOUTH_PAIRS, identity_loss, pair_distance_loss, pixel_loss, shape_loss, weighted_total
from .model import Directions, load_directions, pose_range, pose_vector, save_directions

STATS_FORMAT = "gan_bridge.directions.pose_stats.v1"


@torch.no_grad()
def sample_pose_vectors(G, encoder, n: int, batch: int, expression_dims: int, seed: int = 0,
                        truncation_psi: float = 1.0, device="cpu") -> torch.Tensor:
    """p (n, 3 + m_e) of ``n`` random generated images (seeded), for the rescaling range."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), G.z_dim, generator=gen, device=device)
        images = G.synthesis(G.mapping(z, truncation_psi=truncation_psi), noise_mode="const")
        c = encoder(images)
        out.append(pose_vector(c.rotation, c.expression, expression_dims).cpu())
    return torch.cat(out)


def ground_truth_coefficients(source: FaceCoefficients, target_pose: torch.Tensor) -> tuple:
    """Source identity in the target pose: (identity, expression, rotation) for S_gt (Eq. 1).

    target_pose: (B, 3 + m_e) model units; expression coefficients beyond m_e stay the source's."""
    m = target_pose.shape[1] - 3
    expression = torch.cat([target_pose[:, 3:], source.expression[:, m:]], 1)
    return source.identity, expression, target_pose[:, :3]


def single_attribute_changes(delta: torch.Tensor, prob: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """delta (B, k) -> a copy where a random ``prob`` share of rows is ``eps e_i``: one random attribute i,
    eps ~ U[-scale, scale] (the paper's disentanglement strategy)."""
    b, k = delta.shape
    pick = torch.rand(b, generator=gen) < prob
    attr = torch.randint(k, (b,), generator=gen)
    eps = (torch.rand(b, generator=gen) * 2 - 1) * scale
    single = torch.zeros(b, k).scatter_(1, attr[:, None], eps[:, None]).to(delta)
    return torch.where(pick.to(delta.device)[:, None], single, delta)


class DirectionsMethod(Method):
    """Method ``directions``: module ``directions`` (A + the pose range), optimiser ``directions``.

    generator / encoder / shape_model / identity / perceptual may be given (tests, custom networks):
    encoder ``images -> FaceCoefficients``; identity ``(images, landmarks (B, 68, 2) or None) -> (B, D)``
    features; perceptual ``(a, b) -> scalar``. Otherwise they are built from the config.
    """

    config_class = DirectionsConfig

    def __init__(self, config: DirectionsConfig | None = None, generator=None, encoder=None, shape_model=None,
                 identity=None, perceptual=None):
        super().__init__(config)
        self.G, self.encoder, self.shape = generator, encoder, shape_model
        self.identity, self.perceptual = identity, perceptual
        self.real_ws = self.paired = None

    # ---- setup ------------------------------------------------------------------------------------
    def build(self, config: DirectionsConfig, device):
        c = config
        if self.G is None:
            self.G = load_frozen_generator(c.generator)
        self.G = self.G.to(device).eval().requires_grad_(False)
        if self.shape is None:
            self.shape = ShapeModel(c.shape_model)
        self.shape = self.shape.to(device)
        if self.encoder is None:
            self.encoder = load_encoder(c.encoder or None, c.shape_model, c.encoder_box, c.encoder_reframe).to(device)
        if self.identity is None and c.lambda_id > 0:
            from gan_bridge.face.identity import identity_embedding
            self.identity = identity_embedding
        if self.perceptual is None and c.lambda_per > 0:
            from gan_bridge.networks.perceptual import PerceptualLoss
            self.perceptual = PerceptualLoss().to(device)
        m_e = c.expression_dims or self.shape.expression_dim
        if m_e > self.shape.expression_dim:
            raise ValueError(f"expression_dims={m_e} but the model has {self.shape.expression_dim} expression "
                             "coefficients")
        if c.init_directions:
            directions = load_directions(c.init_directions).train().to(device)
            directions.check_generator(self.G)
        else:
            directions = Directions(self.G.num_ws, self.G.w_dim, min(c.num_layers, self.G.num_ws), m_e,
                                    c.shift_scale).to(device)
            directions.set_range(*pose_range(self._pose_samples(m_e, device)))
        if c.real_latents:
            self.real_ws = self._load_latents(c.real_latents, ("ws",))["ws"].float()
        if c.paired:
            self.paired = self._load_latents(c.paired, ("ws", "images"))
        return {"directions": directions}, {"directions": torch.optim.Adam(directions.parameters(), lr=c.lr)}

    def _pose_samples(self, m_e: int, device) -> torch.Tensor:
        """p of ``stats_samples`` generated images, cached in ``run_dir/pose_stats.pt`` for resumes."""
        c = self.config
        path = Path(c.run_dir) / "pose_stats.pt"
        key = {"n": c.stats_samples, "m_e": m_e, "seed": c.seed, "psi": c.truncation_psi, "generator": c.generator,
               "encoder": [c.encoder, c.shape_model, list(c.encoder_box), int(c.encoder_reframe)]}
        if path.is_file():
            record = torch.load(path, map_location="cpu", weights_only=True)
            if record.get("format") == STATS_FORMAT and record.get("key") == key:
                return record["p"]
        p = sample_pose_vectors(self.G, self.encoder, c.stats_samples, c.stats_batch, m_e, c.seed,
                                c.truncation_psi, device)
        if self.dist.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"format": STATS_FORMAT, "key": key, "p": p}, path)
        return p

    def _load_latents(self, path: str, fields: tuple) -> dict:
        if not Path(path).is_file():
            raise FileNotFoundError(f"latents file {path} does not exist")
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} is corrupt or not a latents file ({type(exc).__name__})") from None
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise ValueError(f"{path} lacks '{missing[0]}'; expected a dict with {', '.join(fields)}")
        ws = record["ws"]
        if ws.shape[-2:] != (self.G.num_ws, self.G.w_dim) or ws.shape[0] < 1:
            raise ValueError(f"{path}: latents {tuple(ws.shape)} do not fit this generator's W+ "
                             f"({self.G.num_ws}, {self.G.w_dim}); invert with the same generator")
        if "images" in fields and (ws.ndim != 4 or ws.shape[1] < 2 or record["images"].shape[:2] != ws.shape[:2]):
            raise ValueError(f"{path}: paired data needs ws (N, V >= 2, num_ws, w_dim) and images (N, V, 3, R, R)")
        return record

    # ---- data -------------------------------------------------------------------------------------
    def data(self, start_step: int):
        """The step index: every sample of a step is drawn from a generator seeded by (seed, rank, step)."""
        return itertools.count(start_step)

    def _step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.dist.rank) * 1_000_003 + step)

    def _latents(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, num_ws, w_dim): random z mapped (truncated), and inverted real codes when configured."""
        G, dev = self.G, self.device
        n_real = round(n * self.config.real_fraction) if self.real_ws is not None else 0
        z = torch.randn(n - n_real, G.z_dim, generator=gen).to(dev)
        ws = G.mapping(z, truncation_psi=self.config.truncation_psi)
        if n_real:
            idx = torch.randint(len(self.real_ws), (n_real,), generator=gen)
            ws = torch.cat([ws, self.real_ws[idx].to(dev)])
        return ws

    def _pairs(self, n: int, gen: torch.Generator):
        """Two different views of n random same-identity sets: (ws_s, ws_t, images_t in [-1, 1])."""
        ws, images = self.paired["ws"], self.paired["images"]
        idx = torch.randint(ws.shape[0], (n,), generator=gen)
        a = torch.randint(ws.shape[1], (n,), generator=gen)
        b = (a + torch.randint(1, ws.shape[1], (n,), generator=gen)) % ws.shape[1]
        img_t = images[idx, b].float() / 127.5 - 1 if images.dtype == torch.uint8 else images[idx, b].float()
        return ws[idx, a].float().to(self.device), ws[idx, b].float().to(self.device), img_t.to(self.device)

    # ---- training ---------------------------------------------------------------------------------
    def losses(self, ws_s: torch.Tensor, ws_t: torch.Tensor, gen: torch.Generator,
               images_t: torch.Tensor | None = None, directions=None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (keys shape, eye, mouth, id, per, pix as weighted) and ``loss``.

        ws_s / ws_t: (B, num_ws, w_dim); images_t: paired target images (then no single-attribute changes
        and L_id / L_per / L_pix compare with them)."""
        c, G = self.config, self.G
        D = self.module("directions")
        apply = directions or self.modules["directions"]
        paired = images_t is not None
        with torch.no_grad():
            img_s = G.synthesis(ws_s, noise_mode="const")
            img_t = images_t if paired else G.synthesis(ws_t, noise_mode="const")
            cs, ct = self.encoder(img_s).detach(), self.encoder(img_t).detach()
            qs = D.rescale(pose_vector(cs.rotation, cs.expression, D.expression_dims))
            qt = D.rescale(pose_vector(ct.rotation, ct.expression, D.expression_dims))
            delta = qt - qs
            if not paired and c.single_attribute_prob > 0:
                delta = single_attribute_changes(delta, c.single_attribute_prob, D.shift_scale, gen)
            shape_gt = self.shape.posed_shape(*ground_truth_coefficients(cs, D.unscale(qs + delta)))
            lm_gt = self.shape.landmarks(shape_gt)
        img_r = G.synthesis(apply(ws_s, delta), noise_mode="const")
        cr = self.encoder(img_r)
        unit = 1.0 / c.shape_unit_mm
        shape_r, shape_gt = self.shape(cr) * unit, shape_gt * unit
        lm_r, lm_gt = self.shape.landmarks(shape_r), lm_gt * unit
        terms = {"shape": shape_loss(shape_r, shape_gt), "eye": pair_distance_loss(lm_r, lm_gt, EYE_PAIRS),
                 "mouth": pair_distance_loss(lm_r, lm_gt, MOUTH_PAIRS)}
        # the image networks take [-1, 1]; generators overshoot a little
        ref, ref_c = (img_t, ct) if paired else (img_s.clamp(-1, 1), cs)
        out = img_r.clamp(-1, 1)
        if c.lambda_id > 0:
            terms["id"] = identity_loss(self.identity(ref, ref_c.landmarks), self.identity(out, cr.landmarks))
        if c.lambda_per > 0:
            terms["per"] = self.perceptual(out, ref)
        if paired and c.lambda_pix > 0:
            terms["pix"] = pixel_loss(out, ref)
        weights = {"shape": c.lambda_shape, "eye": c.lambda_eye, "mouth": c.lambda_mouth, "id": c.lambda_id,
                   "per": c.lambda_per, "pix": c.lambda_pix}
        terms["loss"] = weighted_total(terms, weights)
        return terms

    def train_step(self, batch: int, step: int) -> dict[str, float]:
        gen = self._step_generator(step)
        n = self.local_batch
        if n < 1:
            raise ValueError("empty batch: use batch_size >= the number of processes")
        if self.paired is not None:
            ws_s, ws_t, images_t = self._pairs(n, gen)
        else:
            ws_s, ws_t, images_t = self._latents(n, gen), self._latents(n, gen), None
        terms = self.losses(ws_s, ws_t, gen, images_t)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"directions loss is {terms['loss'].item()} at step {step}; lower lr")
        opt = self.optimizers["directions"]
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    # ---- samples and state ------------------------------------------------------------------------
    def fixed_inputs(self, n: int, generator: torch.Generator):
        return torch.randn(n, self.G.z_dim, generator=generator), torch.randn(n, self.G.z_dim, generator=generator)

    def sample(self, fixed) -> torch.Tensor:
        """Rows of sources, targets and reenacted sources: (3n, 3, H, W) in [-1, 1]."""
        from .reenact import reenact_latents
        G, D = self.G, self.module("directions")
        ws_s = G.mapping(fixed[0].to(self.device), truncation_psi=self.config.truncation_psi)
        ws_t = G.mapping(fixed[1].to(self.device), truncation_psi=self.config.truncation_psi)
        img_t = G.synthesis(ws_t, noise_mode="const")
        out = reenact_latents(G, D, self.encoder, ws_s, img_t)
        return torch.cat([out.source, img_t, out.reenacted]).clamp(-1, 1)

    def state_dict(self) -> dict:
        return {"directions_shape": self.module("directions").config()}


def export(run: str | Path, out: str | Path) -> Path:
    """Write the latest checkpoint's directions of run folder ``run`` (or a ckpt-*.pt) to ``out``."""
    import json

    from gan_bridge.train import run_checkpoint

    from .model import load_directions
    ckpt, recipe = run_checkpoint(run)
    directions = load_directions(ckpt)
    return save_directions(directions, out, recipe=recipe or json.dumps(directions.config()))


def main(argv=None) -> int:
    return export_main(argv, "python -m gan_bridge.directions.method", "write a run's directions A as a standalone A.pt",
                       "output .pt", export)


register("directions", "gan_bridge.directions.method:DirectionsMethod")

__all__ = ["DirectionsMethod", "export", "ground_truth_coefficients", "sample_pose_vectors", "single_attribute_changes"]

if __name__ == "__main__":
    raise SystemExit(main())
