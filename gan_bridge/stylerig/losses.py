"""StyleRig's self-supervised losses for one RigNet (Tewari et al. 2020, Sec. 5), through the renderer.

For codes v, w (B, num_ws, w_dim) of the frozen generator G, theta_x is the encoder's reading of I_x and
w_hat = rignet(v, theta_w^tau) should show v's face with w's tau (pose, expression or lighting):

- reconstruction: ``||rignet(v, theta_v^tau) - v||^2``, mean over W+ entries (no edit, no change);
- editing (rig consistency): ``l(I_w, [theta_w^tau-bar, theta_w_hat^tau])``: the edited image's tau,
  rendered with w's other parameters, must explain I_w;
- consistency: ``l(I_v, [theta_w_hat^tau-bar, theta_v^tau])``: its other parameters, rendered with v's
  tau, must explain I_v;
- cycle: v_cyc = rignet(w_hat, theta_v^tau) edits back to v's tau and must explain I_v in both mixes
  with v's parameters: ``l(I_v, [theta_v^tau-bar, theta_cyc^tau]) + l(I_v, [theta_cyc^tau-bar, theta_v^tau])``.

l is :func:`gan_bridge.face.rig.render_loss` (photometric on the rendered face region + landmarks); the
target landmarks are the encoder's, read without gradients. Only the RigNet is trained: G and the
encoder are frozen, but gradients flow through them into the edited codes.
"""
from __future__ import annotations

import torch

from gan_bridge.face.rig import RigFace, mix, render_loss, tau


def reconstruction_loss(rignet, v: torch.Tensor, theta_v_tau: torch.Tensor) -> torch.Tensor:
    """||rignet(v, theta_v^tau) - v||^2, mean over the batch and W+ entries (StyleRig's L_rec, PIE's E_id)."""
    return (rignet(v, theta_v_tau) - v).square().mean()


def stylerig_losses(G, rignet, face: RigFace, v: torch.Tensor, w: torch.Tensor, photometric: float,
                    landmark: float) -> dict[str, torch.Tensor]:
    """Unweighted loss terms 'rec', 'edit', 'consist', 'cycle' (scalars, batch means) of one batch."""
    mode = rignet.mode
    with torch.no_grad():
        img_v = G.synthesis(v, noise_mode="const").clamp(-1, 1)
        img_w = G.synthesis(w, noise_mode="const").clamp(-1, 1)
        cv, cw = face.estimate(img_v).detach(), face.estimate(img_w).detach()
    pv, pw = cv.params, cw.params

    def ell(image, coeffs, params):
        return render_loss(face, image, coeffs.landmarks, params, photometric, landmark).mean()

    w_hat = rignet(v, tau(pw, mode))
    p_hat = face.estimate(G.synthesis(w_hat, noise_mode="const")).params
    v_cyc = rignet(w_hat, tau(pv, mode))
    p_cyc = face.estimate(G.synthesis(v_cyc, noise_mode="const")).params
    return {
        "rec": reconstruction_loss(rignet, v, tau(pv, mode)),
        "edit": ell(img_w, cw, mix(pw, p_hat, mode)),
        "consist": ell(img_v, cv, mix(p_hat, pv, mode)),
        "cycle": ell(img_v, cv, mix(pv, p_cyc, mode)) + ell(img_v, cv, mix(p_cyc, pv, mode)),
    }


def weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k] over the weighted terms present."""
    return sum(weights[k] * terms[k] for k in weights if k in terms and weights[k] != 0)


__all__ = ["reconstruction_loss", "stylerig_losses", "weighted_total"]
