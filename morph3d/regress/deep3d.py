"""Deep3DFaceRecon's R-Net: a ResNet-50 whose pooled features feed seven 1 x 1 convolutions, the 257-dim
coefficient vector (80 identity, 64 expression, 80 texture, 3 angles, 27 SH, 2 + 1 translation).

Loads the pretrained ``epoch_20.pth`` of ``sicxu/Deep3DFaceRecon_pytorch`` (user-supplied; its
``net_recon`` entry holds ``backbone.*`` torchvision ResNet-50 keys without ``fc`` and
``final_layers.0-6.{weight,bias}``). Input: 224 x 224 RGB in [0, 1], aligned as their ``align_img``
does (:func:`deep3d_crop`): a similarity fit (scale and translation) of five 2D points (eye centres,
nose tip, mouth corners, from the 68 landmarks) to their standard 3D five points, the image scaled so
that one unit of those (0.1 m) spans ``RESCALE`` px, and the 224 px square centred on the projected
origin. The output goes through morph3d's 257 layout (:func:`morph3d.model.from_deep3d`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fitting.crop import Crop
from ..model.camera import Camera
from ..model.layout import DEEP3D_DIM, DEEP3D_IMAGE_SIZE, from_deep3d
from ..model.params import FaceParams
from .resnet import ResNet50

HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)  # id, exp, tex, angles, gamma, (tx, ty), tz
RESCALE = 102.0  # px per unit (0.1 m) of the standard five points in the 224 px crop
FIVE_POINTS = ((36, 39), (42, 45), (30,), (48,), (54,))  # iBUG-68 (0-based): eye centres, nose tip, mouth corners


class Deep3DReconNet(nn.Module):
    """images: (B, 3, 224, 224) RGB in [0, 1] (aligned, :func:`deep3d_crop`) -> (B, 257) coefficients."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet50()
        self.final_layers = nn.ModuleList(nn.Conv2d(self.backbone.out_channels, k, 1) for k in HEAD_SIZES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, 224, 224) RGB images in [0, 1], got {tuple(images.shape)}")
        x = self.backbone(images)
        return torch.cat([layer(x) for layer in self.final_layers], 1).flatten(1)


def load_deep3d(path: str | Path) -> Deep3DReconNet:
    """Deep3DFaceRecon's checkpoint (``epoch_20.pth``, or a bare R-Net state dict) -> the network, eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Deep3DFaceRecon checkpoint {path} does not exist (their epoch_20.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is corrupt or not a PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(state, dict) and "net_recon" in state:
        state = state["net_recon"]
    if not isinstance(state, dict) or not any(str(k).endswith("final_layers.0.weight") for k in state):
        raise ValueError(f"{path} holds no Deep3DFaceRecon R-Net (no 'net_recon' with final_layers.*); "
                         "pass their checkpoints/<name>/epoch_20.pth")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    net = Deep3DReconNet()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ValueError(f"{path}: not a ResNet-50 R-Net checkpoint ({what}, {len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys)")
    return net.eval()


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) or (68, 3) iBUG-68 points -> their five alignment points (5, 2|3), in Deep3DFaceRecon's order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {lm.shape}")
    return np.stack([lm[list(ids)].mean(0) for ids in FIVE_POINTS])


def model_five_points(model) -> np.ndarray:
    """The standard 3D five points from a BFM ``model``'s mean shape, in their units (0.1 m), (5, 3).

    An approximation of their ``similarity_Lm3D_all.mat`` (pass those five points to :func:`deep3d_crop`
    for their exact alignment)."""
    with torch.no_grad():
        lm = model.landmarks(model.vertices_mean[None].float())[0].double().cpu().numpy()
    if not np.isfinite(lm[[i for ids in FIVE_POINTS for i in ids]]).all():
        raise ValueError(f"model '{model.name}' lacks an eye, nose or mouth landmark for the alignment")
    return five_points(lm) / 100.0


def deep3d_crop(landmarks: np.ndarray, points3d: np.ndarray) -> Crop:
    """The 224 px crop Deep3DFaceRecon feeds its R-Net.

    landmarks: (68, 2) px of the photo (0-based, y down) or the five points (5, 2); points3d: (5, 3)
    standard five points (x right, y up; their units). Their image y axis points up, so the fit runs on
    flipped rows; the crop's side is ``224 / s`` px with ``s = RESCALE / scale``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    pts = five_points(lm) if lm.shape[0] == 68 else lm
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ValueError(f"need 68 (or 5) finite 2D landmarks for the Deep3DFaceRecon alignment, got {lm.shape}")
    x3 = np.asarray(points3d, dtype=np.float64).reshape(5, 3)
    y_up = -pts[:, 1]  # any offset cancels in the translation below; only the direction matters
    a = np.zeros((10, 8))
    a[0::2, 0:3], a[0::2, 3] = x3, 1.0
    a[1::2, 4:7], a[1::2, 7] = x3, 1.0
    b = np.stack([pts[:, 0], y_up], 1).reshape(10)
    k = np.linalg.lstsq(a, b, rcond=None)[0]
    scale = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2.0  # px per unit
    centre = np.array([k[3], -k[7]])  # the projected origin, px (y down)
    side = DEEP3D_IMAGE_SIZE * scale / RESCALE
    return Crop(float(centre[0] + 0.5 - side / 2), float(centre[1] + 0.5 - side / 2), float(side), DEEP3D_IMAGE_SIZE)


def crop_to_image_camera(camera: Camera, crop: Crop, image_size: tuple[int, int]) -> Camera:
    """A camera of the crop's pixels -> the same camera in the original image's pixels (height, width)."""
    return camera.rescaled(1.0 / crop.scale, image_size, (-crop.left * crop.scale, -crop.top * crop.scale))


@torch.no_grad()
def predict_deep3d(net: Deep3DReconNet, image: np.ndarray, landmarks: np.ndarray, points3d: np.ndarray,
                   source_format: str, dims: tuple[int, int, int]) -> tuple[FaceParams, torch.Tensor]:
    """One photo (H, W, 3) uint8 and its 68 landmarks -> (FaceParams viewed by the photo's camera, the raw
    (1, 257) coefficients). source_format / dims: the BFM model's (``from_deep3d``)."""
    crop = deep3d_crop(landmarks, points3d)
    pixels, _ = crop.image(np.asarray(image))
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255.0
    coeffs = net(x.to(next(net.parameters()).device)).cpu().float()
    if coeffs.shape[1] != DEEP3D_DIM:
        raise ValueError(f"the network returned {coeffs.shape[1]} coefficients, not {DEEP3D_DIM}")
    params = from_deep3d(coeffs, source_format, dims)
    cam = crop_to_image_camera(params.camera, crop, tuple(image.shape[:2]))
    return FaceParams(**params.tensors(), camera=cam), coeffs


__all__ = ["Deep3DReconNet", "FIVE_POINTS", "HEAD_SIZES", "RESCALE", "crop_to_image_camera", "deep3d_crop",
           "five_points", "load_deep3d", "model_five_points", "predict_deep3d"]
