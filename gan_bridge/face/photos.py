"""Photos in and pictures out for the gan-bridge commands, through morph3d's public API.

Images in gan_bridge are ``(B, 3, H, W)`` float in [-1, 1] (sRGB); morph3d's display helpers take
``(3, H, W)`` in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from morph3d.display import contact_sheet, save_png
from morph3d.fitting import detect_faces, load_image, read_landmarks
from morph3d.io import atomic_write, check_output_dir

from .crops import FaceCrop, ffhq_crop, warp_affine

ALIGNMENTS = ("ffhq", "world", "none")
MIN_PANEL = 160  # px: smaller contact-sheet panels are enlarged

__all__ = ["ALIGNMENTS", "atomic_write", "check_output_dir", "load_face_crop", "save_image", "save_sheet",
           "to_display"]


def load_face_crop(path: str | Path, size: int, align: str = "ffhq", detector: str = "dlib",
                   landmarks: str | Path | None = None) -> FaceCrop:
    """Read a photo and crop it to ``size`` x ``size`` for a generator of that resolution.

    align: 'ffhq' (the FFHQ crop from 68 landmarks: detected, or read from ``landmarks``, a .pts/.npy/.json
    file), 'world' (the same landmarks, framed as the synthetic world frames faces: for networks trained on
    it) or 'none' (the whole photo resized; landmarks then detected on the crop when possible).
    Raises morph3d's one-line errors for unreadable photos and photos without a face.
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {align!r}; choose one of {', '.join(ALIGNMENTS)}")
    image = load_image(path)
    if align != "none":
        lm = read_landmarks(landmarks) if landmarks else detect_faces(image, detector, source=str(path))[0].landmarks
        return ffhq_crop(image, np.asarray(lm, dtype=np.float64), size, align)
    h, w = image.shape[:2]
    matrix = np.array([[size / w, 0, (size / w - 1) / 2], [0, size / h, (size / h - 1) / 2]])
    crop = warp_affine(torch.as_tensor(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1, matrix, size)
    return FaceCrop(image=crop, landmarks=None, matrix=matrix)


def to_display(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [-1, 1] -> (3, H, W) in [0, 1] for morph3d's display helpers."""
    return (image.detach().float().cpu().clamp(-1, 1) + 1) / 2


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write one (3, H, W) [-1, 1] image as PNG, atomically."""
    array = (to_display(image).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return save_png(Image.fromarray(array), path)


def save_sheet(panels: list[tuple[str, torch.Tensor]], path: str | Path, columns: int | None = None,
               title: str | None = None, notes=()) -> Path:
    """A labelled contact sheet of (label, (3, H, W) [-1, 1]) panels, written as PNG atomically.

    Panels under ``MIN_PANEL`` px are enlarged by an integer factor (nearest neighbour), so that small
    generators' images and their labels stay readable."""
    scale = max(1, -(-MIN_PANEL // panels[0][1].shape[-1])) if panels else 1
    shown = [(label, to_display(img)) for label, img in panels]
    if scale > 1:
        shown = [(label, torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="nearest")[0])
                 for label, img in shown]
    sheet = contact_sheet(shown, columns=columns or len(panels), title=title, notes=notes)
    return save_png(sheet, path)
