"""Mesh export: OBJ / PLY with vertex colours, or OBJ with UVs and a texture image (via trimesh).

Colours are given in linear RGB (as the renderer works) and written sRGB-encoded, as mesh viewers
display vertex colours and textures without any conversion; the files say so in a comment.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from ..io import atomic_write

VERTEX_COLOUR_COMMENT = "vertex colours are sRGB (converted from morph3d's linear RGB)"
TEXTURE_COMMENT = "the texture image is sRGB (converted from morph3d's linear RGB)"

def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear RGB -> sRGB (the standard piecewise curve), clipped to [0, 1] first."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.maximum(x, 1e-12) ** (1.0 / 2.4) - 0.055)


def _with_comment(data: bytes | str, suffix: str, comment: str) -> bytes | str:
    """Put ``comment`` into an OBJ (first line) or PLY (header comment after the ``ply`` and ``format``
    lines) file."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    if suffix == ".obj":
        text = f"# {comment}\n{text}"
    else:
        magic, fmt, rest = text.split("\n", 2)
        text = f"{magic}\n{fmt}\ncomment {comment}\n{rest}"
    return text.encode("latin-1") if isinstance(data, bytes) else text


def _split_by_uv(triangles: np.ndarray, uv_triangles: np.ndarray):
    """One output vertex per distinct (vertex, uv) corner pair: returns vertex ids, uv ids and new faces."""
    pairs = np.stack([triangles.reshape(-1), uv_triangles.reshape(-1)], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(-1, 3)


def export_mesh(path: str | Path, vertices, triangles, colors=None, uv_coords=None, uv_triangles=None,
                texture=None) -> Path:
    """Write one mesh.

    vertices: (N, 3) mm; triangles: (F, 3) int; colors: optional (N, 3) linear RGB in [0, 1] (clipped),
    written as 8-bit sRGB; uv_coords (U, 2) / uv_triangles (F, 3) with texture (H, W, 3) linear RGB in
    [0, 1]: OBJ with an .mtl and an sRGB PNG beside it. ``path`` ends in ``.obj`` or ``.ply``; every
    file is written atomically.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".obj", ".ply"):
        raise ValueError(f"{path}: meshes are exported as .obj or .ply")
    v, f = _np(vertices).astype(np.float64), _np(triangles).astype(np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"export_mesh needs vertices (N, 3) and triangles (F, 3), got {v.shape} and {f.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{path}: vertices contain NaN or infinite values; nothing written")
    if texture is not None:
        if suffix != ".obj" or uv_coords is None:
            raise ValueError("a texture needs .obj output and uv_coords")
        uv = _np(uv_coords).astype(np.float64)
        uvt = f if uv_triangles is None else _np(uv_triangles).astype(np.int64)
        vid, uid, faces = _split_by_uv(f, uvt)
        image = (linear_to_srgb(_np(texture)) * 255 + 0.5).astype(np.uint8)
        from PIL import Image
        material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(image))
        visual = trimesh.visual.TextureVisuals(uv=uv[uid], material=material)
        mesh = trimesh.Trimesh(v[vid], faces, visual=visual, process=False)
        files = trimesh.exchange.obj.export_obj(mesh, include_texture=True, return_texture=True,
                                                mtl_name=path.stem + ".mtl")
        text, extras = files
        for name, data in extras.items():
            atomic_write(path.with_name(name), data)
        atomic_write(path, _with_comment(text, suffix, TEXTURE_COMMENT))
        return path
    kw = {}
    if colors is not None:
        c = _np(colors).astype(np.float64)
        if c.shape != v.shape:
            raise ValueError(f"colors must be (N, 3) like vertices, got {c.shape}")
        rgba = np.concatenate([linear_to_srgb(c) * 255 + 0.5, np.full((len(c), 1), 255.0)], axis=1)
        kw["vertex_colors"] = rgba.astype(np.uint8)
    mesh = trimesh.Trimesh(v, f, process=False, **kw)
    data = mesh.export(file_type=suffix[1:])
    atomic_write(path, data if colors is None else _with_comment(data, suffix, VERTEX_COLOUR_COMMENT))
    return path
