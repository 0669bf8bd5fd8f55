"""Procedural image layers around a rendered face: backgrounds, hair, neck and clothing.

Every layer is drawn for one image from a ``torch.Generator``, in linear RGB in [0, 1]. Hair, neck and
clothing are placed in a 2D frame anchored to the projected head: ``a`` (mm, towards the image right of
the head) and ``b`` (mm, towards the top of the head), and shaded with the face's own SH lighting through
simple proxy normals (an ellipsoid for hair, a cylinder for the neck, a rounded torso), so that they are
lit like the face.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from morph3d.model import shade
from morph3d.render import smooth_noise, srgb_to_linear

BACKGROUND_KINDS = ("noise", "gradient", "texture")
# Layer labels of ``WorldBatch.regions``.
REGION_BACKGROUND, REGION_CLOTHING, REGION_NECK, REGION_HAIR, REGION_FACE = 0, 1, 2, 3, 4
REGION_NAMES = ("background", "clothing", "neck", "hair", "face")

# Hair colours in sRGB: black, dark brown, brown, auburn, blond, grey.
_HAIR_SRGB = ((0.06, 0.05, 0.05), (0.20, 0.12, 0.07), (0.38, 0.24, 0.14), (0.50, 0.20, 0.09),
              (0.78, 0.64, 0.40), (0.62, 0.61, 0.60))


def _u(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0, shape=()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _colour(gen: torch.Generator) -> torch.Tensor:
    """A random linear RGB colour (3,), drawn uniformly in sRGB."""
    return srgb_to_linear(_u(gen, shape=(3,))).float()


def pixel_coords(size: tuple[int, int], dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pixel-centre coordinates, each (H, W)."""
    h, w = size
    y, x = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return x, y


# ---- backgrounds ---------------------------------------------------------------------------
def _gradient(gen, size):
    h, w = size
    x, y = pixel_coords(size)
    x, y = x / max(w - 1, 1) - 0.5, y / max(h - 1, 1) - 0.5
    c0, c1 = _colour(gen), _colour(gen)
    if bool(_u(gen) < 0.7):
        angle = float(_u(gen, 0, 2 * math.pi))
        t = (x * math.cos(angle) + y * math.sin(angle)) / math.sqrt(0.5) + 0.5
    else:  # radial, off-centre
        cx, cy = _u(gen, -0.4, 0.4, (2,)).tolist()
        t = ((x - cx) ** 2 + (y - cy) ** 2).sqrt() / float(_u(gen, 0.4, 1.0))
    t = t.clamp(0, 1)[None]
    return c0[:, None, None] * (1 - t) + c1[:, None, None] * t


def _texture(gen, size):
    h, w = size
    x, y = pixel_coords(size)
    x, y = x / max(h, w), y / max(h, w)
    c0, c1 = _colour(gen), _colour(gen)
    kind = int(torch.randint(0, 4, (), generator=gen))
    angle = float(_u(gen, 0, math.pi))
    freq = float(_u(gen, 3, 14))
    xr = x * math.cos(angle) + y * math.sin(angle)
    yr = -x * math.sin(angle) + y * math.cos(angle)
    if kind == 0:  # stripes with soft edges
        t = torch.sigmoid(6 * torch.sin(2 * math.pi * freq * xr + float(_u(gen, 0, 6.3))))
    elif kind == 1:  # checks
        t = (torch.sin(2 * math.pi * freq * xr) * torch.sin(2 * math.pi * freq * yr) > 0).float()
    elif kind == 2:  # plaid: two sets of stripes
        t = 0.5 * (torch.sin(2 * math.pi * freq * xr) > 0.3).float() + 0.5 * (torch.sin(
            2 * math.pi * float(_u(gen, 2, 10)) * yr) > 0.3).float()
    else:  # blobs: random ellipses over the base colour
        t = torch.zeros(h, w)
        for _ in range(int(torch.randint(4, 12, (), generator=gen))):
            cx, cy = _u(gen, 0, 1, (2,)).tolist()
            rx, ry = _u(gen, 0.04, 0.25, (2,)).tolist()
            t = torch.maximum(t, (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1).float() * float(_u(gen, 0.3, 1)))
    t = t[None]
    img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
    return img * (0.85 + 0.3 * smooth_noise(gen, 1, size)[0].float())


