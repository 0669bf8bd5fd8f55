"""Differentiable rasterization primitives in the style of nvdiffrast.

Three ops on batched tensors (conventions: ``docs/conventions.md``, clip space as nvdiffrast):

- :func:`rasterize` ``(B, N, 4)`` clip positions -> ``rast (B, H, W, 4)`` = (u, v, z/w, triangle id + 1);
- :func:`interpolate` vertex attributes through ``rast`` -> ``(B, H, W, C)``;
- :func:`antialias` blends colours across silhouette edges, which gives gradients w.r.t.
  the clip positions where visibility changes.

``u, v`` are the perspective-correct barycentric weights of a triangle's vertices 0 and 1
(vertex 2 has ``1 - u - v``); ``rast[..., 3] == 0`` marks background, where all four channels
are 0. Gradients reach the clip positions through ``u, v, z/w`` (per pixel, summed per vertex)
and through :func:`antialias` at silhouettes; ``rast[..., 3]`` carries none.

Backends (see :mod:`morph3d.render.backends`): ``backend=None`` follows the tensors' device,
CPU tensors use morph3d's C++ kernels (float32 or float64), CUDA tensors use nvdiffrast
(float32). The CPU rasterizer: no backface culling; fragments with ``z/w`` outside [-1, 1] are
dropped and triangles are clipped at ``w = 0`` (only what lies in front of the eye is drawn),
matching nvdiffrast's frustum clipping; the smallest ``z/w`` wins, equal depths go to the lower
triangle id; shared edges are watertight (each pixel centre on a shared edge or vertex belongs to
exactly one of the triangles meeting there; edge signs near zero are decided exactly). No
image-space derivatives (nvdiffrast's ``rast_db``) are produced.

CPU threading: ``torch.set_num_threads`` sets how many threads the kernels use (torch's OpenMP
runtime); results, gradients included, are bitwise identical for any thread count. On a busy,
shared machine set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python: otherwise OpenMP threads
spin between parallel regions and take the CPU from everything else (``benchmarks/bench_rasterize.py
--omp-passive``; several times faster pipelines on 2 oversubscribed cores).

CPU scratch memory: the kernels keep their scratch buffers (per-image bins, per-vertex sums,
per-pixel gradients; a few bytes per pixel and tens of bytes per vertex) in a process-wide cache
instead of allocating them afresh on every call, so repeated calls skip the page faults of a new
allocation. The cache is thread-safe (a buffer is used by one call at a time), keeps at most
256 MiB by default (:func:`set_scratch_limit`) and is freed by :func:`release_scratch`.
"""
from __future__ import annotations

import math
import operator
from typing import Sequence

import torch

from .._ext import ops
from .._tensor_cache import TensorCache
from .backends import CPU, nvdr_antialias, nvdr_interpolate, nvdr_rasterize, resolve_backend

MAX_RESOLUTION = 8192
MAX_TRIANGLES = 1 << 24  # ids are stored exactly in float32 up to 2**24
_FLOATS = (torch.float32, torch.float64)

# ---------------------------------------------------------------------------------------------
# Input checks (all before any kernel runs).

_tri_cache = TensorCache()


def _check_float(t: object, name: str, shape: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape}, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}; convert it with .float()")
    return t


# Checks already passed by a tensor (same object, unmodified since): clip_pos goes through
# rasterize and antialias, rast through interpolate and antialias, and their full passes over the
# data cost as much as a kernel at high resolution.
_checked = TensorCache()


def _check_finite(t: torch.Tensor, name: str) -> None:
    def check():
        lo, hi = torch.aminmax(t.detach())  # one pass; NaN propagates into both
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            raise ValueError(f"{name} contains NaN or infinite values")
        return True

    _checked.get(t, "finite", check)


def _check_clip_pos(clip_pos: object) -> torch.Tensor:
    clip_pos = _check_float(clip_pos, "clip_pos", "(B, N, 4)")
    if clip_pos.ndim != 3 or clip_pos.shape[2] != 4:
        raise ValueError(f"clip_pos must be (B, N, 4) homogeneous clip coordinates, got {tuple(clip_pos.shape)}")
    if clip_pos.shape[0] == 0:
        raise ValueError("clip_pos has an empty batch (B == 0)")
    if clip_pos.shape[1] == 0:
        raise ValueError("clip_pos has no vertices: cannot rasterize an empty mesh")
    _check_finite(clip_pos, "clip_pos")
    return clip_pos


