"""Per-image fidelity metrics: PSNR and SSIM.

Images are ``(B, C, H, W)`` float tensors (any channel count). ``data_range`` is the span of the pixel
values: 2.0 for gan_bridge's [-1, 1] images (the default), 1.0 for [0, 1], 255.0 for [0, 255].
"""
from __future__ import annotations

import kornia
import torch


def _check_pair(a: torch.Tensor, b: torch.Tensor, data_range: float) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"{name} must be a (B, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch: pass at least one image")
        if not x.is_floating_point():
            raise ValueError(f"{name} has dtype {x.dtype}: convert to float and set data_range")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or Inf values")
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive (2.0 for [-1, 1] images), got {data_range}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: ``10 log10(data_range^2 / MSE)``.

    a, b: (B, C, H, W) float. Returns (B,); identical images give +inf.
    (kornia's ``psnr`` pools the MSE over the whole batch; here each image has its own MSE.)
    """
    _check_pair(a, b, data_range)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range ** 2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, window_size: int = 11) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), in [-1, 1], 1 for identical images.

    The standard definition: Gaussian window ``window_size`` wide with sigma 1.5, K1 = 0.01, K2 = 0.03,
    population (co)variances, SSIM map averaged over the valid region (no padding) and the channels;
    the same as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. Computed with ``kornia.metrics.ssim(padding="valid")``.
    a, b: (B, C, H, W) float with H, W >= window_size. Returns (B,).
    """
    _check_pair(a, b, data_range)
    if min(a.shape[-2:]) < window_size:
        raise ValueError(f"images of {a.shape[-2]}x{a.shape[-1]} px are smaller than the SSIM window "
                         f"({window_size} px): use larger images or a smaller window_size")
    ssim_map = kornia.metrics.ssim(a, b, window_size, max_val=data_range, padding="valid")
    return ssim_map.mean(dim=(1, 2, 3))
