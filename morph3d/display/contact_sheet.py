"""Grids of labelled image panels, written as PNG atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from ..io import atomic_write

_SHEET_BACKGROUND = (24, 24, 28)
_TEXT = (235, 235, 235)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, H, W) float in [0, 1] (display-encoded) -> (H, W, 3) uint8."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"a panel must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    img = image.detach().float().cpu().clamp(0.0, 1.0).expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def _fitting(font: ImageFont.FreeTypeFont, text: str, width: int) -> ImageFont.FreeTypeFont:
    """``font``, shrunk until ``text`` fits in ``width`` pixels (down to 8 pt)."""
    size = font.size
    while size > 8 and font.getlength(text) > width:
        size -= 1
        font = ImageFont.load_default(size=size)
    return font


def _legend_rows(entries, font, width: int, gap: int) -> list[list[tuple[str, tuple, int]]]:
    """Split legend entries into rows that fit ``width``; each entry is (name, colour, entry width)."""
    sw = int(font.size * 0.9)
    rows, row, used = [], [], 0
    for name, colour in entries:
        ew = sw + gap // 2 + int(font.getlength(name)) + 2 * gap
        if row and used + ew > width:
            rows.append(row)
            row, used = [], 0
        row.append((name, colour, ew))
        used += ew
    if row:
        rows.append(row)
    return rows


def contact_sheet(panels: Sequence[tuple[str, torch.Tensor]], columns: int = 3, gap: int = 6,
                  title: str | None = None, legend: Sequence[tuple[str, Sequence[float]]] = (),
                  notes: Sequence[str] = ()) -> Image.Image:
    """Lay out labelled panels in a grid.

    panels: (label, image) pairs; images are (3, H, W) or (1, H, W) floats in [0, 1], already
    display-encoded (sRGB), all the same size. The label is written above each panel with PIL's
    default font, scaled to the panel width. ``legend`` entries (name, RGB in [0, 1]) are drawn as
    colour swatches below the grid, followed by the ``notes`` lines. Returns an RGB PIL image whose
    ``info["panels"]`` is a JSON list of ``{"label", "box": [left, top, right, bottom]}`` (saved as a
    PNG text chunk by :func:`save_png`).
    """
    if not panels:
        raise ValueError("a contact sheet needs at least one panel")
    arrays = [to_uint8(img) for _, img in panels]
    h, w = arrays[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in arrays):
        raise ValueError("all panels of a contact sheet must have the same size")
    font = ImageFont.load_default(size=max(10, min(32, w // 14)))
    small = ImageFont.load_default(size=max(9, int(font.size * 0.7)))
    label_h = int(font.size * 1.6)
    title_h = int(font.size * 2.0) if title else 0
    columns = max(1, min(columns, len(panels)))
    rows = (len(panels) + columns - 1) // columns
    sheet_w = columns * w + (columns + 1) * gap
    line_h = int(small.size * 1.5)
    legend_rows = _legend_rows(legend, small, sheet_w - 2 * gap, gap)
    footer_h = line_h * (len(legend_rows) + len(notes)) + (gap if legend_rows or notes else 0)
    grid_bottom = title_h + rows * (h + label_h + gap) + gap
    sheet = Image.new("RGB", (sheet_w, grid_bottom + footer_h), _SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    layout = []
    if title:
        draw.text((gap, gap // 2 + title_h // 2), title, fill=_TEXT, font=_fitting(font, title, sheet_w - 2 * gap),
                  anchor="lm")
    for k, ((label, _), arr) in enumerate(zip(panels, arrays)):
        r, c = divmod(k, columns)
        x = gap + c * (w + gap)
        y = title_h + gap + r * (h + label_h + gap)
        draw.text((x + w // 2, y + label_h // 2), label, fill=_TEXT, font=_fitting(font, label, w - 4), anchor="mm")
        sheet.paste(Image.fromarray(arr), (x, y + label_h))
        layout.append({"label": label, "box": [x, y + label_h, x + w, y + label_h + h]})
    y = grid_bottom
    sw = int(small.size * 0.9)
    for row in legend_rows:
        x = gap
        for name, colour, ew in row:
            rgb = tuple(int(round(255 * min(max(float(v), 0.0), 1.0))) for v in colour)
            draw.rectangle([x, y + (line_h - sw) // 2, x + sw, y + (line_h + sw) // 2], fill=rgb, outline=_TEXT)
            draw.text((x + sw + gap // 2, y + line_h // 2), name, fill=_TEXT, font=small, anchor="lm")
            x += ew
        y += line_h
    for line in notes:
        draw.text((gap, y + line_h // 2), line, fill=_TEXT, font=_fitting(small, line, sheet_w - 2 * gap), anchor="lm")
        y += line_h
    sheet.info["panels"] = json.dumps(layout)
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PIL image as PNG atomically (a temporary file in the same folder, then renamed).

    String entries of ``image.info`` (e.g. a contact sheet's ``panels``) become PNG text chunks.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: contact sheets are written as .png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: output folder does not exist")
    text = PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            text.add_text(key, value)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=text))


__all__ = ["contact_sheet", "save_png", "to_uint8"]