def background(gen: torch.Generator, size: tuple[int, int], kinds=BACKGROUND_KINDS) -> torch.Tensor:
    """One random background (3, H, W), linear RGB in [0, 1], of a kind drawn from ``kinds``."""
    kind = kinds[int(torch.randint(0, len(kinds), (), generator=gen))]
    if kind == "noise":
        img = smooth_noise(gen, 1, size)[0].float()
    elif kind == "gradient":
        img = _gradient(gen, size) * (0.9 + 0.2 * smooth_noise(gen, 1, size, octaves=(4, 8))[0].float())
    elif kind == "texture":
        img = _texture(gen, size)
    else:
        raise ValueError(f"unknown background kind '{kind}'; choose from {BACKGROUND_KINDS}")
    return img.clamp(0, 1)


# ---- frames anchored to the head -------------------------------------------------------------
@dataclass
class Frame:
    """Pixel grid coordinates in a 2D frame anchored to the head: a, b (H, W) mm along ``right`` and ``up``
    (2,) (unit image-space directions, x right, y down); ``mm_per_px`` is the frame's scale."""

    a: torch.Tensor
    b: torch.Tensor
    right: torch.Tensor
    up: torch.Tensor
    mm_per_px: float


def make_frame(size: tuple[int, int], origin: torch.Tensor, up: torch.Tensor, mm_per_px: float) -> Frame:
    """The frame with its origin at pixel ``origin`` (2,) and ``b`` growing along image direction ``up`` (2,)."""
    x, y = pixel_coords(size)
    up = up.float()
    right = torch.stack([-up[1], up[0]])
    dx, dy = x - float(origin[0]), y - float(origin[1])
    return Frame(a=(dx * right[0] + dy * right[1]) * mm_per_px, b=(dx * up[0] + dy * up[1]) * mm_per_px,
                 right=right, up=up, mm_per_px=float(mm_per_px))


def paint(canvas: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor, albedo: torch.Tensor,
          normals: torch.Tensor, frame: Frame, lighting: torch.Tensor, label: int) -> torch.Tensor:
    """Composite a lit layer over ``canvas`` (3, H, W); pixels mostly covered get ``label`` in ``labels``
    (H, W, changed in place). alpha (H, W), albedo (3, H, W), frame normals (H, W, 3), lighting (27,)."""
    colour = lit(albedo, normals, frame.right, frame.up, lighting, alpha > 1e-3).clamp(0, 1)
    labels[alpha > 0.5] = label
    return canvas * (1 - alpha) + colour * alpha


# ---- hair, neck, clothing --------------------------------------------------------------------
@dataclass
class HairStyle:
    """Hair behind the head (all lengths in mm in the head frame, ``b`` up from the head centre): an
    elliptic blob plus a hanging band down to ``bottom`` at the sides.

    present: drawn at all; colour: (3,) linear RGB albedo; width/height: semi-axes; lift: the blob
    centre's height; bottom: lowest ``b`` covered (long hair reaches the shoulders); wobble: (4, 2) cos/sin
    amplitudes of boundary harmonics 2..5; strands: angular frequency, phase and contrast of the streaks.
    """

    present: bool
    colour: torch.Tensor
    width: float
    height: float
    lift: float
    bottom: float
    wobble: torch.Tensor
    strands: tuple[float, float, float]


