"""Training LI-Net with the shared loop (``gan-bridge train linet``).

Every step draws ``batch_size`` examples from the training grid (identities x expressions x poses): a source
identity s and a driving identity d, source motion p = (e1, pose1) and driving motion q = (e2, pose2), and renders
I_s,p, I_s,q, L_d,q, L_d,p, the true rotated face I_R = (s, e1, pose2) and the augmentation landmarks
(s, e3, pose2) (driving pose, source identity, another expression; Fig. 3). Each stage in ``config.stages`` trains
its own networks with its own losses (the paper trains T, R and G separately):

- transformer: T by Eq. 1 (L_L1, L_rec Eq. 2, L_cycle Eq. 3, L_id, adversarial Eq. 4); C_id by cross entropy,
  D_r by Eq. 4;
- rotation: R by Eq. 5 (L_diff, LSGAN Eq. 6, L_pose Eq. 7); D by LSGAN, D_p by L_Dp (Eq. 7) on true faces;
- generator: G (with E_e) by Eq. 8 (L_pix, L_per Eq. 9, L_adv); D_G by the GAN loss;
- pix2pix (the evaluation's baseline, not part of LI-Net): P by L1 + conditional GAN, D_P by the GAN loss.

    gan-bridge train linet run_dir=runs/linet image_size=64 steps=20000
    gan-bridge train linet run_dir=runs/linet_g stages=generator init_from=runs/linet_tr
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from gan_bridge.face.linet_prep import grid_faces, head_pose, landmark_image
from gan_bridge.face.world import FaceWorld, WorldConfig
from gan_bridge.train import Method
from gan_bridge.train.registry import register

from .config import LinetConfig
from .losses import (bce_discriminator, bce_generator, cycle_loss, identity_classification_loss,
                     identity_feature_loss, l1, lsgan_discriminator, lsgan_generator, perceptual_loss, pose_loss,
                     reconstruction_loss)
from .reenact import STAGE_MODULES, build_networks, reenact

# The six grid cells of one example, as (identity role, expression role, pose role).
ROLES = {"sp": ("s", "e1", "p1"), "sq": ("s", "e2", "p2"), "dq": ("d", "e2", "p2"), "dp": ("d", "e1", "p1"),
         "rot": ("s", "e1", "p2"), "aug": ("s", "e3", "p2")}


@contextmanager
def _frozen(module):
    """``module`` without parameter gradients for the block (a critic used inside another network's loss)."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


class LinetMethod(Method):
    """Method ``linet``: modules T, C_id, D_r, R, D, D_p, G, D_G (all built and checkpointed); one Adam optimiser per
    network of the trained stages.

    perceptual: optional ``(a, b) -> scalar`` VGG feature loss (phi of Eq. 9; default VGG16, L1 over relu1_2..relu4_3);
    identity: optional ``(images, landmarks (B, 68, 2)) -> (B, D)`` face-verification features (psi of Eq. 9;
    default dlib's descriptor when ``identity_net='dlib'``); world: optional :class:`FaceWorld` (train split).
    """

    config_class = LinetConfig
    sample_columns = 6  # one example per row: the six panels of ``sample``

    def __init__(self, config: LinetConfig | None = None, perceptual=None, identity=None,
                 world: FaceWorld | None = None):
        super().__init__(config)
        self.perceptual, self.identity, self.world = perceptual, identity, world

    # ---- setup ------------------------------------------------------------------------------------
    def build(self, config: LinetConfig, device):
        c = config
        if self.world is None:
            self.world = FaceWorld(WorldConfig(image_size=c.image_size, seed=c.world_seed, model=c.world_model,
                                               train_identities=c.identities))
        if self.world.config.image_size != c.image_size:
            raise ValueError(f"the world renders {self.world.config.image_size} px images but image_size is "
                             f"{c.image_size}")
        if self.world.num_identities < c.identities:
            raise ValueError(f"the world has {self.world.num_identities} training identities, fewer than "
                             f"identities={c.identities}")
        if "generator" in c.stages and c.lambda_per > 0:
            if self.perceptual is None:
                from gan_bridge.networks.perceptual import PerceptualLoss
                self.perceptual = PerceptualLoss(distance="l1").to(device)
            if self.identity is None and c.identity_net == "dlib":
                from gan_bridge.face.identity import identity_embedding
                self.identity = identity_embedding
        nets = {k: v.to(device) for k, v in build_networks(c).items()}
        if c.init_from:
            self._load_modules(nets, c.init_from)
        trained = [n for s in c.stages for n in STAGE_MODULES[s]]
        opts = {n: torch.optim.Adam(nets[n].parameters(), lr=c.lr, betas=c.betas) for n in trained}
        return nets, opts

    @staticmethod
    def _load_modules(nets, path):
        from gan_bridge.train import latest_checkpoint, load_checkpoint
        path = Path(path)
        ckpt = latest_checkpoint(path) if path.is_dir() else path
        if ckpt is None or not Path(ckpt).is_file():
            raise ValueError(f"init_from={path}: no checkpoint there; give an LI-Net run folder or ckpt-*.pt")
        modules = load_checkpoint(ckpt).get("modules", {})
        missing = [n for n in nets if n not in modules]
        if missing:
            raise ValueError(f"init_from={ckpt} is not an LI-Net checkpoint (no {missing[0]})")
        for n, net in nets.items():
            net.load_state_dict(modules[n])

    # ---- data -------------------------------------------------------------------------------------
    def draws(self, n: int, gen: torch.Generator, identities: int) -> list[dict]:
        """n examples' roles: s != d identities, expressions e1 != e2, e3 != e1, poses p1, p2 (p2 != p1)."""
        c = self.config

        def pick(k, avoid=None):
            v = int(torch.randint(0, k - (avoid is not None), (), generator=gen))
            return v + (avoid is not None and v >= avoid)
        out = []
        for _ in range(n):
            s = pick(identities)
            e1, p1 = pick(c.expressions), pick(c.poses)
            e2 = pick(c.expressions, e1)
            out.append({"s": s, "d": pick(identities, s), "e1": e1, "e2": e2, "e3": pick(c.expressions, e1),
                        "p1": p1, "p2": pick(c.poses, p1)})
        return out

    def examples(self, world: FaceWorld, draws: list[dict]) -> dict[str, torch.Tensor]:
        """Render the six cells of every draw -> for each role r in ROLES: ``I_r`` (B, 3, H, W), ``L_r``
        (B, 1, H, W), ``lm_r`` (B, 68, 2), ``pose_r`` (B, 3); plus ``s``, ``d`` (B,) identity labels."""
        c = self.config
        cells = [(d[i], d[e], d[p]) for r, (i, e, p) in ROLES.items() for d in draws]
        batch = grid_faces(world, cells)
        n, dev = len(draws), self.device
        out = {"s": torch.tensor([d["s"] for d in draws], device=dev),
               "d": torch.tensor([d["d"] for d in draws], device=dev)}
        lm_img = landmark_image(batch.landmarks_2d, c.image_size, c.landmark_sigma)
        pose, image, lm = head_pose(batch), batch.image.float(), batch.landmarks_2d.float()
        for k, r in enumerate(ROLES):
            part = slice(k * n, (k + 1) * n)
            out[f"I_{r}"], out[f"L_{r}"] = image[part].to(dev), lm_img[part].to(dev)
            out[f"lm_{r}"], out[f"pose_{r}"] = lm[part].to(dev), pose[part].to(dev)
        return out

    def _step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.dist.rank) * 1_000_003 + step)

    def data(self, start_step: int):
        step = start_step
        while True:
            yield self.draws(self.local_batch, self._step_generator(step), self.config.identities)
            step += 1

    # ---- losses -----------------------------------------------------------------------------------
    def transformer_terms(self, x: dict) -> tuple[dict, torch.Tensor]:
        """Eq. 1's terms for T (keys t_l1, t_rec, t_cycle, t_id, t_adv) and T's output L_hat_s,q."""
        c, T = self.config, self.modules["T"]
        L_hat = T(x["L_sp"], x["L_dq"])
        terms = {"t_l1": l1(L_hat, x["L_sq"]), "t_rec": reconstruction_loss(T, x["L_sp"], x["L_sq"]),
                 "t_cycle": cycle_loss(T, L_hat, x["L_dq"], x["L_dp"])}
        if c.lambda_id > 0:
            with _frozen(self.module("C_id")) as C:
                terms["t_id"] = identity_feature_loss(C.features(x["L_sp"]).detach(), C.features(L_hat))
        if c.lambda_d > 0:
            with _frozen(self.module("D_r")) as D:
                terms["t_adv"] = bce_generator(D(L_hat))
        return terms, L_hat

    def rotation_terms(self, x: dict) -> tuple[dict, torch.Tensor]:
        """Eq. 5's terms for R (r_diff, r_gan, r_pose) and R's output from the augmentation landmarks."""
        c = self.config
        fake = self.modules["R"](x["I_sp"], x["L_aug"])
        terms = {"r_diff": l1(fake, x["I_rot"])}
        if c.lambda_gan > 0:
            with _frozen(self.module("D")) as D:
                terms["r_gan"] = lsgan_generator(D(fake))
        if c.lambda_pose > 0:
            with _frozen(self.module("D_p")) as P:
                terms["r_pose"] = pose_loss(P(fake), x["pose_rot"])
        return terms, fake

    def generator_terms(self, x: dict, rotated: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Eq. 8's terms for G (g_pix, g_per, g_adv) and G's reenacted face."""
        c = self.config
        fake = self.modules["G"](rotated, x["I_sp"], x["L_sq"])
        terms = {"g_pix": l1(fake, x["I_sq"])}
        if c.lambda_per > 0:
            identity = self.identity if c.lambda_per_id > 0 else None
            terms["g_per"] = perceptual_loss(fake, x["I_sq"], self.perceptual, identity, x["lm_sq"], c.lambda_per_id)
        if c.lambda_adv > 0:
            with _frozen(self.module("D_G")) as D:
                terms["g_adv"] = bce_generator(D(fake))
        return terms, fake

    def pix2pix_terms(self, x: dict) -> tuple[dict, torch.Tensor]:
        """The baseline's terms (p_l1, p_gan) and its output P(I_s,p, L_d,q)."""
        fake = self.modules["P"](x["I_sp"], x["L_dq"])
        terms = {"p_l1": l1(fake, x["I_sq"])}
        if self.config.lambda_p2p_gan > 0:
            with _frozen(self.module("D_P")) as D:
                terms["p_gan"] = bce_generator(D(torch.cat([x["I_sp"], x["L_dq"], fake], 1)))
        return terms, fake

    def weighted(self, terms: dict) -> torch.Tensor:
        c = self.config
        weights = {"t_l1": c.lambda_l1, "t_rec": c.lambda_rec, "t_cycle": c.lambda_cycle, "t_id": c.lambda_id,
                   "t_adv": c.lambda_d, "r_diff": c.lambda_diff, "r_gan": c.lambda_gan, "r_pose": c.lambda_pose,
                   "g_pix": c.lambda_pix, "g_per": c.lambda_per, "g_adv": c.lambda_adv, "p_l1": c.lambda_p2p_l1,
                   "p_gan": c.lambda_p2p_gan}
        return sum(weights[k] * v for k, v in terms.items())

    def _update(self, names, loss: torch.Tensor, what: str, step: int) -> float:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"LI-Net {what} loss is {loss.item()} at step {step}; lower lr")
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)
        loss.backward()
        for n in names:
            self.optimizers[n].step()
        return float(loss.detach())

    def train_step(self, draws: list[dict], step: int) -> dict[str, float]:
        x = self.examples(self.world, draws)
        stages, out = self.config.stages, {}
        if "transformer" in stages:
            terms, L_hat = self.transformer_terms(x)
            out["t_loss"] = self._update(["T"], self.weighted(terms), "transformer", step)
            C = self.modules["C_id"]
            logits = C(torch.cat([x["L_sp"], x["L_sq"], x["L_dq"], x["L_dp"]]))
            labels = torch.cat([x["s"], x["s"], x["d"], x["d"]])
            out["c_id"] = self._update(["C_id"], identity_classification_loss(logits, labels), "C_id", step)
            D = self.modules["D_r"]
            out["d_r"] = self._update(["D_r"], bce_discriminator(D(x["L_sq"]), D(L_hat.detach())), "D_r", step)
            out.update({k: float(v.detach()) for k, v in terms.items()})
        rotated = None
        if "rotation" in stages:
            terms, rotated = self.rotation_terms(x)
            out["r_loss"] = self._update(["R"], self.weighted(terms), "rotation", step)
            D = self.modules["D"]
            out["d_rot"] = self._update(["D"], lsgan_discriminator(D(x["I_rot"]), D(rotated.detach())), "D", step)
            out["d_pose"] = self._update(["D_p"], pose_loss(self.modules["D_p"](x["I_rot"]), x["pose_rot"]), "D_p",
                                         step)
            out.update({k: float(v.detach()) for k, v in terms.items()})
        if "generator" in stages:
            if self.config.generator_input == "rotation":
                with torch.no_grad():
                    rotated = self.module("R")(x["I_sp"], x["L_aug"])
            else:
                rotated = x["I_rot"]
            terms, fake = self.generator_terms(x, rotated.detach())
            out["g_loss"] = self._update(["G"], self.weighted(terms), "generator", step)
            D = self.modules["D_G"]
            out["d_g"] = self._update(["D_G"], bce_discriminator(D(x["I_sq"]), D(fake.detach())), "D_G", step)
            out.update({k: float(v.detach()) for k, v in terms.items()})
        if "pix2pix" in stages:
            terms, fake = self.pix2pix_terms(x)
            out["p_loss"] = self._update(["P"], self.weighted(terms), "pix2pix", step)
            cond = torch.cat([x["I_sp"], x["L_dq"]], 1)
            D = self.modules["D_P"]
            out["d_p2p"] = self._update(["D_P"], bce_discriminator(D(torch.cat([cond, x["I_sq"]], 1)),
                                                                   D(torch.cat([cond, fake.detach()], 1))), "D_P", step)
            out.update({k: float(v.detach()) for k, v in terms.items()})
        return out

    # ---- samples ----------------------------------------------------------------------------------
    def fixed_inputs(self, n: int, generator: torch.Generator):
        """n held-out examples (rendered once)."""
        heldout = self.world.heldout()
        return self.examples(heldout, self.draws(n, generator, min(heldout.num_identities, self.config.identities)))

    def sample(self, fixed: dict) -> torch.Tensor:
        """Per example: source, driving, T's landmarks, R's output, G's output, truth I_s,q -> (6n, 3, H, W)."""
        m = self.raw_modules
        r = reenact(m["T"], m["R"], m["G"], fixed["I_sp"], fixed["L_sp"], fixed["L_dq"])
        panels = [fixed["I_sp"], fixed["I_dq"], r.landmarks.expand(-1, 3, -1, -1) * 2 - 1, r.rotated, r.final,
                  fixed["I_sq"]]
        return torch.stack(panels, 1).flatten(0, 1).clamp(-1, 1)


register("linet", "gan_bridge.linet.method:LinetMethod")

__all__ = ["LinetMethod", "ROLES"]
