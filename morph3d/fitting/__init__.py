"""Fitting the morphable model to photos.

- :func:`load_image`: robust image loading (``images.py``).
- :func:`read_landmarks` / :func:`write_pts`: iBUG ``.pts`` (1-based), ``.npy``, ``.json`` landmark files.
- :func:`detect_faces`: face boxes and 68 landmarks with dlib or MediaPipe (optional extras).
- :class:`LandmarkFitter` / :func:`fit_landmarks`: pose, identity and expression from 68 landmarks
  (closed-form start, Levenberg-Marquardt, sliding jaw contour), batched.
- :func:`fit_photometric`: analysis-by-synthesis refinement with the differentiable renderer.
- ``losses``: the loss terms both fits (and the GAN bridges) compose: :func:`photometric_loss`,
  :func:`landmark_loss` / :class:`LandmarkLoss` (sliding jaw contour), :func:`tikhonov` /
  :class:`PriorLoss`, :class:`PerceptualLoss` (a slot for a feature network).
- :class:`FitPipeline` / :func:`plan_jobs`: the ``morph3d fit`` batch (outputs and skipping).
- :func:`nme`: landmark error measures.
"""
from .batch import BatchReport, FitPipeline, Job, plan_jobs
from .detect import DETECTORS, Detection, detect_faces
from .errors import FitInputError, ImageLoadError, LandmarkFileError, MissingDependencyError, NoFaceError
from .images import MAX_MEGAPIXELS, list_images, load_image
from .landmark_fit import LandmarkFitConfig, LandmarkFitResult, LandmarkFitter, fit_landmarks
from .landmarks_io import read_landmarks, write_pts
from .losses import (LandmarkLoss, PerceptualLoss, PhotometricLoss, PriorLoss, PriorWeights, contour_metric,
                     face_size, feature_distance, landmark_loss, landmark_points, photometric_loss, robust_loss,
                     tikhonov)
from .metrics import nme
from .photometric import PhotometricConfig, PhotometricResult, fit_photometric

__all__ = [
    "BatchReport", "DETECTORS", "Detection", "FitInputError", "FitPipeline", "ImageLoadError", "Job",
    "LandmarkFileError", "LandmarkFitConfig", "LandmarkFitResult", "LandmarkFitter", "LandmarkLoss",
    "MAX_MEGAPIXELS", "MissingDependencyError", "NoFaceError", "PerceptualLoss", "PhotometricConfig",
    "PhotometricLoss", "PhotometricResult", "PriorLoss", "PriorWeights", "contour_metric", "detect_faces",
    "face_size", "feature_distance", "fit_landmarks", "fit_photometric", "landmark_loss", "landmark_points",
    "list_images", "load_image", "nme", "photometric_loss", "plan_jobs", "read_landmarks", "robust_loss",
    "tikhonov", "write_pts",
]
