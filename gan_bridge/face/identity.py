"""Identity descriptors of faces in images: dlib alignment + dlib's ResNet, and CSIM between images.

``identity_embedding(images, landmarks)`` is differentiable w.r.t. the images, so ``1 - csim`` works as
an identity loss (the network's weights are frozen).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch

from gan_bridge.networks.identity import IdentityNet, csim

from .align import CHIP_PADDING, CHIP_SIZE, align_faces


@lru_cache(maxsize=1)
def default_identity_net() -> IdentityNet:
    """One shared :meth:`IdentityNet.from_dlib` per process (frozen, eval mode, CPU)."""
    return IdentityNet.from_dlib()


def identity_embedding(images: torch.Tensor, landmarks, net: Optional[IdentityNet] = None,
                       quantize: bool = True) -> torch.Tensor:
    """images: (B, 3, H, W) float RGB in [-1, 1]; landmarks: (B, 68, 2) iBUG or (B, 5, 2) dlib points,
    pixels -> descriptors (B, 128), as dlib's ``compute_face_descriptor(img, shape)``.

    ``net`` defaults to the shared :func:`default_identity_net`, moved to the images' device; a given
    ``net`` must already be there. ``quantize``: emulate dlib's uint8 pixels (see ``align``)."""
    net = net or default_identity_net().to(images.device)
    chips = align_faces(images, landmarks, CHIP_SIZE, CHIP_PADDING, quantize)
    return net(chips.to(net.mean_rgb.dtype))


def image_csim(a: torch.Tensor, landmarks_a, b: torch.Tensor, landmarks_b,
               net: Optional[IdentityNet] = None) -> torch.Tensor:
    """CSIM between the faces of two batches (B, 3, H, W) in [-1, 1] with their landmarks -> (B,)."""
    return csim(identity_embedding(a, landmarks_a, net), identity_embedding(b, landmarks_b, net))
