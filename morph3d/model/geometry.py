"""Mesh geometry on batched tensors."""
import torch


def face_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unnormalised face normals (area-weighted).

    vertices: (B, N, 3) float; triangles: (F, 3) long -> (B, F, 3), length = 2 x triangle area.
    """
    v0 = vertices[:, triangles[:, 0]]
    v1 = vertices[:, triangles[:, 1]]
    v2 = vertices[:, triangles[:, 2]]
    return torch.cross(v1 - v0, v2 - v0, dim=-1)


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    vertices: (B, N, 3) float; triangles: (F, 3) long -> (B, N, 3) unit vectors (zero for unused vertices).
    """
    fn = face_normals(vertices, triangles)
    b, n = vertices.shape[:2]
    normals = torch.zeros_like(vertices)
    idx = triangles.reshape(-1)
    contrib = fn.unsqueeze(2).expand(b, fn.shape[1], 3, 3).reshape(b, -1, 3)
    normals = normals.index_add(1, idx, contrib)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(eps)


def barycentric_points(vertices: torch.Tensor, triangles: torch.Tensor, faces: torch.Tensor,
                       bary: torch.Tensor) -> torch.Tensor:
    """Points given as (triangle, barycentric weights) on a batch of meshes.

    vertices: (B, N, 3); triangles: (F, 3) long; faces: (L,) long (>= 0); bary: (L, 3) -> (B, L, 3).
    """
    corners = vertices[:, triangles[faces]]  # (B, L, 3 corners, 3)
    return (corners * bary.to(vertices.dtype)[None, :, :, None]).sum(dim=2)
