"""Pictures for people, kept apart from the differentiable renderer (``morph3d.render`` never imports PIL).

- ``visualize``: render outputs (depth, normals, flow, segmentation) as displayable sRGB tensors,
  ``(3, H, W)`` or ``(B, 3, H, W)`` floats in [0, 1]; :func:`draw_points` marks landmarks.
- ``contact_sheet``: grids of labelled panels (PIL images), written as PNG with :func:`save_png`.
- ``overlay``: a fit rendered over its photo, with the input and fitted landmarks (:func:`draw_overlay`).
"""
from ..render.colour import linear_to_srgb, srgb_to_linear
from .contact_sheet import contact_sheet, save_png, to_uint8
from .overlay import draw_overlay, studio_lighting
from .visualize import (colormap, depth_to_rgb, draw_points, flow_to_rgb, flow_wheel, hsv_to_rgb, normals_to_rgb,
                        segment_palette, segmentation_to_rgb)

__all__ = [
    "colormap", "contact_sheet", "depth_to_rgb", "draw_overlay", "draw_points", "flow_to_rgb", "flow_wheel",
    "hsv_to_rgb", "linear_to_srgb", "normals_to_rgb", "save_png", "segment_palette", "segmentation_to_rgb",
    "srgb_to_linear", "studio_lighting", "to_uint8",
]
