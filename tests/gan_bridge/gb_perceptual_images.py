"""Deterministic image pairs for the LPIPS golden test (and the script that produced its numbers).

Built from ``skimage.data.astronaut()`` (public domain) with NumPy only, no random numbers, so the same
pixels come out everywhere. Pairs are float64 (H, W, 3) in [-1, 1].
"""
import numpy as np


def _astronaut() -> np.ndarray:
    from skimage.data import astronaut
    return astronaut().astype(np.float64) / 127.5 - 1.0  # (512, 512, 3)


def _blur(img: np.ndarray) -> np.ndarray:
    """2x2 box average, repeated back to full size."""
    h, w, _ = img.shape
    small = img.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return small.repeat(2, axis=0).repeat(2, axis=1)


def _ripple(img: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[:img.shape[0], :img.shape[1]]
    return np.clip(img + 0.15 * np.sin(2 * np.pi * (x / 7.0 + y / 11.0))[..., None], -1.0, 1.0)


def golden_batches():
    """Two batches ``(name, a, b)``, a and b float64 (2, H, W, 3): 64x64 (blur, ripple) and 100x124
    (contrast, 3 px shift)."""
    img = _astronaut()
    small = img.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    crop = img[40:140, 180:304]
    return [
        ("64px", np.stack([small, small]), np.stack([_blur(small), _ripple(small)])),
        ("100x124px", np.stack([crop, crop]), np.stack([0.7 * crop + 0.1, np.roll(crop, 3, axis=1)])),
    ]
