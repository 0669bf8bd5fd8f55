"""Training PAS + inpainting with the shared loop (``gan-bridge train pas``).

Every step renders ``batch_size`` same-identity pairs (I = view 0, J = view 1, differing in the head pose) of the
synthetic world, with exact 3D landmarks, and preprocesses them (Sec. 3.1). The first ``pretrain_steps`` train only
the inpainting generator G and the projection discriminator D, restoring occluded faces S_occ -> S. Then PAS and G
train jointly: PAS by L_sampler (Eq. 8) and by G's losses through J_hat_fake, G by L_gen (Eq. 13), D by the hinge
loss (Eq. 14) on (J, J_fake), (I, I_recon) and (S, S_recon).

    gan-bridge train pas run_dir=runs/pas image_size=64 steps=30000 pretrain_steps=5000
"""
from __future__ import annotations

import torch

from gan_bridge.face.pas_prep import landmarks_3d, preprocess
from gan_bridge.face.world import FaceWorld, FaceWorldStream, WorldBatch, WorldConfig
from gan_bridge.train import Method
from gan_bridge.train.registry import register

from .config import PasConfig
from .edit import build_networks, default_identity, pas_sample, run_pipeline, start_map
from .losses import (PERCEPTUAL_LAYERS, dice_loss, discriminator_hinge, displacement_tv, generator_hinge,
                     identity_loss, l1, occlude, pas_pixel_loss, total_variation)