def sample_hair(gen: torch.Generator, probability: float) -> HairStyle:
    present = bool(_u(gen) < probability)
    base = torch.tensor(_HAIR_SRGB[int(torch.randint(0, len(_HAIR_SRGB), (), generator=gen))], dtype=torch.float64)
    colour = srgb_to_linear((base * _u(gen, 0.8, 1.2, (3,))).clamp(0, 1)).float()
    long = bool(_u(gen) < 0.4)
    return HairStyle(present=present, colour=colour, width=float(_u(gen, 88, 110)), height=float(_u(gen, 100, 125)),
                     lift=float(_u(gen, 5, 25)), bottom=float(_u(gen, -190, -90) if long else _u(gen, -50, 0)),
                     wobble=_u(gen, -0.06, 0.06, (4, 2)).float(),
                     strands=(float(_u(gen, 20, 70)), float(_u(gen, 0, 6.3)), float(_u(gen, 0.1, 0.35))))


def _soft(signed: torch.Tensor, px: float) -> torch.Tensor:
    """Coverage from a signed distance (positive inside, ``px`` units per pixel): a one-pixel linear ramp,
    exactly 0 and 1 away from the edge."""
    return (signed / max(px, 1e-9) + 0.5).clamp(0, 1)


def hair_layer(style: HairStyle, frame: Frame):
    """Hair coverage (H, W), albedo (3, H, W) and proxy normals (H, W, 3) in the head frame."""
    a, b, mm_per_px = frame.a, frame.b, frame.mm_per_px
    bc = b - style.lift
    phi = torch.atan2(bc, a)
    rho = ((a / style.width) ** 2 + (bc / style.height) ** 2).sqrt()
    k = torch.arange(2, 6, dtype=a.dtype)
    edge = 1 + (style.wobble[:, 0, None, None] * torch.cos(k[:, None, None] * phi)
                + style.wobble[:, 1, None, None] * torch.sin(k[:, None, None] * phi)).sum(0)
    blob = _soft((edge - rho) * min(style.width, style.height), mm_per_px)
    hang = (_soft(0.92 * style.width - a.abs(), mm_per_px) * _soft(b - style.bottom, mm_per_px)
            * _soft(style.lift - b, mm_per_px))
    alpha = torch.maximum(blob, hang) if style.present else torch.zeros_like(a)
    freq, phase, contrast = style.strands
    streak = 1 + contrast * torch.sin(freq * phi + phase + 4 * torch.sin(3 * rho))
    albedo = style.colour[:, None, None] * streak[None]
    nx, ny = (a / style.width).clamp(-1, 1), (bc / style.height).clamp(-1, 1)
    nz = (1 - nx ** 2 - ny ** 2).clamp_min(0.05).sqrt()
    return alpha, albedo, torch.stack([nx, ny, nz], -1)


@dataclass
class ClothingStyle:
    """A torso below the neck (mm in the body frame). colours: (2, 3) linear RGB; pattern 0 solid,
    1 stripes, 2 checks; neckline: ``b`` of the collar; shoulders: half-width; neck: neck half-width."""

    colours: torch.Tensor
    pattern: int
    frequency: float
    angle: float
    neckline: float
    shoulders: float
    neck: float
    v_depth: float


def sample_clothing(gen: torch.Generator) -> ClothingStyle:
    return ClothingStyle(colours=torch.stack([_colour(gen), _colour(gen)]),
                         pattern=int(torch.randint(0, 3, (), generator=gen)), frequency=float(_u(gen, 0.02, 0.08)),
                         angle=float(_u(gen, 0, math.pi)), neckline=float(_u(gen, -165, -135)),
                         shoulders=float(_u(gen, 165, 225)), neck=float(_u(gen, 46, 58)),
                         v_depth=float(_u(gen, 0, 70)))


def neck_layer(style: ClothingStyle, frame: Frame):
    """Neck coverage (H, W) and cylinder normals (H, W, 3) in the body frame: from under the jaw down
    into the collar."""
    a, b, mm_per_px = frame.a, frame.b, frame.mm_per_px
    half = style.neck * (1 + 0.25 * ((style.neckline - b) / 100).clamp(0, 1))
    alpha = _soft(half - a.abs(), mm_per_px) * _soft(-40 - b, mm_per_px)
    nx = (a / half).clamp(-1, 1)
    return alpha, torch.stack([nx, torch.zeros_like(nx), (1 - nx ** 2).clamp_min(0.05).sqrt()], -1)


