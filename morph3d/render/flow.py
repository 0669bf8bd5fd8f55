"""Dense 2D flow between two renders of the same mesh, and warping images along it.

Flow and images are ``(B, C, H, W)``; flow is in pixels, ``flow[:, 0]`` along x (right) and ``flow[:, 1]``
along y (down), with pixel centres at integer coordinates (``docs/conventions.md``).
"""
from __future__ import annotations

import torch

from ..model.camera import PERSPECTIVE
from ..model.morphable_model import MorphableModel
from ..model.params import FaceParams
from .rasterize import interpolate
from .renderer import rasterize_face


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates (2, H, W): channel 0 is x (column), channel 1 is y (row)."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])


def render_flow(model: MorphableModel, params_target: FaceParams, params_source: FaceParams,
                backend: str | None = None, depth_tolerance: float | None = None,
                near: float | None = None, far: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel flow from the target render to the source render of the same model.

    For each pixel ``p`` covered by the face in the target view, the surface point seen there (its
    triangle and barycentric coordinates) is posed with ``params_source`` and projected with the source
    camera to ``q``; ``flow = q - p``. So ``warp_by_flow(source_image, flow)`` looks like the target.

    Returns ``flow (B, 2, H, W)`` pixels (defined on the whole target foreground, occluded points
    included; 0 on the background and for points behind the source camera) and ``valid (B, 1, H, W)``
    bool: target foreground whose point lands inside the source image and is seen there. "Seen" is tested on
    each of the four source pixels around ``q`` (the bilinear footprint of the warp): every one must be
    foreground and show either a triangle sharing a vertex with the point's triangle or a surface within
    ``depth_tolerance`` mm of the point's depth (default: 3 pixel footprints at that depth); pixels with
    a bilinear weight below 1e-3 are ignored. Points occluded in the source, or next to an occluding
    edge or the source silhouette, are therefore invalid.

    Both parameter sets must use cameras of the same image size. Differentiable w.r.t. both parameter
    sets (``valid`` is not).
    """
    if params_target.camera.image_size != params_source.camera.image_size:
        raise ValueError(f"target renders {params_target.camera.image_size} but source renders "
                         f"{params_source.camera.image_size}; flow needs one image size")
    if params_target.batch_size != params_source.batch_size:
        raise ValueError(f"target batch {params_target.batch_size} != source batch {params_source.batch_size}")
    _, _, rast_t = rasterize_face(model, params_target, backend=backend, near=near, far=far)
    geo_s, _, rast_s = rasterize_face(model, params_source, backend=backend, near=near, far=far)
    cam = params_source.camera
    tri = model.triangles
    b, h, w, _ = rast_t.shape
    # the target's surface points, posed as in the source
    points = interpolate(geo_s.vertices_cam, rast_t, tri, backend=backend).reshape(b, h * w, 3)  # mm
    d_point = -points.detach()[..., 2]
    fg_t = rast_t[..., 3].reshape(b, h * w) > 0
    usable = fg_t & (d_point > 1e-6) if cam.kind == PERSPECTIVE else fg_t
    # other pixels project a harmless point so that no inf/NaN reaches the gradients
    safe = torch.where(usable[..., None], points, points.new_tensor([0.0, 0.0, -1.0]))
    q = cam.project(safe)  # (B, HW, 2)
    grid = pixel_grid(h, w, device=q.device, dtype=q.dtype).reshape(2, h * w).T  # (HW, 2)
    flow = torch.where(usable[..., None], q - grid, torch.zeros_like(q))

    with torch.no_grad():
        depth_s = interpolate(-geo_s.vertices_cam[..., 2:3], rast_s, tri, backend=backend)[..., 0]  # (B, H, W)
        tri_s = rast_s[..., 3].round().long() - 1  # (B, H, W)
        bi, pi = torch.nonzero(usable, as_tuple=True)  # work on the candidate pixels only
        qx, qy = q.detach()[bi, pi].unbind(-1)
        d = d_point[bi, pi]
        if depth_tolerance is not None:
            tol = torch.full_like(d, float(depth_tolerance))
        else:  # 3 pixel footprints
            tol = 3.0 * (d if cam.kind == PERSPECTIVE else 1.0) / cam.focal.detach()[bi]
        own = tri[rast_t[..., 3].reshape(b, h * w)[bi, pi].round().long() - 1]  # (P, 3)
        ok = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        x0, y0 = qx.floor(), qy.floor()
        fx, fy = qx - x0, qy - y0
        x0 = x0.long().clamp(0, w - 1)
        y0 = y0.long().clamp(0, h - 1)
        for ix, wx in ((x0, 1.0 - fx), ((x0 + 1).clamp_max(w - 1), fx)):
            for iy, wy in ((y0, 1.0 - fy), ((y0 + 1).clamp_max(h - 1), fy)):
                seen = tri_s[bi, iy, ix]
                shares = (own[:, :, None] == tri[seen.clamp_min(0)][:, None, :]).flatten(1).any(-1)
                near_depth = (depth_s[bi, iy, ix] - d).abs() <= tol
                ok &= ((seen >= 0) & (shares | near_depth)) | (wx * wy < 1e-3)
        valid = torch.zeros_like(fg_t)
        valid[bi, pi] = ok
    return flow.permute(0, 2, 1).reshape(b, 2, h, w), valid.reshape(b, 1, h, w)


def flow_to_grid(flow: torch.Tensor) -> torch.Tensor:
    """Pixel flow (B, 2, H, W) -> sampling grid (B, H, W, 2) in [-1, 1] for ``align_corners=False``.

    Pixel x (centre at integer x) sits at normalised ``(2 x + 1) / W - 1``.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    _, _, h, w = flow.shape
    pos = pixel_grid(h, w, device=flow.device, dtype=flow.dtype)[None] + flow
    gx = (2.0 * pos[:, 0] + 1.0) / w - 1.0
    gy = (2.0 * pos[:, 1] + 1.0) / h - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp_by_flow(image: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None = None,
                 mode: str = "bilinear") -> torch.Tensor:
    """Backward warp: ``out[:, :, y, x] = image`` sampled at ``(x + flow_x, y + flow_y)``.

    image: (B, C, H, W); flow: (B, 2, H, W) pixels (as :func:`render_flow` returns); valid: optional
    (B, 1, H, W) bool/float mask that zeroes the output where it is false. Outside the image samples are 0.
    """
    from ..ops import pixel_sample
    if image.ndim != 4 or flow.ndim != 4 or image.shape[0] != flow.shape[0] or image.shape[2:] != flow.shape[2:]:
        raise ValueError(f"image (B, C, H, W) {tuple(image.shape)} and flow (B, 2, H, W) {tuple(flow.shape)} "
                         "must share batch and size")
    out = pixel_sample(image, flow_to_grid(flow.to(image.dtype)), mode, "zeros", False)
    if valid is not None:
        out = out * valid.to(out.dtype)
    return out


__all__ = ["flow_to_grid", "pixel_grid", "render_flow", "warp_by_flow"]
