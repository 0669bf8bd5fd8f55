"""Image -> 3DMM parameter regressors.

- ``targets.py``: what a regressor predicts (coefficients, pose, a focal-free position, lighting) and
  how a face is framed for it (a square crop around its landmarks).
- ``small.py``: :class:`SmallRegressor`, a ~2M-parameter CPU network for 64 px crops, trained on the
  synthetic world (``gan_bridge.methods.regressor``); its weights for the ``open`` model ship in
  ``morph3d.assets``.
- ``resnet.py`` / ``deep3d.py``: a plain ResNet-50 and Deep3DFaceRecon's R-Net, which loads their
  pretrained ``epoch_20.pth`` (user-supplied) and returns the 257-dim vector.
- ``predict.py``: :class:`Regressor` / :func:`load_regressor`: photo + landmarks -> FaceParams.
"""
from .predict import Regressor, load_regressor
from .small import SmallRegressor, SmallRegressorConfig
from .targets import (CROP_MARGIN, crop_boxes, crop_cameras, crop_images, decode_targets, encode_targets, target_dim,
                      target_layout, to_crop_pixels)

__all__ = ["CROP_MARGIN", "Regressor", "SmallRegressor", "SmallRegressorConfig", "crop_boxes", "crop_cameras",
           "crop_images", "decode_targets",
           "encode_targets", "load_regressor", "target_dim", "target_layout", "to_crop_pixels"]