def clothing_layer(style: ClothingStyle, frame: Frame):
    """Clothing coverage (H, W), albedo (3, H, W) and torso normals (H, W, 3) in the body frame."""
    a, b, mm_per_px = frame.a, frame.b, frame.mm_per_px
    depth = 70.0  # the shoulders reach full width this far below the collar
    x = a / style.shoulders
    y = ((style.neckline - b) / depth).clamp_min(0)  # 0 at the collar, grows downwards
    shoulder = style.shoulders * (1 - (1 - y.clamp(0, 1)) ** 2 * 0.6)
    alpha = _soft(shoulder - a.abs(), mm_per_px) * _soft(style.neckline - b, mm_per_px)
    collar = style.neckline - style.v_depth * (1 - a.abs() / style.neck).clamp(0, 1)
    cut = (a.abs() < style.neck) & (b > collar)
    alpha = alpha * (~cut).to(a.dtype)
    t = torch.zeros_like(a)
    u = a * math.cos(style.angle) + b * math.sin(style.angle)
    if style.pattern == 1:
        t = (torch.sin(2 * math.pi * style.frequency * u) > 0).to(a.dtype)
    elif style.pattern == 2:
        v = -a * math.sin(style.angle) + b * math.cos(style.angle)
        t = ((torch.sin(2 * math.pi * style.frequency * u) * torch.sin(2 * math.pi * style.frequency * v)) > 0
             ).to(a.dtype)
    albedo = style.colours[0][:, None, None] * (1 - t) + style.colours[1][:, None, None] * t
    nx = x.clamp(-1, 1)
    ny = (0.6 * (1 - y.clamp(0, 1))).clamp(0, 1)
    nz = (1 - nx ** 2 - ny ** 2).clamp_min(0.05).sqrt()
    return alpha, albedo, torch.stack([nx, ny, nz], -1)


def to_camera_normals(normals: torch.Tensor, right: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Frame normals (..., 3) (along a, along b, towards the camera) -> unit camera-frame normals (..., 3).

    right, up: (2,) image-space unit directions (x right, y down) of the frame's ``a`` and ``b`` axes.
    """
    right, up = right.to(normals.dtype), up.to(normals.dtype)
    basis = torch.stack([torch.stack([right[0], -right[1], right.new_zeros(())]),
                         torch.stack([up[0], -up[1], up.new_zeros(())]),
                         torch.tensor([0.0, 0.0, 1.0], dtype=normals.dtype)])  # rows: a, b, z in the camera frame
    return F.normalize(normals @ basis, dim=-1)


def lit(albedo: torch.Tensor, normals: torch.Tensor, right: torch.Tensor, up: torch.Tensor,
        lighting: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Shade a layer: albedo (3, H, W), frame normals (H, W, 3) with the frame's image axes ``right`` and
    ``up`` (2,), SH ``lighting`` (27,), at the pixels ``where`` (H, W) bool -> (3, H, W), zero elsewhere."""
    out = torch.zeros_like(albedo)
    if where.any():
        a = albedo.permute(1, 2, 0)[where][None]
        n = to_camera_normals(normals[where], right, up)[None]
        out.permute(1, 2, 0)[where] = shade(a, n, lighting[None].to(a))[0]
    return out


__all__ = ["BACKGROUND_KINDS", "ClothingStyle", "Frame", "HairStyle", "REGION_BACKGROUND", "REGION_CLOTHING",
           "REGION_FACE", "REGION_HAIR", "REGION_NAMES", "REGION_NECK", "background", "clothing_layer",
           "hair_layer", "lit", "make_frame", "neck_layer", "paint", "pixel_coords", "sample_clothing", "sample_hair",
           "to_camera_normals"]
