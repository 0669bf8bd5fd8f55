"""PIE: embedding a real portrait for semantic editing (Tewari et al. 2020, "PIE", Sec. 4).

E(w) = E_syn + E_id + E_edit + E_inv + E_recog (Eq. 6), minimised by :func:`gan_bridge.inversion.invert`
with the hierarchical 'pie' schedule (2000 steps in W, then 1000 in W+; Sec. 4.4). E_syn is the
inversion's own synthesis energy (Eq. 7); :class:`PIEEnergy` adds the rest through ``invert``'s
``energy`` hook, for the RigNet of one control mode tau:

- E_id = lambda_id ||w - rignet(w, theta^tau(w))||^2 (Eq. 8, summed over W+ entries);
- E_edit = lambda_e E_v[l(I_v, [theta_v^tau-bar, theta^tau(rignet(w, theta_v^tau))])] (Eq. 11);
- E_inv = lambda_inv E_v[l(I, [theta^tau-bar(rignet(w, theta_v^tau)), theta_I^tau])] (Eq. 13);
- E_recog = lambda_rw ||Psi(I) - Psi(I(w))||^2 + lambda_rv E_v[||Psi(I) - Psi(I(rignet(w, theta_v^tau)))||^2]
  (Eqs. 14-15), Psi the identity network (dlib's ResNet here; VGG-Face in the paper).

Each iteration draws fresh codes v (``samples`` per image). Energies are summed over the batch like the
inversion's. l is :func:`gan_bridge.face.rig.render_loss`.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch

from gan_bridge.face.rig import RigFace, mix, render_loss, tau
from gan_bridge.inversion import InversionResult, Stage, invert, preset

from .config import PIEConfig


class PIEEnergy:
    """The terms of PIE's energy beyond E_syn, for target ``images`` (B, 3, H, W) in [-1, 1].

    identity: ``(images, landmarks (B, 68, 2)) -> (B, D)`` features (default dlib's, when recognition is on).
    ``terms`` holds the last call's weighted terms (floats) for logging.
    """

    def __init__(self, G, rignet, face: RigFace, images: torch.Tensor, config: PIEConfig | None = None,
                 identity=None):
        self.G, self.rignet, self.face = G, rignet, face
        self.config = config or PIEConfig()
        rignet.check_generator(G)
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError(f"PIE needs a non-empty (B, 3, H, W) batch of images, got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or Inf values")
        if self.config.recognition and identity is None:
            from gan_bridge.face.identity import identity_embedding
            identity = identity_embedding
        self.identity = identity
        self.gen = torch.Generator(device=images.device).manual_seed(self.config.seed)
        with torch.no_grad():
            self.images = images.clamp(-1, 1)
            self.target = face.estimate(self.images).detach()
            self.target_id = identity(self.images, self.target.landmarks) if self.config.recognition else None
        self.terms: dict[str, float] = {}

    def _sample_v(self, n: int):
        c = self.config
        with torch.no_grad():
            z = torch.randn(n, self.G.z_dim, generator=self.gen, device=self.images.device)
            v = self.G.mapping(z, truncation_psi=c.truncation_psi)
            img_v = self.G.synthesis(v, noise_mode="const").clamp(-1, 1)
            return img_v, self.face.estimate(img_v).detach()

    def __call__(self, ws: torch.Tensor, synth: torch.Tensor, step: int) -> torch.Tensor:
        """ws: (B, num_ws, w_dim) the current embedding; synth: I(w) (B, 3, H, W) -> scalar energy."""
        c, mode, s = self.config, self.rignet.mode, self.config.samples
        if not (c.modification or c.recognition):
            self.terms = {}
            return ws.new_zeros([])
        b = ws.shape[0]
        synth = synth.clamp(-1, 1)
        coeffs_w = self.face.estimate(synth)
        img_v, cv = self._sample_v(b * s)
        w_rep = ws.repeat_interleave(s, 0)
        w_hat = self.rignet(w_rep, tau(cv.params, mode))
        img_hat = self.G.synthesis(w_hat, noise_mode="const").clamp(-1, 1)
        coeffs_hat = self.face.estimate(img_hat)
        terms = {}
        if c.modification:
            terms["id"] = c.lambda_id * (ws - self.rignet(ws, tau(coeffs_w.params, mode))).square().sum()
            edit = render_loss(self.face, img_v, cv.landmarks, mix(cv.params, coeffs_hat.params, mode),
                               c.photometric, c.landmark)
            target = self.target.params[torch.arange(b).repeat_interleave(s)]
            images = self.images.repeat_interleave(s, 0)
            landmarks = self.target.landmarks.repeat_interleave(s, 0)
            inv = render_loss(self.face, images, landmarks, mix(coeffs_hat.params, target, mode),
                              c.photometric, c.landmark)
            terms["edit"] = c.lambda_e * edit.sum() / s
            terms["inv"] = c.lambda_inv * inv.sum() / s
        if c.recognition:
            psi_w = self.identity(synth, coeffs_w.landmarks.detach())
            psi_hat = self.identity(img_hat, coeffs_hat.landmarks.detach())
            terms["recog_w"] = c.lambda_rw * (psi_w - self.target_id).square().sum()
            terms["recog_v"] = c.lambda_rv * (psi_hat - self.target_id.repeat_interleave(s, 0)).square().sum() / s
        self.terms = {k: float(v.detach()) for k, v in terms.items()}
        return sum(terms.values())


def embed(G, rignet, face: RigFace, images: torch.Tensor, config: PIEConfig | None = None, identity=None,
          weights: torch.Tensor | None = None, progress: bool = True) -> InversionResult:
    """PIE embedding of ``images`` (B, 3, H, W) in [-1, 1] at G's resolution -> the inversion's result
    (``ws`` (B, num_ws, w_dim) ready for the RigNets)."""
    config = config or PIEConfig()
    schedule = preset(config.preset, seed=config.seed)
    if not config.hierarchical:
        schedule = replace(schedule, stages=(Stage("w+", schedule.total_steps, schedule.stages[-1].lr),))
    if config.steps_scale != 1.0:
        schedule = schedule.scaled(config.steps_scale)
    G = copy.deepcopy(G).eval().requires_grad_(False)  # the caller's G keeps its mode and gradients
    energy = PIEEnergy(G, rignet, face, images, config, identity) if (config.modification or config.recognition) \
        else None
    return invert(G, images, schedule, weights=weights, progress=progress, energy=energy)


__all__ = ["PIEEnergy", "embed"]