def _check_tri(tri: object) -> int:
    """Check the type and shape of ``tri (F, 3)``; return F."""
    if not isinstance(tri, torch.Tensor):
        raise TypeError(f"tri must be a torch.Tensor (F, 3) of int32/int64 vertex indices, got {type(tri).__name__}")
    if tri.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"tri must hold int32 or int64 vertex indices, got {tri.dtype}")
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be (F, 3), got {tuple(tri.shape)}")
    if tri.shape[0] == 0:
        raise ValueError("tri has no triangles: cannot rasterize an empty mesh")
    if tri.shape[0] >= MAX_TRIANGLES:
        raise ValueError(f"at most {MAX_TRIANGLES - 1} triangles are supported (ids are stored in float32), "
                         f"got {tri.shape[0]}")
    return tri.shape[0]


def _prepare_tri(tri: torch.Tensor, num_vertices: int, device: torch.device, what: str) -> torch.Tensor:
    """Check ``tri``'s indices against ``num_vertices``; return it as contiguous int32 on ``device``."""
    _check_tri(tri)

    def make():
        lo, hi = (int(v) for v in torch.aminmax(tri))
        ready = tri.dtype == torch.int32 and tri.device == device and tri.is_contiguous()
        # Never store tri itself: the cache must not keep its own key alive.
        return lo, hi, None if ready else tri.to(device=device, dtype=torch.int32).contiguous()

    lo, hi, tri32 = _tri_cache.get(tri, ("tri", device), make)
    if lo < 0 or hi >= num_vertices:
        raise ValueError(f"tri indices must lie in [0, {num_vertices - 1}] ({num_vertices} {what}), "
                         f"found [{lo}, {hi}]")
    return tri if tri32 is None else tri32


def _check_resolution(resolution: object) -> tuple[int, int]:
    try:
        h, w = resolution  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"resolution must be a pair (height, width), got {resolution!r}") from None
    out = []
    for v in (h, w):
        if isinstance(v, (bool, float)) or not hasattr(v, "__index__"):
            raise TypeError(f"resolution must hold integers (height, width), got {resolution!r}")
        out.append(operator.index(v))
    if not all(1 <= v <= MAX_RESOLUTION for v in out):
        raise ValueError(f"resolution must be between 1 and {MAX_RESOLUTION} pixels per side, got {tuple(out)}")
    return out[0], out[1]


def _check_rast(rast: object, num_triangles: int) -> torch.Tensor:
    rast = _check_float(rast, "rast", "(B, H, W, 4) from rasterize()")
    if rast.ndim != 4 or rast.shape[3] != 4:
        raise ValueError(f"rast must be (B, H, W, 4) as returned by rasterize(), got {tuple(rast.shape)}")
    if rast.shape[0] == 0 or rast.shape[1] == 0 or rast.shape[2] == 0:
        raise ValueError(f"rast is empty: {tuple(rast.shape)}")
    # rasterize() records the triangle count of what it returns: ids lie in [0, that count].
    made_for = _checked.get(rast, "triangles", lambda: None)
    if made_for is not None and made_for <= num_triangles:
        return rast
    ids = rast[..., 3].detach()
    lo, hi = (float(v) for v in torch.aminmax(ids))
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > num_triangles:
        raise ValueError(f"rast holds triangle ids + 1 in [{lo}, {hi}], outside [0, {num_triangles}]: "
                         f"was it rasterized with this tri ({num_triangles} triangles)?")
    return rast


def _same_device(name: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put them on one device")


# ---------------------------------------------------------------------------------------------
# CPU autograd functions (forward and backward are C++ kernels).

class _RasterizeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clip_pos, tri32, height, width):
        rast = ops().rasterize_fwd(clip_pos, tri32, height, width)
        ctx.save_for_backward(clip_pos, tri32, rast)
        return rast

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rast):
        clip_pos, tri32, rast = ctx.saved_tensors
        return ops().rasterize_bwd(clip_pos, tri32, rast, grad_rast), None, None, None


