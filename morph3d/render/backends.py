"""Backends of the rasterization primitives: morph3d's CPU kernels, or nvdiffrast on CUDA.

``backend=None`` follows the tensors' device (``cpu`` -> our kernels, ``cuda`` -> nvdiffrast).
nvdiffrast comes from the optional ``diffrp-nvdiffrast`` package (``pip install morph3d[cuda]``);
it is imported on first use and one ``RasterizeCudaContext`` per CUDA device is created lazily
and reused. nvdiffrast >= 0.3.2 accepts any resolution (older releases wanted multiples of 8)
and computes in float32: float64 inputs are cast down and the outputs cast back up.
"""
from __future__ import annotations

import threading
from typing import Any

import torch

from .._tensor_cache import TensorCache

CPU = "cpu"
NVDIFFRAST = "nvdiffrast"
BACKENDS = (CPU, NVDIFFRAST)


class BackendError(ValueError):
    """A backend cannot run: its package is missing, or the tensors are on the wrong device."""


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Pick the backend for tensors on ``device``; ``backend`` overrides the default."""
    if backend is None:
        if device.type == "cpu":
            return CPU
        if device.type == "cuda":
            return NVDIFFRAST
        raise BackendError(f"no rasterization backend runs on {device.type!r} tensors; "
                           f"move them to the CPU (.cpu()) or to a CUDA device")
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterization backend {backend!r}; choose one of {BACKENDS} or None")
    if backend == CPU and device.type != "cpu":
        raise BackendError(f"backend 'cpu' runs morph3d's CPU kernels, but the tensors are on {device}; "
                           f"move them with .cpu(), or use backend='nvdiffrast' (or None) for CUDA tensors")
    if backend == NVDIFFRAST and device.type != "cuda":
        raise BackendError(f"backend 'nvdiffrast' runs on CUDA tensors, but the tensors are on {device}; "
                           f"move them with .cuda(), or use backend='cpu' (or None)")
    return backend


def nvdiffrast() -> Any:
    """Return ``nvdiffrast.torch``, or raise :class:`BackendError` saying how to install it."""
    try:
        import nvdiffrast.torch as dr
    except ImportError as exc:
        raise BackendError(
            "backend 'nvdiffrast' (the default for CUDA tensors) needs nvdiffrast: install it with "
            "`pip install diffrp-nvdiffrast` (or `pip install morph3d[cuda]`), or rasterize CPU tensors "
            "with backend='cpu'") from exc
    return dr


_contexts: dict[int, Any] = {}
_contexts_lock = threading.Lock()


def cuda_context(device: torch.device) -> Any:
    """The cached ``nvdiffrast.torch.RasterizeCudaContext`` of a CUDA device (created on first use)."""
    dr = nvdiffrast()
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _contexts_lock:
        ctx = _contexts.get(index)
        if ctx is None:
            ctx = dr.RasterizeCudaContext(device=torch.device("cuda", index))
            _contexts[index] = ctx
    return ctx


def nvdr_rasterize(clip_pos: torch.Tensor, tri32: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """nvdiffrast's rasterize (instanced mode, no image-space derivatives) -> (B, H, W, 4)."""
    dr = nvdiffrast()
    rast, _ = dr.rasterize(cuda_context(clip_pos.device), clip_pos.float().contiguous(), tri32,
                           resolution=list(resolution), grad_db=False)
    return rast.to(clip_pos.dtype)


def nvdr_interpolate(attributes: torch.Tensor, rast: torch.Tensor, tri32: torch.Tensor) -> torch.Tensor:
    """nvdiffrast's interpolate; ``attributes`` (N, C) or (1 or B, N, C) -> (B, H, W, C)."""
    dr = nvdiffrast()
    out, _ = dr.interpolate(attributes.float().contiguous(), rast.float().contiguous(), tri32)
    return out.to(attributes.dtype)


_topology_hashes = TensorCache()


def nvdr_antialias(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor, tri32: torch.Tensor,
                   tri_key: torch.Tensor) -> torch.Tensor:
    """nvdiffrast's antialias; the topology hash is cached per caller triangle tensor ``tri_key``."""
    dr = nvdiffrast()
    topology = _topology_hashes.get(tri_key, ("nvdr", tri32.device),
                                    lambda: dr.antialias_construct_topology_hash(tri32))
    out = dr.antialias(color.float().contiguous(), rast.float().contiguous(), clip_pos.float().contiguous(),
                       tri32, topology_hash=topology)
    return out.to(color.dtype)
