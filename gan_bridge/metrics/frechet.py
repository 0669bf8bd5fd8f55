"""Distances between two sets of feature vectors: Fréchet distance (FID's formula) and KID.

Both take features ``(N, D)`` (torch tensors or NumPy arrays, any float dtype) from any extractor,
e.g. a :class:`gan_bridge.metrics.features.FeatureSpace`, and compute in float64 NumPy. The numbers
are only comparable between runs that use the same feature space and the same sample sizes.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch


def as_features(feats, name: str = "features", min_rows: int = 2) -> np.ndarray:
    """Validate ``feats`` (N, D), N >= ``min_rows``, finite; return it as a float64 NumPy array."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().double().numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be (N, D) feature vectors, got shape {feats.shape}")
    if feats.shape[0] < min_rows:
        raise ValueError(f"{name} has {feats.shape[0]} rows: need at least {min_rows} samples")
    if not np.isfinite(feats).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return feats


def gaussian_stats(feats) -> Tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), N >= 2."""
    feats = as_features(feats)
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    vals, vecs = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_stats(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
                                ) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b):
    ``|mu_a - mu_b|^2 + tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^(1/2))``.

    The trace of the matrix square root is taken as ``sum sqrt(eig(S_a^(1/2) sigma_b S_a^(1/2)))``,
    a symmetric PSD matrix with the eigenvalues of ``sigma_a sigma_b``: real and stable even for
    singular covariances (N <= D), where ``scipy.linalg.sqrtm`` can turn complex.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.atleast_2d(sigma_a).astype(np.float64), np.atleast_2d(sigma_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise ValueError(f"statistics do not match: means {mu_a.shape} / {mu_b.shape}, "
                         f"covariances {sigma_a.shape} / {sigma_b.shape}; use the same feature space for both")
    root_a = _psd_sqrt(sigma_a)
    middle = root_a @ sigma_b @ root_a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    fd = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr_covmean
    return max(float(fd), 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to features a (N_a, D) and b (N_b, D), N >= 2 each.

    This is FID's formula; it is *the* FID only in Inception-v3 pool3 space (see
    :mod:`gan_bridge.metrics.features`). Biased for small N: compare only equal sample sizes.
    """
    a, b = as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a has {a.shape[1]} dims and feats_b {b.shape[1]}: use the same feature space")
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel ``k(x, y) = (x . y / D + 1)^3``. x (N, D), y (M, D) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared MMD with :func:`polynomial_kernel`; x (m, D), y (n, D), m, n >= 2.

    Within-set sums leave out the diagonal (``i != j``), so the expectation is 0 when x and y come from
    the same distribution and single estimates can be negative.
    """
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2.0 * k_xy.mean())


def kid(feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> Tuple[float, float]:
    """Kernel Inception Distance formula (Bińkowski et al. 2018) over any features.

    feats_a (N_a, D), feats_b (N_b, D). Draws ``num_subsets`` pairs of subsets of
    ``m = min(subset_size, N_a, N_b)`` rows (each without replacement, NumPy generator seeded with
    ``seed``) and averages :func:`mmd2_unbiased` over them. Returns (mean, standard deviation over
    subsets). Unbiased for any m, so sets of different sizes compare fairly.
    """
    a, b = as_features(feats_a, "feats_a"), as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a has {a.shape[1]} dims and feats_b {b.shape[1]}: use the same feature space")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"need num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                                     b[rng.choice(b.shape[0], m, replace=False)]) for _ in range(num_subsets)])
    return float(values.mean()), float(values.std())
