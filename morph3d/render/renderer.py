"""Render a morphable model: image, mask, depth, normals and landmark visibility.

Image tensors returned here are ``(B, C, H, W)`` (torch convention); the rasterization primitives
(``rasterize``/``interpolate``/``antialias``) work on ``(B, H, W, C)`` like nvdiffrast. Row 0 is the
top of the image and pixel ``(x, y)`` has its centre at image coordinates ``(x, y)``
(``docs/conventions.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.camera import PERSPECTIVE, Camera
from ..model.geometry import barycentric_points
from ..model.lighting import shade
from ..model.morphable_model import ModelOutput, MorphableModel
from ..model.params import FaceParams
from .rasterize import antialias as _antialias
from .rasterize import interpolate, rasterize

OUTPUTS = ("image", "mask", "depth", "normals", "albedo", "landmarks")
DEFAULT_OUTPUTS = ("image", "mask", "depth", "normals", "landmarks")


@dataclass
class RenderOutput:
    """What :func:`render_face` returns for B faces in H x W images (fields not requested are None).

    image: (B, 3, H, W) linear RGB, shaded face composited over the background with the antialiased mask.
    mask: (B, 1, H, W) foreground coverage in [0, 1] (antialiased: it has silhouette gradients).
    depth: (B, 1, H, W) mm in front of the camera (-Z in the camera frame), 0 on the background.
    normals: (B, 3, H, W) unit normals in the camera frame, 0 on the background.
    albedo: (B, 3, H, W) linear RGB reflectance before shading, 0 on the background.
    landmarks_2d: (B, 68, 2) pixels (NaN where the model does not define a landmark).
    landmark_visible: (B, 68) bool, inside the image and not hidden behind another surface.
    rast: (B, H, W, 4) rasterizer output (u, v, z / w, triangle id + 1), for reuse.
    clip: (B, N, 4) clip-space vertices the mesh was rasterized with.
    geometry: the :class:`ModelOutput` of the model for these parameters.
    """

    rast: torch.Tensor
    clip: torch.Tensor
    geometry: ModelOutput
    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    albedo: torch.Tensor | None = None
    landmarks_2d: torch.Tensor | None = None
    landmark_visible: torch.Tensor | None = None


def depth_range(vertices_cam: torch.Tensor, kind: str = PERSPECTIVE) -> tuple[float, float]:
    """Near and far planes (mm in front of the camera) that enclose ``vertices_cam (B, N, 3)`` with margin.

    Perspective: ``[0.5 x nearest, 2 x farthest]`` (near stays positive). Orthographic: the depth range
    widened by 10 % + 1 mm on each side.
    """
    d = -vertices_cam.detach()[..., 2]
    d = d[torch.isfinite(d)]
    if d.numel() == 0:
        raise ValueError("the mesh has no finite vertices to render")
    lo, hi = float(d.min()), float(d.max())
    if kind == PERSPECTIVE:
        near = 0.5 * lo if lo > 0 else max(1e-3 * hi, 1e-3)
        return near, max(2.0 * hi, 2.0 * near) + 1.0
    margin = 0.1 * (hi - lo) + 1.0
    return lo - margin, hi + margin


def pixel_footprint(depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Size in mm of one pixel at ``depth`` (mm, shape (B, ...)) for each camera of the batch."""
    f = camera.focal.reshape((-1,) + (1,) * (depth.ndim - 1))
    if camera.kind == PERSPECTIVE:
        return depth.abs() / f
    return torch.ones_like(depth) / f


def rasterize_face(model: MorphableModel, params: FaceParams, backend: str | None = None,
                   near: float | None = None, far: float | None = None,
                   geometry: ModelOutput | None = None) -> tuple[ModelOutput, torch.Tensor, torch.Tensor]:
    """Evaluate the model and rasterize it in its camera.

    Returns (geometry, clip (B, N, 4), rast (B, H, W, 4)); ``near``/``far`` in mm default to
    :func:`depth_range` of the posed mesh. Pass ``geometry`` to reuse a ``model(params)`` result.
    """
    if not isinstance(params, FaceParams):
        raise TypeError(f"params must be FaceParams, got {type(params).__name__}")
    geo = model(params) if geometry is None else geometry
    lo, hi = depth_range(geo.vertices_cam, params.camera.kind)
    near = lo if near is None else float(near)
    far = hi if far is None else float(far)
    if not far > near or (params.camera.kind == PERSPECTIVE and near <= 0):
        raise ValueError(f"need 0 < near < far for a perspective camera (near < far otherwise), "
                         f"got near={near}, far={far}")
    clip = params.camera.to_clip(geo.vertices_cam, near=near, far=far)
    rast = rasterize(clip.contiguous(), model.triangles, params.camera.image_size, backend=backend)
    return geo, clip, rast


