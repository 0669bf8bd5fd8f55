"""Second-order spherical-harmonics Lambertian shading (27 coefficients).

Layout and normalisation are defined in ``docs/conventions.md``: ``lighting (B, 27)`` is
``(3 channels, 9)`` channel-major radiance coefficients ``L_k`` in the real SH basis order
``1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2``, and ``colour = albedo * E(n) / pi``.
"""
import math

import torch

from .._ext import ops
from .fused_grad import differentiable_grad

NUM_SH = 9
NUM_LIGHTING = 27

# Real SH normalisation constants (Ramamoorthi & Hanrahan 2001).
_C0 = 0.5 / math.sqrt(math.pi)
_C1 = math.sqrt(3.0 / (4.0 * math.pi))
_C2 = 0.5 * math.sqrt(15.0 / math.pi)
_C20 = 0.25 * math.sqrt(5.0 / math.pi)
_C22 = 0.25 * math.sqrt(15.0 / math.pi)
# Lambertian clamped-cosine convolution per band: A_0, A_1, A_2.
BAND_FACTORS = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)
BAND_OF_COEFFICIENT = (0, 1, 1, 1, 2, 2, 2, 2, 2)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Real SH basis Y_k(n) for k = 0..8.

    normals: (..., 3) unit vectors -> (..., 9).
    """
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    return torch.stack([
        _C0 * one,
        _C1 * y, _C1 * z, _C1 * x,
        _C2 * x * y, _C2 * y * z, _C20 * (3.0 * z * z - 1.0), _C2 * x * z, _C22 * (x * x - y * y),
    ], dim=-1)


def _lambert_weights(device, dtype) -> torch.Tensor:
    return torch.tensor([BAND_FACTORS[b] for b in BAND_OF_COEFFICIENT], device=device, dtype=dtype)


def _monomial_map() -> torch.Tensor:
    """(9, 10): SH basis function k as weights of the monomials (1, x, y, z, xy, yz, xz, xx, yy, zz)."""
    q = torch.zeros(NUM_SH, 10, dtype=torch.float64)
    for k, m, value in [(0, 0, _C0), (1, 2, _C1), (2, 3, _C1), (3, 1, _C1), (4, 4, _C2), (5, 5, _C2),
                        (6, 9, 3.0 * _C20), (6, 0, -_C20), (7, 6, _C2), (8, 7, _C22), (8, 8, -_C22)]:
        q[k, m] = value
    return q


_MONOMIALS = _monomial_map()


def _check_lighting(lighting: torch.Tensor) -> None:
    if lighting.shape[-1] != NUM_LIGHTING:
        raise ValueError(f"lighting must have {NUM_LIGHTING} coefficients (3 channels x 9), got {tuple(lighting.shape)}")


def _polynomial_irradiance(normals: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_cm mono_m(n)`` in pure torch: normals (B, N, 3), weights (B, 3, 10) -> (B, N, 3)."""
    x, y, z = normals.unbind(-1)
    mono = torch.stack([torch.ones_like(x), x, y, z, x * y, y * z, x * z, x * x, y * y, z * z], dim=-1)
    return mono @ weights.transpose(1, 2)


class _Irradiance(torch.autograd.Function):
    """The fused CPU kernels ``torch.ops.morph3d.sh_irradiance_fwd/bwd``: (B, N, 3) normals and
    (B, 3, 10) monomial weights -> (B, N, 3) irradiance."""

    @staticmethod
    def forward(ctx, normals, weights):
        ctx.save_for_backward(normals, weights)
        return ops().sh_irradiance_fwd(normals, weights)

    @staticmethod
    def backward(ctx, grad):
        normals, weights = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable gradient, from the same polynomial in torch
            return differentiable_grad(_polynomial_irradiance, (normals, weights), grad)
        return ops().sh_irradiance_bwd(grad, normals, weights)


def irradiance(normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Irradiance E(n) per colour channel.

    normals: (B, N, 3) unit vectors, camera frame; lighting: (B, 27) -> (B, N, 3).
    On the CPU (float32/float64, one batch size) E is evaluated by fused kernels as the quadratic
    polynomial it is, ``sum_m w_cm mono_m(n)`` over the monomials of n, in one pass forward and one
    backward; elsewhere by :func:`irradiance_reference`. Both are the same function.
    """
    return _scaled_irradiance(normals, lighting, 1.0)


def _scaled_irradiance(normals: torch.Tensor, lighting: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * irradiance(normals, lighting)``, the scale folded into the fused kernels' weights."""
    _check_lighting(lighting)
    fused = (normals.device.type == "cpu" and lighting.device.type == "cpu" and normals.dim() == 3
             and normals.shape[-1] == 3 and lighting.dim() == 2 and normals.shape[0] == lighting.shape[0]
             and normals.dtype == lighting.dtype and normals.dtype in (torch.float32, torch.float64))
    if not fused:
        out = irradiance_reference(normals, lighting)
        return out if scale == 1.0 else out * scale
    coeffs = lighting.reshape(lighting.shape[0], 3, NUM_SH) * _lambert_weights(lighting.device, lighting.dtype)
    weights = coeffs @ (_MONOMIALS * scale).to(lighting.dtype)  # (B, 3, 10)
    return _Irradiance.apply(normals, weights)


def irradiance_reference(normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """:func:`irradiance` from the nine basis functions, ``sum_k A_k L_ck Y_k(n)`` (pure torch): the
    fused kernels' reference, and the path on other devices. normals: (B, N, 3); lighting: (B, 27) -> (B, N, 3)."""
    _check_lighting(lighting)
    coeffs = lighting.reshape(lighting.shape[0], 3, NUM_SH)
    weighted = coeffs * _lambert_weights(lighting.device, lighting.dtype)  # (B, 3, 9)
    return torch.einsum("bnk,bck->bnc", sh_basis(normals), weighted)


def shade(albedo: torch.Tensor, normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Lambertian colour ``albedo * E(n) / pi``.

    albedo: (B, N, 3) linear RGB; normals: (B, N, 3) unit, camera frame; lighting: (B, 27) -> (B, N, 3).
    """
    return albedo * _scaled_irradiance(normals, lighting, 1.0 / math.pi)


def ambient_lighting(batch: int, intensity: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Constant radiance ``intensity`` from every direction: renders surfaces at ``intensity x albedo``.

    Returns (batch, 27).
    """
    light = torch.zeros(batch, 3, NUM_SH, device=device, dtype=dtype)
    light[:, :, 0] = intensity * math.sqrt(4.0 * math.pi)
    return light.reshape(batch, NUM_LIGHTING)


def project_environment(radiance_fn, num_samples: int = 20000, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Project a radiance function on the sphere onto the 9 SH coefficients by Monte Carlo.

    radiance_fn: maps (S, 3) unit directions to (S, 3) RGB radiance. Returns (27,) lighting.
    """
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(num_samples, 3, generator=gen, dtype=dtype)
    d = d / d.norm(dim=-1, keepdim=True)
    values = radiance_fn(d)  # (S, 3)
    y = sh_basis(d)  # (S, 9)
    coeffs = 4.0 * math.pi * (values.T @ y) / num_samples  # (3, 9)
    return coeffs.reshape(NUM_LIGHTING)
