"""The regressor as the landmark fit's starting point (``morph3d fit --init regressor``).

:class:`RegressorStartFitter` is a :class:`~morph3d.fitting.LandmarkFitter` that starts from the
regressor's pose, identity and expression instead of the closed-form affine pose (``start=`` of
:meth:`~RegressorStartFitter.fit`); :class:`RegressorFitPipeline` is the ``morph3d fit`` batch with it:
the prediction is made from each photo and its landmarks just before the fit.
"""
from __future__ import annotations

import numpy as np
import torch

from ..fitting.batch import FitPipeline
from ..fitting.landmark_fit import LandmarkFitConfig, LandmarkFitter
from ..model.camera import PERSPECTIVE
from ..model.params import DEFAULT_DISTANCE_MM, FaceParams
from ..model.pose import euler_to_matrix
from .predict import Regressor

INIT_CHOICES = ("closed-form", "regressor")


class RegressorStartFitter(LandmarkFitter):
    """A landmark fitter whose iterations start from given parameters (``fit(..., start=params)``); without
    ``start`` it is the plain fitter (closed-form start)."""

    _start_params: FaceParams | None = None

    def fit(self, landmarks, image_size, focal=None, confidence=None, start: FaceParams | None = None):
        """As :meth:`LandmarkFitter.fit`; start: FaceParams of the B faces (their rotation, translation,
        identity and expression; a translation for the fit's focal, ``Camera.create``'s default) or None."""
        self._start_params = start
        try:
            return super().fit(landmarks, image_size, focal, confidence)
        finally:
            self._start_params = None

    def _start(self, target, conf, use, pp, image_size, focal):
        start = self._start_params
        if start is None:
            return super()._start(target, conf, use, pp, image_size, focal)
        b = target.shape[0]
        if start.batch_size != b:
            raise ValueError(f"the start parameters hold {start.batch_size} faces, the landmarks {b}")
        s = start.detach().to(device="cpu", dtype=torch.float64)
        c = torch.cat([s.identity[:, :self.n_id], s.expression[:, :self.n_exp]], 1)
        c = torch.minimum(torch.maximum(c, self.lower), self.upper)
        rot = euler_to_matrix(s.rotation)
        t = s.translation.clone()
        f0 = torch.full((b,), float(focal if focal is not None else 1.5 * max(image_size)), dtype=torch.float64)
        if self.config.camera == PERSPECTIVE:
            return c, rot, t, f0
        scale = f0 / (-t[:, 2]).clamp_min(1.0)  # the same size in the image, seen orthographically
        t[:, 2] = -DEFAULT_DISTANCE_MM
        return c, rot, t, scale


class RegressorFitPipeline(FitPipeline):
    """``FitPipeline`` whose landmark fits start from ``regressor``'s prediction for each photo."""

    def __init__(self, model, model_source: str, regressor: Regressor, landmark_config: LandmarkFitConfig | None = None,
                 **kw):
        super().__init__(model, model_source, landmark_config=landmark_config, **kw)
        self.regressor = regressor
        self.fitter = _PhotoStartFitter(model, self.fitter.config, regressor)

    def signature(self, job) -> dict:
        return {**super().signature(job), "init": "regressor"}

    def _needs_pixels(self, job) -> bool:
        return True  # the regressor looks at every photo

    def _landmarks(self, job, image: np.ndarray, size: tuple[int, int]):
        found = super()._landmarks(job, image, size)
        self.fitter.photo = image  # the next fit's image (fit_image runs one image at a time)
        return found


class _PhotoStartFitter(RegressorStartFitter):
    """Starts each fit from the regressor's prediction on ``photo`` (set by the pipeline)."""

    def __init__(self, model, config, regressor: Regressor):
        super().__init__(model, config)
        self.regressor, self.photo = regressor, None

    def fit(self, landmarks, image_size, focal=None, confidence=None, start=None):
        if start is None and self.photo is not None:
            lm = np.asarray(landmarks.detach().cpu() if isinstance(landmarks, torch.Tensor) else landmarks)
            start = self.regressor.predict(self.photo, lm.reshape(-1, 68, 2), focal=focal)
        self.photo = None
        return super().fit(landmarks, image_size, focal, confidence, start=start)


__all__ = ["INIT_CHOICES", "RegressorFitPipeline", "RegressorStartFitter"]
