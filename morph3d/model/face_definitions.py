"""Face definitions shared by fitting, rendering and metrics: the iBUG-68 landmark layout and the
vocabulary of model region names.

iBUG-68 points are 0-based here. "right"/"left" are the subject's: the subject's right eye (36-41)
appears on the image's left in a frontal photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandmarkLayout:
    """Index groups of a 68-point iBUG layout (tuples of 0-based point numbers).

    mirror: the left/right partner of every point (itself on the midline). outer_eye_corners: the pair
    whose distance is the inter-ocular normaliser of 300-W.
    """

    num_points: int
    jaw: tuple[int, ...]
    jaw_right: tuple[int, ...]
    chin: int
    jaw_left: tuple[int, ...]
    brow_right: tuple[int, ...]
    brow_left: tuple[int, ...]
    nose_bridge: tuple[int, ...]
    nostrils: tuple[int, ...]
    eye_right: tuple[int, ...]
    eye_left: tuple[int, ...]
    mouth_outer: tuple[int, ...]
    mouth_inner: tuple[int, ...]
    mirror: tuple[int, ...]
    outer_eye_corners: tuple[int, int]

    @property
    def inner(self) -> tuple[int, ...]:
        """Every point off the jaw outline (17-67 for iBUG-68)."""
        jaw = set(self.jaw)
        return tuple(i for i in range(self.num_points) if i not in jaw)

    @property
    def midline(self) -> tuple[int, ...]:
        """Points that are their own mirror image."""
        return tuple(i for i, j in enumerate(self.mirror) if i == j)

    def mirror_points(self, points: np.ndarray, width: int) -> np.ndarray:
        """Landmarks (..., 68, 2) px of an image flipped left-right (``width`` px wide), renumbered."""
        out = np.asarray(points, dtype=np.float64)[..., list(self.mirror), :].copy()
        out[..., 0] = width - 1 - out[..., 0]
        return out


def _span(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b))


IBUG68 = LandmarkLayout(
    num_points=68,
    jaw=_span(0, 17), jaw_right=_span(0, 8), chin=8, jaw_left=_span(9, 17),
    brow_right=_span(17, 22), brow_left=_span(22, 27),
    nose_bridge=_span(27, 31), nostrils=_span(31, 36),
    eye_right=_span(36, 42), eye_left=_span(42, 48),
    mouth_outer=_span(48, 60), mouth_inner=_span(60, 68),
    mirror=tuple(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
                 + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
                 + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]),
    outer_eye_corners=(36, 45),
)
NUM_LANDMARKS = IBUG68.num_points

# ---- model regions -------------------------------------------------------------------------
# A model's region names (``MorphableModel.region_names``) are free text such as "skin", "brows",
# "mouth_interior" or "left-ear". Each word of a name (split at "_" and "-", lower case) may name a
# face part; these are the parts and the words that name them.
REGION_PARTS = {
    "eyes": ("eye", "eyes", "eyeball", "eyeballs"),
    "brows": ("brow", "brows", "eyebrow", "eyebrows"),
    "nose": ("nose",),
    "nostrils": ("nostril", "nostrils"),
    "lips": ("lip", "lips"),
    "mouth": ("mouth", "teeth", "tongue"),
    "ears": ("ear", "ears"),
    "hair": ("hair", "scalp"),
    "neck": ("neck",),
    "interior": ("interior",),
}
# regions whose pixels do not show skin: left out of photometric losses
NON_SKIN_PARTS = ("eyes", "brows", "lips", "mouth", "ears", "hair", "neck", "nostrils")
# regions the jaw outline never runs through: left out of the sliding-contour zone
NON_CONTOUR_PARTS = ("eyes", "brows", "nose", "lips", "mouth", "ears", "hair", "interior")


def region_parts(name: str) -> set[str]:
    """The face parts (keys of :data:`REGION_PARTS`) a region name mentions, e.g. 'left-ear' -> {'ears'}."""
    words = set(name.lower().replace("-", "_").split("_"))
    return {part for part, names in REGION_PARTS.items() if words & set(names)}


def regions_without(region_names, parts) -> np.ndarray:
    """(R,) bool: the regions that mention none of ``parts`` (e.g. :data:`NON_SKIN_PARTS` -> skin regions)."""
    unknown = set(parts) - set(REGION_PARTS)
    if unknown:
        raise ValueError(f"unknown face parts {sorted(unknown)}; choose from {sorted(REGION_PARTS)}")
    return np.array([not (region_parts(n) & set(parts)) for n in region_names], dtype=bool)


__all__ = ["IBUG68", "LandmarkLayout", "NON_CONTOUR_PARTS", "NON_SKIN_PARTS", "NUM_LANDMARKS", "REGION_PARTS",
           "region_parts", "regions_without"]