class PasMethod(Method):
    """Method ``pas``: modules ``pas``, ``gen``, ``disc`` (per variant), one Adam optimiser each.

    identity: optional ``(images, landmarks (B, 68, 2)) -> (B, identity_dim)`` features (frozen network; tests pass a
    tiny one); perceptual: optional ``(a, b) -> scalar`` loss (default VGG16, L1 over the five layers of Eq. 5);
    world: optional :class:`FaceWorld` (default built from the config).
    """

    config_class = PasConfig

    def __init__(self, config: PasConfig | None = None, identity=None, identity_dim: int | None = None,
                 perceptual=None, world: FaceWorld | None = None):
        super().__init__(config)
        if identity is not None and identity_dim is None:
            raise ValueError("give identity_dim with a custom identity network")
        self.identity, self.identity_dim = identity, identity_dim
        self.perceptual, self.world = perceptual, world

    # ---- setup ------------------------------------------------------------------------------------
    def build(self, config: PasConfig, device):
        c = config
        if self.identity is None:
            self.identity, self.identity_dim = default_identity(c)
        if self.perceptual is None and c.lambda_per > 0:
            from gan_bridge.networks.perceptual import PerceptualLoss
            self.perceptual = PerceptualLoss(PERCEPTUAL_LAYERS, distance="l1").to(device)
        if self.world is None:
            self.world = FaceWorld(WorldConfig(image_size=c.image_size, seed=c.world_seed, model=c.world_model,
                                               train_identities=c.world_identities))
        if self.world.config.image_size != c.image_size:
            raise ValueError(f"the world renders {self.world.config.image_size} px images but image_size is "
                             f"{c.image_size}")
        nets = {k: v.to(device) for k, v in build_networks(c, self.identity_dim).items()}
        opts = {k: torch.optim.Adam(v.parameters(), lr=c.lr, betas=c.betas) for k, v in nets.items()}
        return nets, opts

    # ---- data -------------------------------------------------------------------------------------
    def data(self, start_step: int):
        """World batches of ``local_batch`` same-identity sets of two views (set-major), from ``start_step`` on."""
        return iter(FaceWorldStream(self.world, self.config.batch_size, self.dist.rank, self.dist.world_size,
                                    start_step, views=2, vary=self.config.vary))

    def pairs(self, batch: WorldBatch) -> dict[str, torch.Tensor]:
        """A set-major batch of 2-view sets -> I, J (B, 3, H, W), their 3D landmarks lm_I, lm_J (B, 68, 3)."""
        if len(batch) < 2 or len(batch) % 2:
            raise ValueError(f"PAS needs pairs of views; got a batch of {len(batch)} images")
        with torch.no_grad():
            lm = landmarks_3d(self.world.model, batch.params).float()
        image = batch.image.float()
        dev = self.device
        return {"I": image[0::2].to(dev), "J": image[1::2].to(dev), "lm_I": lm[0::2].to(dev),
                "lm_J": lm[1::2].to(dev)}

    def _step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.dist.rank) * 1_000_003 + step)

    # ---- losses -----------------------------------------------------------------------------------
    def _features(self, images, landmarks, grad: bool = False):
        if self.identity is None:
            return None
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.identity(images, landmarks[..., :2])

    def pretraining(self, step: int) -> bool:
        return step < self.config.pretrain_steps and self.config.variant != "pas_only"

    def losses(self, d: dict, rng: torch.Generator, pretrain: bool) -> tuple[dict, list]:
        """Generator-side loss terms (weighted sum in ``loss``) and the (fake, real, landmarks) triples for D."""
        c = self.config
        terms: dict[str, torch.Tensor] = {}
        I, J, lm_I, lm_J = d["I"], d["J"], d["lm_I"], d["lm_J"]
        per = self.perceptual if c.lambda_per > 0 else None
        prep = None if pretrain else preprocess(I, lm_I, lm_J)
        j_hat = i_hat = None
        if prep is not None and "pas" in self.modules:
            pas = self.modules["pas"]
            j_hat, j_seg, grid = pas_sample(pas, prep, lm_J, start_map(c, prep))
            i_hat, _, grid_r = pas(I, prep.seg_source, lm_I)
            terms["pas_pix"] = pas_pixel_loss(j_hat, J, i_hat, I, c.recon_weight)
            terms["pas_seg"] = dice_loss(prep.seg_target, j_seg)
            terms["pas_tv"] = total_variation(j_hat) + total_variation(i_hat)
            if per is not None:
                terms["pas_per"] = per(j_hat, J)
            if c.lambda_tv_map > 0:
                terms["pas_tv_map"] = displacement_tv(grid) + displacement_tv(grid_r)
        elif prep is not None:
            j_hat, i_hat = prep.image_tf, I  # inpainting without PAS
        fakes = []
        if "gen" in self.modules:
            G = self.modules["gen"]
            feats = self._features(I, lm_I)
            s_occ, _ = occlude(I, rng, c.occlusion_min, c.occlusion_max, c.occlusion_holes)
            s_rec = G(s_occ, lm_I, feats)
            pix, tv = l1(s_rec, I), total_variation(s_rec)
            perc = per(s_rec, I) if per is not None else None
            fakes.append((s_rec, I, lm_I))
            if not pretrain:
                j_fake, i_rec = G(j_hat, lm_J, feats), G(i_hat, lm_I, feats)
                pix = pix + l1(j_fake, J) + c.inpaint_recon_weight * l1(i_rec, I)
                tv = tv + total_variation(j_fake) + total_variation(i_rec)
                if perc is not None:
                    perc = perc + per(j_fake, J)
                if self.identity is not None and c.lambda_id > 0:
                    terms["gen_id"] = identity_loss(self._features(j_fake, lm_J, grad=True), self._features(J, lm_J))
                fakes += [(j_fake, J, lm_J), (i_rec, I, lm_I)]
            terms["gen_pix"], terms["gen_tv"] = pix, tv
            if perc is not None:
                terms["gen_per"] = perc
            if c.lambda_adv > 0:
                D = self.module("disc").requires_grad_(False)
                terms["gen_adv"] = generator_hinge(D(torch.cat([f for f, _, _ in fakes]),
                                                     torch.cat([lm for _, _, lm in fakes])))
                D.requires_grad_(True)
        weights = {"pix": c.lambda_pix, "seg": c.lambda_seg, "per": c.lambda_per, "tv": c.lambda_tv,
                   "tv_map": c.lambda_tv_map, "id": c.lambda_id, "adv": c.lambda_adv}
        terms["loss"] = sum(weights[k.split("_", 1)[1]] * v for k, v in terms.items())
        return terms, fakes

    def train_step(self, batch: WorldBatch, step: int) -> dict[str, float]:
        d = self.pairs(batch)
        pretrain = self.pretraining(step)
        terms, fakes = self.losses(d, self._step_generator(step), pretrain)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"PAS loss is {terms['loss'].item()} at step {step}; lower lr")
        names = [n for n in ("pas", "gen") if n in self.optimizers and not (pretrain and n == "pas")]
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)
        terms["loss"].backward()
        for n in names:
            self.optimizers[n].step()
        out = {k: float(v.detach()) for k, v in terms.items()}
        if fakes:
            D, opt = self.modules["disc"], self.optimizers["disc"]
            fake = torch.cat([f.detach() for f, _, _ in fakes])
            real = torch.cat([r for _, r, _ in fakes])
            lm = torch.cat([m for _, _, m in fakes])
            scores = D(torch.cat([real, fake]), torch.cat([lm, lm]))
            d_loss = discriminator_hinge(scores[:len(real)], scores[len(real):])
            opt.zero_grad(set_to_none=True)
            d_loss.backward()
            opt.step()
            out["disc"] = float(d_loss.detach())
        out["pretrain"] = float(pretrain)
        return out

    # ---- samples ----------------------------------------------------------------------------------
    def fixed_inputs(self, n: int, generator: torch.Generator):
        """n held-out pairs (rendered once)."""
        return self.world.heldout().identity_sets(range(n), 2, self.config.vary)

    def sample(self, fixed: WorldBatch) -> torch.Tensor:
        """Per pair: I, I_tf, J_hat_fake (PAS), J_fake (final), J -> (5n, 3, H, W) in [-1, 1] (one pair per row of
        the grid with the default num_samples = 5)."""
        d = self.pairs(fixed)
        inputs = preprocess(d["I"], d["lm_I"], d["lm_J"])
        pas, gen = self.raw_modules.get("pas"), self.raw_modules.get("gen")
        feats = self._features(d["I"], d["lm_I"]) if gen is not None else None
        r = run_pipeline(pas, gen, inputs, d["lm_J"], feats, start_map(self.config, inputs))
        panels = torch.stack([d["I"], inputs.image_tf, r.sampled, r.final, d["J"]], 1)
        return panels.flatten(0, 1).clamp(-1, 1)


register("pas", "gan_bridge.pas.method:PasMethod")

__all__ = ["PasMethod"]