def _check_image(t: torch.Tensor, name: str, batch: int, size: tuple[int, int] | None, ref: torch.Tensor):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3 or t.shape[0] not in (1, batch):
        raise ValueError(f"{name} must be (B, 3, H, W) or (3, H, W) with B = {batch}, got {tuple(t.shape)}")
    if size is not None and tuple(t.shape[2:]) != tuple(size):
        raise ValueError(f"{name} is {tuple(t.shape[2:])} but the camera renders {tuple(size)}; resize it first")
    return t.to(device=ref.device, dtype=ref.dtype).expand(batch, -1, -1, -1)


def _sample_texture(model: MorphableModel, texture: torch.Tensor, rast: torch.Tensor, backend: str | None
                    ) -> torch.Tensor:
    """Texture map (B, 3, Ht, Wt) sampled through the interpolated UVs -> albedo (B, H, W, 3)."""
    from ..ops import pixel_sample
    uv = interpolate(model.uv_coords, rast, model.uv_triangles, backend=backend)  # (B, H, W, 2), v up
    grid = torch.stack([2.0 * uv[..., 0] - 1.0, 1.0 - 2.0 * uv[..., 1]], dim=-1)
    out = pixel_sample(texture, grid, "bilinear", "border", False)
    return out.permute(0, 2, 3, 1)


