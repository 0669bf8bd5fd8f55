"""Mesh geometry on batched tensors."""
import torch

from . import normals_kernel


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals: each vertex's sum of ``(p1 - p0) x (p2 - p0)`` over its triangles,
    divided by ``max(length, eps)``.

    vertices: (B, N, 3) float; triangles: (F, 3) long -> (B, N, 3) unit vectors (zero for unused vertices).
    float32/float64 on the CPU (and on CUDA in CUDA builds) use the fused kernels
    (``normals_kernel``); other inputs use :func:`vertex_normals_reference`.
    """
    if normals_kernel.supports(vertices):
        return normals_kernel.fused_vertex_normals(vertices, triangles, eps)
    return vertex_normals_reference(vertices, triangles, eps)


def vertex_normals_reference(vertices: torch.Tensor, triangles: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pure-torch :func:`vertex_normals` (gathers and ``index_add``), the fused kernels' reference."""
    b, n, _ = vertices.shape
    # vertex-major layout: each gather / scatter moves one contiguous row of 3B values
    rows = vertices.permute(1, 0, 2).reshape(n, 3 * b)
    v0, v1, v2 = (rows[triangles[:, k]].view(-1, b, 3) for k in range(3))
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1).reshape(-1, 3 * b)
    acc = rows.new_zeros(n, 3 * b)
    for k in range(3):
        acc = acc.index_add(0, triangles[:, k], fn)
    normals = acc.view(n, b, 3).permute(1, 0, 2)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(eps)


def barycentric_points(vertices: torch.Tensor, triangles: torch.Tensor, faces: torch.Tensor,
                       bary: torch.Tensor) -> torch.Tensor:
    """Points given as (triangle, barycentric weights) on a batch of meshes.

    vertices: (B, N, 3); triangles: (F, 3) long; faces: (L,) long (>= 0); bary: (L, 3) -> (B, L, 3).
    """
    corners = vertices[:, triangles[faces]]  # (B, L, 3 corners, 3)
    return (corners * bary.to(vertices.dtype)[None, :, :, None]).sum(dim=2)
