"""Robust image loading: any PIL-readable file -> 8-bit RGB, upright, of bounded size.

Rules
- Orientation: the EXIF orientation tag is applied, so pixels are as a viewer shows them.
- Modes: grey, palette, CMYK, YCbCr, LAB, HSV, 1-bit -> RGB; alpha is composited over white;
  16-bit and 32-bit integer images are scaled from their full range to 8 bits; float images are
  taken as [0, 1] when their maximum is <= 1, else as [0, 255]. Multi-frame files use the first frame.
- Size: images above ``MAX_MEGAPIXELS`` (50 megapixels) are refused before decoding; downscale them
  first. (Face detection separately works on a copy no larger than ``detect.DETECT_MAX_SIDE``.)
"""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

MAX_MEGAPIXELS = 50.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")


def _to_rgb8(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("RGB", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        return np.asarray(im.convert("RGB"))
    # high bit depth: I;16*, I (32-bit int), F (32-bit float), RGB;16 variants
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if top <= 1.0 else 1.0
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0 / scale, neginf=0.0) * scale
    elif arr.dtype.kind in "iu":
        if arr.dtype.itemsize == 1:
            pass
        elif mode.startswith("I;16") or arr.dtype.itemsize == 2 or arr.max() > 255:
            bits = 16 if arr.max() <= 65535 else 32
            arr = arr.astype(np.float64) * (255.0 / (2.0 ** bits - 1))
    else:
        raise ImageLoadError(f"{path}: unsupported image mode {mode!r}; save it as 8-bit RGB (PNG or JPEG)")
    arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[:, :, :3]
    else:
        raise ImageLoadError(f"{path}: unsupported image layout {arr.shape} (mode {mode!r})")
    return np.ascontiguousarray(arr)


@contextlib.contextmanager
def _opened(path: Path, max_megapixels: float):
    """The PIL image of ``path``, header read and checked (exists, has pixels, within the size limit);
    PIL's errors are turned into :class:`ImageLoadError`."""
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise ImageLoadError(f"{path}: the image has no pixels ({w} x {h})")
                mp = w * h / 1e6
                if mp > max_megapixels:
                    raise ImageLoadError(f"{path}: {w} x {h} is {mp:.1f} megapixels, above the limit of "
                                         f"{max_megapixels:g}; downscale it first")
                yield im
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: the image is too large to decode safely ({exc}); downscale it first") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image file PIL can read (corrupt or unknown format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{path}: the image file is damaged or truncated ({exc})") from exc


def load_image(path: str | Path, max_megapixels: float = MAX_MEGAPIXELS) -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 RGB, upright. Raises :class:`ImageLoadError`."""
    path = Path(path)
    with _opened(path, max_megapixels) as im:
        im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im)
        return _to_rgb8(im, path)


def image_size(path: str | Path, max_megapixels: float = MAX_MEGAPIXELS) -> tuple[int, int]:
    """(height, width) of the upright image, as ``load_image(path).shape[:2]``, from the file's header
    alone (no decoding: a fit from landmark files needs no pixels). Raises :class:`ImageLoadError`
    for a file ``load_image`` rejects before decoding; damage past the header goes unnoticed, and so
    does an EXIF orientation that a PNG stores after its pixel data."""
    path = Path(path)
    with _opened(path, max_megapixels) as im:
        w, h = im.size
        # PIL looks for a PNG's eXIf chunk after the pixel data by decoding them; PNG puts it before.
        exif = Image.Exif() if im.format == "PNG" and "exif" not in im.info else im.getexif()
        # EXIF orientations 5-8 turn the image by 90 degrees (exif_transpose swaps the sides)
        turned = exif.get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    return (w, h) if turned else (h, w)


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly inside ``directory`` (by suffix), sorted by name."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resize_longest(image: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Downscale so the longer side is at most ``max_side`` -> (image, (sx, sy) scales <= 1).

    A point maps back to the original as ``x = (x_small + 0.5) / sx - 0.5`` (pixel centres aligned).
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, (1.0, 1.0)
    size = (max(1, int(math.floor(w * scale + 0.5))), max(1, int(math.floor(h * scale + 0.5))))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return small, (size[0] / w, size[1] / h)
