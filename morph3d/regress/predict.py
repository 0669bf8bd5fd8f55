"""Photo + 68 landmarks -> FaceParams with the small regressor (``small.py``), in one forward pass.

Each face is framed as in training (``targets.crop_boxes``: ``CROP_MARGIN`` x its landmarks' box),
cropped with area averaging (``morph3d.fitting.crop.Crop``), and the prediction is decoded in the photo's
own camera (``Camera.create``'s default focal, 1.5 x the longer side, unless ``focal`` is given): the
translation projects the model origin to the predicted pixel at the predicted scale, whatever the focal.
The weights for the ``open`` model ship as ``morph3d.assets`` ``regressor_open.pt``
(``scripts/train_regressor.sh``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import assets
from ..fitting.crop import Crop
from ..model.camera import Camera
from ..model.params import FaceParams
from .small import SmallRegressor, load_small_regressor
from .targets import crop_boxes, crop_cameras, decode_targets, target_dim

DEFAULT_WEIGHTS = "regressor_open.pt"


class Regressor:
    """A trained :class:`SmallRegressor` bound to its morphable model; build with :func:`load_regressor`."""

    def __init__(self, model, net: SmallRegressor, info: dict | None = None):
        if net.config.out_dim != target_dim(model):
            raise ValueError(f"the regressor predicts {net.config.out_dim} values but model '{model.name}' needs "
                             f"{target_dim(model)}; use weights trained for this model")
        self.model, self.net, self.info = model, net.eval(), dict(info or {})

    @property
    def input_size(self) -> int:
        return self.net.config.input_size

    def crops(self, image: np.ndarray, landmarks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image (H, W, 3) uint8, landmarks (F, 68, 2) px -> (crops (F, 3, S, S) in [-1, 1], corners (F, 2),
        sides (F,)) (pixel-edge coordinates)."""
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.ndim not in (2, 3) or lm.shape[-2:] != (68, 2):
            raise ValueError(f"landmarks must be (68, 2) or (F, 68, 2) pixels, got {lm.shape}")
        lm = torch.from_numpy(lm.reshape(-1, 68, 2))
        corner, side = crop_boxes(lm)
        size = self.input_size
        out = []
        for c, s in zip(corner.tolist(), side.tolist()):
            pixels, _ = Crop(c[0], c[1], s, size).image(image)
            out.append(torch.from_numpy(np.array(pixels)).permute(2, 0, 1))
        return torch.stack(out).float() / 127.5 - 1.0, corner, side

    @torch.no_grad()
    def predict(self, image: np.ndarray, landmarks, focal: float | None = None) -> FaceParams:
        """image: (H, W, 3) uint8 RGB; landmarks: (F, 68, 2) or (68, 2) px (0-based; NaN rows ignored).
        -> FaceParams of the F faces (float32) viewed by the photo's camera (``focal`` px, default
        ``Camera.create``'s). Blendshape weights are clamped to [0, 1]."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        crops, corner, side = self.crops(image, landmarks)
        dev = self.model.vertices_mean.device
        targets = self.net.to(dev)(crops.to(dev)).float()
        cam = Camera.create(len(targets), tuple(image.shape[:2]), focal=focal, device=dev)
        crop_cam = crop_cameras(cam, corner.float().to(dev), side.float().to(dev), self.input_size)
        params = decode_targets(targets, self.model, crop_cam, clamp=True)
        return FaceParams(**params.tensors(), camera=cam)


def load_regressor(model, weights: str | Path | None = None) -> Regressor:
    """The small regressor for ``model`` from ``weights`` (default: the shipped ``regressor_open.pt``,
    for the ``open`` model)."""
    path = Path(weights) if weights is not None else assets.path(DEFAULT_WEIGHTS)
    if weights is None and not path.is_file():
        raise FileNotFoundError(f"the bundled regressor weights {path} are missing; reinstall morph3d or run "
                                "scripts/train_regressor.sh")
    net, info = load_small_regressor(path)
    if weights is None and getattr(model, "source_format", None) != "open":
        raise ValueError(f"the bundled regressor is trained for the 'open' model, not '{model.name}'; pass "
                         "weights trained for this model")
    return Regressor(model, net, info)


__all__ = ["DEFAULT_WEIGHTS", "Regressor", "load_regressor"]
