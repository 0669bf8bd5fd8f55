"""The overlay picture of a fit: the rendered faces blended over the photo, with the input landmarks
(green rings) and the fitted model's landmarks (red dots)."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..model.lighting import NUM_SH
from ..model.params import FaceParams
from ..render import FaceRenderer, RenderSettings, linear_to_srgb

MAX_RENDER_SIDE = 512
BLEND = 0.6
BOX_MARGIN = 1.6
INPUT_COLOUR = (40, 220, 60)
FITTED_COLOUR = (235, 40, 40)


def studio_lighting(batch: int, dtype=torch.float32) -> torch.Tensor:
    """(B, 27) soft light from the camera and above, to show shape when no lighting was fitted."""
    light = torch.zeros(batch, 3, NUM_SH, dtype=dtype)
    light[:, :, 0] = 0.6 * math.sqrt(4 * math.pi)
    light[:, :, 1] = 0.3   # y: from above
    light[:, :, 2] = 1.0   # z: from the camera
    return light.reshape(batch, 3 * NUM_SH)


def _square_around(points: np.ndarray) -> tuple[float, float, float]:
    """(left, top, side) px, pixel-edge coordinates: the square ``BOX_MARGIN`` x the points' box."""
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    centre = (lo + hi) / 2 + 0.5
    side = max(float(max(hi - lo) * BOX_MARGIN), 1.0)
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def draw_overlay(model, image: np.ndarray, params: FaceParams, fitted: np.ndarray, given: np.ndarray,
                 lit: bool) -> np.ndarray:
    """image (H, W, 3) uint8; params of F faces in this image; fitted / given (F, 68, 2) px (NaN skipped);
    lit: use the fitted lighting (else :func:`studio_lighting`). Returns (H, W, 3) uint8."""
    canvas = Image.fromarray(image).convert("RGB")
    dt = model.vertices_mean.dtype
    renderer = FaceRenderer(model, RenderSettings(outputs=("image", "mask")))
    for k in range(params.batch_size):
        left, top, side = _square_around(np.concatenate([fitted[k], given[k]]))
        size = int(min(MAX_RENDER_SIDE, max(16, round(side))))
        face = params[k].to(dtype=dt)
        cam = face.camera.rescaled(size / side, (size, size), (left, top))
        light = face.lighting if lit else studio_lighting(1, dt).to(face.lighting.device)
        p = FaceParams(identity=face.identity, expression=face.expression, texture=face.texture,
                       rotation=face.rotation, translation=face.translation, lighting=light, camera=cam,
                       articulation=face.articulation)
        with torch.no_grad():
            out = renderer(p)
        rgb = linear_to_srgb(out.image[0]).permute(1, 2, 0).cpu().numpy()
        alpha = out.mask[0, 0].clamp(0, 1).cpu().numpy() * BLEND
        px = max(1, int(round(side)))
        rgb_img = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).resize((px, px), Image.BILINEAR)
        alpha_img = Image.fromarray((alpha * 255 + 0.5).astype(np.uint8)).resize((px, px), Image.BILINEAR)
        canvas.paste(rgb_img, (int(round(left)), int(round(top))), alpha_img)
    draw = ImageDraw.Draw(canvas)
    for k in range(params.batch_size):
        g = given[k][np.isfinite(given[k]).all(1)]
        size = float(np.sqrt(np.prod(np.ptp(g, axis=0)))) if len(g) else 100.0
        r = max(1.5, size / 120)
        for x, y in g:
            draw.ellipse((x - r, y - r, x + r, y + r), outline=INPUT_COLOUR, width=max(1, int(r / 2)))
        for x, y in fitted[k][np.isfinite(fitted[k]).all(1)]:
            q = r * 0.6
            draw.ellipse((x - q, y - q, x + q, y + q), fill=FITTED_COLOUR)
    return np.asarray(canvas)