class _InterpolateCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attributes, rast, tri32):
        ctx.save_for_backward(attributes, rast, tri32)
        return ops().interpolate_fwd(attributes, rast, tri32)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        attributes, rast, tri32 = ctx.saved_tensors
        # Only the gradients autograd asks for are computed; the others come back as None.
        grad_attr, grad_rast = ops().interpolate_bwd(attributes, rast, tri32, grad_out, ctx.needs_input_grad[0],
                                                     ctx.needs_input_grad[1])
        return grad_attr, grad_rast, None


class _AntialiasCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color, rast, clip_pos, tri32, adjacency):
        out, facing, alpha = ops().antialias_fwd(color, rast, clip_pos, tri32, adjacency)
        ctx.save_for_backward(color, rast, clip_pos, tri32, adjacency, facing, alpha)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grad_color, grad_pos = ops().antialias_bwd(*ctx.saved_tensors, grad_out, ctx.needs_input_grad[0],
                                                   ctx.needs_input_grad[2])
        return grad_color, None, grad_pos, None, None


_topology_cache = TensorCache()

# ---------------------------------------------------------------------------------------------
# Scratch cache of the CPU kernels.


def release_scratch() -> int:
    """Free the scratch memory the CPU kernels keep cached between calls; returns the bytes freed.

    Buffers in use by a call running in another thread are not touched; later calls allocate again.
    """
    return int(ops().raster_scratch_release())


def set_scratch_limit(nbytes: int) -> int:
    """Keep at most ``nbytes`` (>= 0) of CPU kernel scratch cached between calls; returns the old limit.

    0 disables the cache (every call allocates and frees its scratch). The default is 256 MiB.
    """
    if isinstance(nbytes, bool) or not hasattr(nbytes, "__index__"):
        raise TypeError(f"nbytes must be an integer number of bytes, got {nbytes!r}")
    nbytes = operator.index(nbytes)
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    return int(ops().raster_scratch_set_limit(nbytes))


def scratch_info() -> dict[str, int]:
    """State of the CPU kernels' scratch cache: ``cached_bytes`` (free for reuse), ``leased_bytes``
    (held by calls running now) and ``limit_bytes``."""
    cached, leased, limit = (int(v) for v in ops().raster_scratch_stats())
    return {"cached_bytes": cached, "leased_bytes": leased, "limit_bytes": limit}


# ---------------------------------------------------------------------------------------------
# Public ops.


def rasterize(clip_pos: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int],
              backend: str | None = None) -> torch.Tensor:
    """Rasterize triangles; nvdiffrast's output format.

    clip_pos: (B, N, 4) float32/float64 homogeneous clip coordinates (x, y, z, w); pixel ``(i, j)``
        has its centre at NDC ``((2 i + 1) / W - 1, (2 j + 1) / H - 1)``, row 0 first.
    tri: (F, 3) int32/int64 vertex indices shared by the batch.
    resolution: (H, W) in pixels, each in [1, 8192].
    backend: None (follow the device), ``"cpu"`` or ``"nvdiffrast"``.
    Returns rast: (B, H, W, 4) in clip_pos's dtype, (u, v, z/w, triangle id + 1); all zeros on
    background. Differentiable w.r.t. clip_pos through u, v and z/w.
    """
    clip_pos = _check_clip_pos(clip_pos)
    height, width = _check_resolution(resolution)
    which = resolve_backend(backend, clip_pos.device)
    tri32 = _prepare_tri(tri, clip_pos.shape[1], clip_pos.device, "vertices in clip_pos")
    if which == CPU:
        rast = _RasterizeCPU.apply(clip_pos, tri32, height, width)
    else:
        rast = nvdr_rasterize(clip_pos, tri32, (height, width))
    _checked.get(rast, "triangles", lambda: tri32.shape[0])
    return rast