def landmark_visibility(model: MorphableModel, geometry: ModelOutput, rast: torch.Tensor, depth: torch.Tensor,
                        camera: Camera, tolerance_px: float = 3.0, max_backfacing: float = 0.2) -> torch.Tensor:
    """Which landmarks are seen: inside the image, facing the camera and not behind another surface.

    geometry: ``model(params)``; rast: (B, H, W, 4); depth: (B, H, W) mm (0 on the background).
    A landmark is visible when it projects inside the image, its surface normal does not face away from
    the camera by more than ``max_backfacing`` (cosine; rims are at 0), and at least one pixel of the 3 x 3
    block around its nearest pixel is background (the landmark is on the silhouette), shows a triangle
    sharing a vertex with the landmark's triangle, or shows a surface at most ``tolerance_px`` pixel
    footprints in front of the landmark; and the surface is drawn there (some pixel of that block shows
    a triangle: a mesh torn apart by absurd coefficients renders nothing and sees no landmark). -> (B, L) bool.
    """
    b, h, w = depth.shape
    uv = geometry.landmarks_2d.detach()
    pts = geometry.landmarks_cam.detach()
    finite = torch.isfinite(uv).all(-1) & torch.isfinite(pts).all(-1)
    x = torch.where(finite, uv[..., 0], torch.full_like(uv[..., 0], -1.0))
    y = torch.where(finite, uv[..., 1], torch.full_like(uv[..., 1], -1.0))
    inside = finite & (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    normal = barycentric_points(geometry.normals_cam.detach(), model.triangles, model.landmark_faces,
                                model.landmark_bary)
    to_camera = -pts if camera.kind == PERSPECTIVE else torch.tensor([0.0, 0.0, 1.0]).to(pts)
    cos = (normal * to_camera).sum(-1) / (normal.norm(dim=-1) * to_camera.norm(dim=-1)).clamp_min(1e-12)
    facing = torch.nan_to_num(cos, nan=-1.0) >= -max_backfacing
    d = torch.nan_to_num(-pts[..., 2], nan=float("inf"))
    tol = tolerance_px * pixel_footprint(d, camera)
    own = model.triangles[model.landmark_faces]  # (L, 3)
    tri_ids = rast[..., 3].detach().round().long().reshape(b, -1) - 1
    buf_all = depth.detach().reshape(b, -1)
    cx, cy = torch.round(x).long(), torch.round(y).long()
    unobstructed = torch.zeros_like(inside)
    drawn = torch.zeros_like(inside)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat = (cy + dy).clamp(0, h - 1) * w + (cx + dx).clamp(0, w - 1)
            tri_id = tri_ids.gather(1, flat)  # (B, L)
            seen = model.triangles[tri_id.clamp_min(0)]  # (B, L, 3)
            shares = (own[None, :, :, None] == seen[:, :, None, :]).flatten(2).any(-1)
            unobstructed |= (tri_id < 0) | shares | (d <= buf_all.gather(1, flat) + tol)
            drawn |= tri_id >= 0
    return inside & facing & unobstructed & drawn & model.landmark_valid[None]


def render_face(model: MorphableModel, params: FaceParams, outputs=DEFAULT_OUTPUTS,
                background: torch.Tensor | None = None, backend: str | None = None, antialias: bool = True,
                near: float | None = None, far: float | None = None,
                texture: torch.Tensor | None = None) -> RenderOutput:
    """Render B faces in the cameras of ``params``; everything is differentiable w.r.t. the parameters.

    outputs: any of ``"image", "mask", "depth", "normals", "albedo", "landmarks"``.
    background: optional (B, 3, H, W) or (3, H, W) linear RGB behind the face (black when None).
    texture: optional (B, 3, Ht, Wt) linear RGB albedo map, sampled through the model's UVs (v up,
        row 0 of the map is v = 1) instead of the per-vertex albedo; needs a model with UVs.
    antialias: antialias silhouettes (image and mask) so they carry gradients w.r.t. the geometry.
    near, far: clip planes in mm in front of the camera (default: from the posed mesh's depth range).
    Shading is per pixel: interpolated albedo x SH irradiance of the renormalised interpolated normal / pi.
    """
    wanted = tuple(outputs)
    unknown = [o for o in wanted if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown render outputs {unknown}; choose from {list(OUTPUTS)}")
    if texture is not None and model.uv_coords is None:
        raise ValueError(f"model '{model.name}' has no UV coordinates, so it cannot be rendered with a texture map")
    geo, clip, rast = rasterize_face(model, params, backend=backend, near=near, far=far)
    ref = geo.vertices_cam
    bsz = params.batch_size
    if background is not None:
        background = _check_image(background, "background", bsz, params.camera.image_size, ref)
    if texture is not None:
        texture = _check_image(texture, "texture", bsz, None, ref)
    result = RenderOutput(rast=rast, clip=clip, geometry=geo)
    hard = (rast[..., 3:4] > 0).to(ref.dtype)  # (B, H, W, 1)
    need_shading = "image" in wanted or "albedo" in wanted or "normals" in wanted

    depth_cam = -ref[..., 2:3]
    if need_shading:
        albedo_attr = [] if texture is not None else [geo.albedo]
        attrs = interpolate(torch.cat(albedo_attr + [geo.normals_cam, depth_cam], dim=-1), rast, model.triangles,
                            backend=backend)
        if texture is not None:
            albedo = _sample_texture(model, texture, rast, backend) * hard
        else:
            albedo, attrs = attrs[..., :3], attrs[..., 3:]
        normals = attrs[..., :3]
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        depth = attrs[..., 3:4]
    else:
        depth = interpolate(depth_cam, rast, model.triangles, backend=backend)
    depth = depth * hard

    channels = []
    if "image" in wanted:
        b, h, w, _ = rast.shape
        colour = shade(albedo.reshape(b, h * w, 3), normals.reshape(b, h * w, 3), params.lighting)
        colour = colour.reshape(b, h, w, 3)
        bg = torch.zeros_like(colour) if background is None else background.permute(0, 2, 3, 1)
        channels.append(colour * hard + bg * (1.0 - hard))
    if "mask" in wanted or "image" in wanted:
        channels.append(hard)
    if channels:
        stacked = torch.cat(channels, dim=-1)
        if antialias:
            stacked = _antialias(stacked.contiguous(), rast, clip, model.triangles, backend=backend)
        if "image" in wanted:
            result.image = stacked[..., :3].permute(0, 3, 1, 2)
        if "mask" in wanted:
            result.mask = stacked[..., -1:].permute(0, 3, 1, 2)
    if "depth" in wanted:
        result.depth = depth.permute(0, 3, 1, 2)
    if "normals" in wanted:
        result.normals = (normals * hard).permute(0, 3, 1, 2)
    if "albedo" in wanted:
        result.albedo = (albedo * hard).permute(0, 3, 1, 2)
    if "landmarks" in wanted:
        result.landmarks_2d = geo.landmarks_2d
        result.landmark_visible = landmark_visibility(model, geo, rast, depth[..., 0], params.camera)
    return result


__all__ = ["DEFAULT_OUTPUTS", "OUTPUTS", "RenderOutput", "depth_range", "landmark_visibility", "pixel_footprint",
           "rasterize_face", "render_face"]
