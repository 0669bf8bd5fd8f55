"""Differentiable rendering of morphable models.

Primitives (``rasterize``, ``interpolate``, ``antialias``) follow nvdiffrast and work on
``(B, H, W, C)`` tensors. Everything built on them (``render_face``, :class:`FaceRenderer`, flow,
segmentation, synthetic data) returns images as ``(B, C, H, W)`` (torch convention). Pixel and
clip-space conventions: ``docs/conventions.md``. Pictures for people (colour maps, contact sheets, fit
overlays) live in :mod:`morph3d.display`; this package never imports PIL.
"""
from .backends import BackendError
from .rasterize import antialias, interpolate, rasterize, release_scratch, scratch_info, set_scratch_limit
from .colour import linear_to_srgb, srgb_to_linear
from .face_renderer import FaceRenderer, RenderSettings
from .flow import flow_to_grid, pixel_grid, render_flow, warp_by_flow
from .renderer import (DEFAULT_OUTPUTS, OUTPUTS, RenderOutput, depth_range, landmark_visibility, pixel_footprint,
                       rasterize_face, render_face)
from .segmentation import (BACKGROUND, LANDMARK_CLASS, LANDMARK_CLASSES, landmark_segmentation, polygon_mask,
                           region_class_names, region_segmentation)
from .synthetic import SyntheticBatch, SyntheticFaces, smooth_noise

__all__ = [
    "BACKGROUND", "BackendError", "DEFAULT_OUTPUTS", "FaceRenderer", "LANDMARK_CLASS", "LANDMARK_CLASSES", "OUTPUTS",
    "RenderOutput", "RenderSettings", "SyntheticBatch", "SyntheticFaces", "antialias", "depth_range",
    "flow_to_grid", "interpolate", "landmark_segmentation", "landmark_visibility", "linear_to_srgb",
    "pixel_footprint", "pixel_grid", "polygon_mask", "rasterize", "rasterize_face", "region_class_names",
    "region_segmentation", "release_scratch", "render_face", "render_flow", "scratch_info", "set_scratch_limit",
    "smooth_noise", "srgb_to_linear", "warp_by_flow",
]

# Names that moved to morph3d.display; still importable from here, loaded (with PIL) on first use.
_MOVED_TO_DISPLAY = ("contact_sheet", "depth_to_rgb", "draw_points", "flow_to_rgb", "flow_wheel", "normals_to_rgb",
                     "save_png", "segment_palette", "segmentation_to_rgb")


def __getattr__(name):
    if name in _MOVED_TO_DISPLAY:
        from .. import display
        return getattr(display, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