def interpolate(attributes: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor,
                backend: str | None = None) -> torch.Tensor:
    """Interpolate vertex attributes over the pixels of ``rast``.

    attributes: (N, C), (1, N, C) or (B, N, C) float32/float64 per-vertex values (the first two
        are shared by the batch).
    rast: (B, H, W, 4) from :func:`rasterize` with this ``tri``.
    tri: (F, 3) int32/int64 indices into ``attributes`` (need not be the mesh's own, e.g. UV indices).
    Returns (B, H, W, C) in attributes' dtype: ``u a0 + v a1 + (1 - u - v) a2`` of the pixel's
    triangle, 0 on background. Differentiable w.r.t. attributes and rast's u, v.
    """
    attributes = _check_float(attributes, "attributes", "(N, C) or (B, N, C)")
    if attributes.ndim not in (2, 3) or attributes.shape[-1] == 0 or attributes.shape[-2] == 0:
        raise ValueError(f"attributes must be (N, C) or (B, N, C) with N, C >= 1, got {tuple(attributes.shape)}")
    _check_finite(attributes, "attributes")
    rast = _check_rast(rast, _check_tri(tri))
    _same_device("attributes", attributes, rast, "rast")
    batch = rast.shape[0]
    if attributes.ndim == 3 and attributes.shape[0] not in (1, batch):
        raise ValueError(f"attributes have batch {attributes.shape[0]} but rast has {batch}; use 1 or {batch}")
    which = resolve_backend(backend, rast.device)
    tri32 = _prepare_tri(tri, attributes.shape[-2], rast.device, "attribute rows")
    if which == CPU:
        attr3 = attributes if attributes.ndim == 3 else attributes.unsqueeze(0)
        return _InterpolateCPU.apply(attr3, rast.to(attributes.dtype), tri32)
    return nvdr_interpolate(attributes, rast, tri32)


def antialias(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor, tri: torch.Tensor,
              backend: str | None = None) -> torch.Tensor:
    """Antialias silhouette edges analytically (nvdiffrast's method); gives silhouette gradients.

    color: (B, H, W, C) float32/float64 image to blend, usually shaded from ``rast``.
    rast: (B, H, W, 4) from :func:`rasterize` with the same ``clip_pos`` and ``tri``.
    clip_pos: (B, N, 4) the clip positions that were rasterized.
    tri: (F, 3) int32/int64 the triangles that were rasterized. Its edge topology is computed once
        and cached while the same tensor object is passed again unmodified.
    Returns (B, H, W, C) in color's dtype. Differentiable w.r.t. color and clip_pos (not rast).
    A silhouette edge has one triangle, more than two, or two that face opposite ways as seen
    from the eye. The CPU kernel follows the segment between two pixel centres across
    same-facing triangles until it meets a silhouette edge, so silhouettes of triangles too thin
    to cover a pixel centre still antialias; nvdiffrast only tests the triangle covering the
    pixel and misses those (the two backends differ there).
    """
    color = _check_float(color, "color", "(B, H, W, C)")
    clip_pos = _check_clip_pos(clip_pos)
    rast = _check_rast(rast, _check_tri(tri))
    if color.ndim != 4 or color.shape[3] == 0 or color.shape[:3] != rast.shape[:3]:
        raise ValueError(f"color must be (B, H, W, C) with C >= 1 matching rast {tuple(rast.shape[:3])}, "
                         f"got {tuple(color.shape)}")
    if clip_pos.shape[0] != rast.shape[0]:
        raise ValueError(f"clip_pos has batch {clip_pos.shape[0]} but rast has {rast.shape[0]}")
    _same_device("color", color, rast, "rast")
    _same_device("clip_pos", clip_pos, rast, "rast")
    which = resolve_backend(backend, rast.device)
    tri32 = _prepare_tri(tri, clip_pos.shape[1], rast.device, "vertices in clip_pos")
    if which == CPU:
        adjacency = _topology_cache.get(tri, "topology", lambda: ops().antialias_topology(tri32))
        return _AntialiasCPU.apply(color, rast.to(color.dtype), clip_pos.to(color.dtype), tri32, adjacency)
    return nvdr_antialias(color, rast, clip_pos, tri32, tri)
