"""Differentiable rendering of morphable models.

Primitives (``rasterize``, ``interpolate``, ``antialias``) follow nvdiffrast and work on
``(B, H, W, C)`` tensors. Everything built on them (``render_face``, flow, segmentation, synthetic data,
visualisation) returns images as ``(B, C, H, W)`` (torch convention). Pixel and clip-space conventions:
``docs/conventions.md``.
"""
from .backends import BackendError
from .rasterize import antialias, interpolate, rasterize
from .contact_sheet import contact_sheet, save_png
from .flow import flow_to_grid, pixel_grid, render_flow, warp_by_flow
from .renderer import (DEFAULT_OUTPUTS, OUTPUTS, RenderOutput, depth_range, landmark_visibility, pixel_footprint,
                       rasterize_face, render_face)
from .segmentation import (BACKGROUND, LANDMARK_CLASS, LANDMARK_CLASSES, landmark_segmentation, polygon_mask,
                           region_class_names, region_segmentation)
from .synthetic import SyntheticBatch, SyntheticFaces, smooth_noise
from .visualize import (depth_to_rgb, draw_points, flow_to_rgb, flow_wheel, linear_to_srgb, normals_to_rgb,
                        segment_palette, segmentation_to_rgb, srgb_to_linear)

__all__ = [
    "BACKGROUND", "BackendError", "DEFAULT_OUTPUTS", "LANDMARK_CLASS", "LANDMARK_CLASSES", "OUTPUTS", "RenderOutput",
    "SyntheticBatch", "SyntheticFaces", "antialias", "contact_sheet", "depth_range", "depth_to_rgb", "draw_points",
    "flow_to_grid", "flow_to_rgb", "flow_wheel", "interpolate", "landmark_segmentation", "landmark_visibility",
    "linear_to_srgb", "normals_to_rgb", "pixel_footprint", "pixel_grid", "polygon_mask", "rasterize",
    "rasterize_face", "region_class_names", "region_segmentation", "render_face", "render_flow", "save_png",
    "segment_palette", "segmentation_to_rgb", "smooth_noise", "srgb_to_linear", "warp_by_flow",
]
