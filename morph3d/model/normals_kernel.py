"""The fused vertex-normal kernels (``torch.ops.morph3d.vertex_normals_*``) as an autograd op.

Each vertex sums its incident triangles through a vertex -> triangle adjacency that is built once
per triangle tensor and cached, so a call costs one pass over the vertices forward and two
backward, with no gathers, scatters or atomics (deterministic for any thread count).
``morph3d.model.geometry.vertex_normals`` calls :func:`fused_vertex_normals` where
:func:`supports` says the kernels apply and falls back to the pure-torch reference elsewhere.
"""
from __future__ import annotations

import torch

from .._ext import built_with_cuda, ops
from .._tensor_cache import TensorCache
from .fused_grad import differentiable_grad

_FLOATS = (torch.float32, torch.float64)
_TOPOLOGY = TensorCache()  # triangles -> (offsets, others) per (vertex count, device)


def supports(vertices: torch.Tensor) -> bool:
    """True when the fused kernels handle these (B, N, 3) vertices: float32/64 on CPU, or CUDA builds."""
    if vertices.dtype not in _FLOATS or vertices.dim() != 3 or vertices.shape[-1] != 3:
        return False
    if vertices.device.type == "cpu":
        return True
    return vertices.device.type == "cuda" and built_with_cuda()


def topology(triangles: torch.Tensor, num_vertices: int, device: torch.device) -> tuple:
    """The adjacency (offsets (N + 1,) int64, others (3F, 2) int32) of ``triangles`` on ``device``
    (``kernels/vertex_normals.h``), cached per tensor and rebuilt after in-place changes.

    Raises ValueError when the triangles are not (F, 3) indices in [0, num_vertices).
    """
    def build():
        if triangles.dim() != 2 or triangles.shape[1] != 3 or triangles.dtype.is_floating_point:
            raise ValueError(f"triangles must be (F, 3) integer indices, got {tuple(triangles.shape)} "
                             f"{triangles.dtype}")
        tri = triangles.detach().to("cpu", torch.int64).contiguous()
        if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= num_vertices):
            raise ValueError(f"triangle indices must be in [0, {num_vertices}), got "
                             f"[{int(tri.min())}, {int(tri.max())}]")
        return tuple(t.to(device) for t in ops().vertex_normals_topology(tri, num_vertices))
    return _TOPOLOGY.get(triangles, (num_vertices, device), build)


class _VertexNormals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices, triangles, offsets, others, eps):
        normals, norms = ops().vertex_normals_fwd(vertices, offsets, others, eps)
        ctx.save_for_backward(vertices, offsets, others, normals, norms)
        ctx.triangles, ctx.eps = triangles, eps
        return normals

    @staticmethod
    def backward(ctx, grad):
        vertices, offsets, others, normals, norms = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable gradient, from the pure-torch reference
            from .geometry import vertex_normals_reference
            reference = lambda v: vertex_normals_reference(v, ctx.triangles, ctx.eps)  # noqa: E731
            return (*differentiable_grad(reference, (vertices,), grad), None, None, None, None)
        grad_vertices = ops().vertex_normals_bwd(grad.to(vertices.dtype), vertices, offsets, others, normals, norms,
                                                 ctx.eps)
        return grad_vertices, None, None, None, None


def fused_vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals by the fused kernels (see ``geometry.vertex_normals``).

    vertices: (B, N, 3) float32/float64 where :func:`supports` holds; triangles: (F, 3) integer
    -> (B, N, 3), zero for vertices no triangle uses.
    """
    offsets, others = topology(triangles, vertices.shape[1], vertices.device)
    return _VertexNormals.apply(vertices, triangles, offsets, others, float(eps))
