"""DiscoFaceGAN's imitative (Eqs. 2-5) and contrastive (Eqs. 6-8) losses, as functions over tensors, and
:class:`DiscoLosses`, which draws the generator's samples and pairs and sums the weighted terms.

The 3DMM side (``face``) is any object with the methods of :class:`gan_bridge.face.disco.DiscoFace`:
``render(lam, S)``, ``estimate(images)``, ``identity(images, landmarks)``, ``flow(lam_t, lam_s, S)`` and
``mouth(landmarks, S)``. Landmarks are pixels; Eq. 3 and 7 measure them in image sides.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from morph3d.render import warp_by_flow


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def identity_imitative(f_x: torch.Tensor, f_hat: torch.Tensor, tau: float = 0.3) -> torch.Tensor:
    """Eq. 2: mean over the batch of max(1 - cos(f_id(x), f_id(x_hat)) - tau, 0); features (B, F)."""
    return (1 - _cos(f_x, f_hat) - tau).clamp_min(0).mean()


def landmark_distance(p: torch.Tensor, q: torch.Tensor, image_size: int) -> torch.Tensor:
    """Eq. 3's ||p - q||^2 per image, (B,): squared distances of (B, 68, 2) px landmarks in image sides,
    averaged over the points."""
    return ((p - q) / image_size).square().sum(-1).mean(-1)


def sh_loss(gamma_x: torch.Tensor, gamma_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 4: |gamma(x) - gamma_hat|_1 (mean over coefficients and batch); (B, 27) each."""
    return (gamma_x - gamma_hat).abs().mean()


def masked_mean_colour(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """c(.): mean colour (B, 3) of images (B, 3, H, W) over mask (B, 1, H, W) in [0, 1]."""
    return (images * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1e-6)


def colour_loss(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 5: |c(x) - c(x_hat)|_1 over the 3DMM face mask, mean over channels and batch."""
    return (masked_mean_colour(x, mask) - masked_mean_colour(x_hat, mask)).abs().mean()


def expression_contrastive(x: torch.Tensor, x2: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor,
                           foreground: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
    """Eq. 6: |x(v) - x'|_1, x warped onto x' by the 3DMM flow v (B, 2, H, W) px (target x').

    Compared: target face pixels whose flow is ``valid`` and every pixel off the face (where the flow is 0:
    background and hair must not move), minus the ``mouth`` (B, 1, H, W) of either image. foreground: the
    target's rendered face coverage (B, 1, H, W). Images (B, 3, H, W); mean over compared pixels."""
    fg = foreground > 0.5
    keep = ((valid.bool() & fg) | ~fg) & ~(mouth > 0.5)
    keep = keep.to(x.dtype)
    diff = (warp_by_flow(x, flow) - x2).abs().mean(1, keepdim=True)
    return ((diff * keep).sum((1, 2, 3)) / keep.sum((1, 2, 3)).clamp_min(1.0)).mean()


def structure_map(images: torch.Tensor, size: int = 7, eps: float = 0.05) -> torch.Tensor:
    """m(.): an illumination-insensitive face-structure map, the luminance of (B, 3, H, W) [-1, 1] images
    normalised by its local mean and contrast over ``size`` px windows -> (B, 1, H, W). (The paper uses a
    face-parsing network's hair map, which this project does not have.)"""
    lum = images.mean(1, keepdim=True)
    pad = size // 2
    mean = F.avg_pool2d(F.pad(lum, [pad] * 4, mode="replicate"), size, stride=1)
    var = F.avg_pool2d(F.pad((lum - mean).square(), [pad] * 4, mode="replicate"), size, stride=1)
    return (lum - mean) / (var + eps ** 2).sqrt()


def illumination_structure(m: torch.Tensor, m2: torch.Tensor, p: torch.Tensor, p2: torch.Tensor,
                           omega: float, image_size: int) -> torch.Tensor:
    """Eq. 7: ||m(x) - m(x')||^2 (mean over pixels) + omega ||p(x) - p(x')||^2 (:func:`landmark_distance`)."""
    return (m - m2).square().mean() + omega * landmark_distance(p, p2, image_size).mean()


def identity_contrastive(f: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """Eq. 8: 1 - cos(f_id(x), f_id(x')), mean over the batch."""
    return (1 - _cos(f, f2)).mean()


class DiscoLosses:
    """Weighted imitative and contrastive terms for one G step (``config``: :class:`DiscoConfig`)."""

    def __init__(self, config, face):
        self.config, self.face = config, face

    def imitative(self, x: torch.Tensor, lam: torch.Tensor, contrastive_on: bool) -> dict:
        """x: (B, 3, S, S) generated from lambda (B, D). -> {"loss": weighted sum, terms...}."""
        c, face, s = self.config, self.face, x.shape[-1]
        with torch.no_grad():
            x_hat, mask, p_hat = face.render(lam, s)
            f_hat = face.identity(x_hat, p_hat)
        p_x, gamma_x, _ = face.estimate(x)
        terms = {"im_id": identity_imitative(face.identity(x, p_hat), f_hat, c.tau),
                 "im_lm": landmark_distance(p_x, p_hat, s).mean(),
                 "im_sh": sh_loss(gamma_x, lam[:, -30:-3]),  # lambda ends with lighting (27), pose (3)
                 "im_cl": colour_loss(x, x_hat, mask)}
        w_lm = c.w_lm_contrastive if contrastive_on else c.w_lm
        loss = c.w_id * terms["im_id"] + w_lm * terms["im_lm"] + c.w_sh * terms["im_sh"] + c.w_cl * terms["im_cl"]
        return {"loss": loss, **terms}

    def contrastive(self, G, z: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Pairs sharing every latent but expression (Eq. 6) or lighting (Eqs. 7, 8), same noise buffers."""
        c, face = self.config, self.face
        fresh = torch.randn(z.shape, device=z.device, generator=generator)
        z_ex, z_il = G.swap(z, fresh, "expression"), G.swap(z, fresh, "lighting")
        x, x_ex, x_il = G(torch.cat([z, z_ex, z_il]), noise_mode="const").chunk(3)
        s = x.shape[-1]
        with torch.no_grad():
            lam, lam_ex = G.mapping.lam(z), G.mapping.lam(z_ex)
            flow, valid = face.flow(lam_ex, lam, s)
            _, fg, p_ex = face.render(lam_ex, s)
            _, _, p_src = face.render(lam, s)
            mouth = torch.maximum(face.mouth(p_ex, s), face.mouth(p_src, s))
        l_ex = expression_contrastive(x, x_ex, flow, valid, fg, mouth)
        p_x, _, _ = face.estimate(x)
        p_il, _, _ = face.estimate(x_il)
        l_il1 = illumination_structure(structure_map(x), structure_map(x_il), p_x, p_il, c.omega, s)
        l_il2 = identity_contrastive(face.identity(x, p_src), face.identity(x_il, p_src))
        loss = c.w_ex * l_ex + c.w_il1 * l_il1 + c.w_il2 * l_il2
        return {"loss": loss, "co_ex": l_ex, "co_il1": l_il1, "co_il2": l_il2}


__all__ = ["DiscoLosses", "colour_loss", "expression_contrastive", "identity_contrastive", "identity_imitative",
           "illumination_structure", "landmark_distance", "masked_mean_colour", "sh_loss", "structure_map"]
