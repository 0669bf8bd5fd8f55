"""LI-Net's loss terms (Sec. 3, Eqs. 1-9) as functions over tensors. Scores are discriminator logits of any
shape; images (B, 3, H, W) in [-1, 1]; landmark images (B, 1, H, W) in [0, 1]; poses (B, 3) radians."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.nn import functional as F


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (L_L1, L_rec, L_cycle, L_diff, L_pix)."""
    if a.shape != b.shape:
        raise ValueError(f"L1 of mismatched shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).abs().mean()


def reconstruction_loss(T, source: torch.Tensor, same_identity_driving: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``|T(L_s,p, L_s,q) - L_s,q|_1``: driving landmarks of the source's own identity come back unchanged."""
    return l1(T(source, same_identity_driving), same_identity_driving)


def cycle_loss(T, transformed: torch.Tensor, driving: torch.Tensor, driving_at_source_motion: torch.Tensor
               ) -> torch.Tensor:
    """Eq. 3: ``|T(L_d,p, T(L_s,p, L_d,q)) - L_d,q|_1``: ``transformed`` = T(L_s,p, L_d,q) moved back to identity d
    (by its landmarks L_d,p) gives the driving landmarks L_d,q again."""
    return l1(T(driving_at_source_motion, transformed), driving)


def identity_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy of C_id's logits (B, N) against identity labels (B,) (trains C_id on real landmarks)."""
    return F.cross_entropy(logits, labels)


def identity_feature_loss(features_source: torch.Tensor, features_transformed: torch.Tensor) -> torch.Tensor:
    """L_id: mean absolute error between C_id features (B, C) of L_s,p and of the transformed L_hat_s,q."""
    return l1(features_transformed, features_source)


def bce_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for the discriminator, as a loss to minimise: ``-log D(real) - log(1 - D(fake))`` with D = sigmoid."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def bce_generator(fake: torch.Tensor) -> torch.Tensor:
    """The generator's side of Eq. 4 / L_adv of Eq. 8 (non-saturating): ``-log D(fake)``."""
    return F.softplus(-fake).mean()


def lsgan_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al. 2017) for D: ``(D(x) - 1)^2 + D(R(z))^2``."""
    return (real - 1).pow(2).mean() + fake.pow(2).mean()


def lsgan_generator(fake: torch.Tensor) -> torch.Tensor:
    """L_GAN of Eq. 6 for R: ``(D(R(z)) - 1)^2``."""
    return (fake - 1).pow(2).mean()


def pose_loss(predicted: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``(D_p(.) - p)^2`` summed over the pose vector's components, mean over the batch (L_Dp on real
    faces trains D_p; L_pose on R's output trains R)."""
    if predicted.shape != pose.shape:
        raise ValueError(f"predicted pose {tuple(predicted.shape)} and pose {tuple(pose.shape)} differ in shape")
    return (predicted - pose).pow(2).sum(1).mean()


def perceptual_loss(fake: torch.Tensor, real: torch.Tensor, vgg: Optional[Callable] = None,
                    identity: Optional[Callable] = None, landmarks: Optional[torch.Tensor] = None,
                    identity_weight: float = 1.0) -> torch.Tensor:
    """Eq. 9: ``sum_l |phi_l(fake) - phi_l(real)| + sum_l |psi_l(fake) - psi_l(real)|``.

    vgg: ``(a, b) -> scalar`` feature distance (phi, e.g. ``PerceptualLoss(distance='l1')``);
    identity: ``(images, landmarks (B, 68, 2)) -> (B, D)`` face-verification features (psi), compared by L1 with
    both faces aligned by ``landmarks`` (the real face's); identity_weight scales the psi term.
    """
    if vgg is None and identity is None:
        raise ValueError("L_per needs a VGG or an identity network; set lambda_per=0 to drop it")
    loss = fake.new_zeros(())
    if vgg is not None:
        loss = loss + vgg(fake, real)
    if identity is not None:
        if landmarks is None:
            raise ValueError("the identity term of L_per needs the faces' (B, 68, 2) landmarks")
        with torch.no_grad():
            target = identity(real, landmarks)
        loss = loss + identity_weight * l1(identity(fake, landmarks), target)
    return loss


__all__ = ["bce_discriminator", "bce_generator", "cycle_loss", "identity_classification_loss",
           "identity_feature_loss", "l1", "lsgan_discriminator", "lsgan_generator", "perceptual_loss", "pose_loss",
           "reconstruction_loss"]
