"""Image-quality metrics: per-image PSNR / SSIM, and set-level Fréchet distance / KID over a feature space.

Set-level distances are computed in VGG16 or user-supplied feature spaces (no Inception weights ship
offline), so they are not comparable with published FIDs; see :mod:`gan_bridge.metrics.features`.
"""
from .features import FeatureSpace, callable_space, inception_space, vgg16_space
from .frechet import frechet_distance, frechet_distance_from_stats, gaussian_stats, kid, mmd2_unbiased
from .image import psnr, ssim

__all__ = ["FeatureSpace", "callable_space", "inception_space", "vgg16_space", "frechet_distance",
           "frechet_distance_from_stats", "gaussian_stats", "kid", "mmd2_unbiased", "psnr", "ssim"]
