"""Random faces from a morphable model's priors, rendered with every label.

Batch ``i`` of a generator is a pure function of ``(seed, i)``, so runs (and data-loader workers that
split the indices) are reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.camera import Camera
from ..model.lighting import NUM_SH, sh_basis
from ..model.morphable_model import MorphableModel
from ..model.params import FaceParams
from ..model.pose import euler_to_matrix
from .renderer import render_face
from .segmentation import region_segmentation
from .colour import srgb_to_linear


@dataclass
class SyntheticBatch:
    """One batch of B synthetic faces in H x W images (tensors on the model's device).

    params: the FaceParams that were rendered.
    image: (B, 3, H, W) linear RGB in [0, 1] (clamped), face over the background.
    background: (B, 3, H, W) linear RGB behind the face.
    mask: (B, 1, H, W) antialiased foreground coverage in [0, 1].
    depth: (B, 1, H, W) mm in front of the camera, 0 on the background.
    normals: (B, 3, H, W) unit camera-frame normals, 0 on the background.
    landmarks_2d: (B, 68, 2) pixels; landmark_visible: (B, 68) bool.
    segmentation: (B, 1, H, W) long model regions (0 = background, see ``region_class_names``).
    """

    params: FaceParams
    image: torch.Tensor
    background: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_visible: torch.Tensor
    segmentation: torch.Tensor


def _uniform(gen: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def smooth_noise(gen: torch.Generator, batch: int, size: tuple[int, int], octaves=(3, 6, 12, 24)) -> torch.Tensor:
    """Random smooth colour noise (batch, 3, H, W), linear RGB in [0, 1].

    Bilinearly upsampled random grids, each octave half the amplitude of the previous one, stretched to
    [0, 1] per image, mixed 65/35 with a random base colour, drawn in sRGB and converted to linear.
    """
    h, w = size
    out = torch.zeros(batch, 3, h, w, dtype=torch.float64)
    amp = 1.0
    for res in octaves:
        grid = torch.rand(batch, 3, res, res, generator=gen, dtype=torch.float64)
        out += amp * F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        amp *= 0.5
    lo = out.amin(dim=(1, 2, 3), keepdim=True)
    hi = out.amax(dim=(1, 2, 3), keepdim=True)
    base = torch.rand(batch, 3, 1, 1, generator=gen, dtype=torch.float64)
    return srgb_to_linear(0.65 * (out - lo) / (hi - lo).clamp_min(1e-9) + 0.35 * base)


class SyntheticFaces:
    """Batches of random faces rendered from ``model``'s priors, with all labels (:class:`SyntheticBatch`).

    Sampling (all uniform ranges are inclusive of their ends):
      identity ~ N(0, sigma^2), albedo ~ N(0, texture_sigma^2) (bases are in standard deviations);
      expression: blendshape weights, each active with probability ``expression_density`` and then
        ~ U(0, 1), or PCA coefficients ~ N(0, expression_sigma^2);
      pose: yaw, pitch, roll ~ U(-r, r) with ``pose_range_deg = (r_yaw, r_pitch, r_roll)``;
      camera: focal ~ U(focal_range) x the longer image side; the distance makes the mean face's height
        ``fill`` ~ U(fill_range) of the shorter image side, plus a shift of up to ``translation_jitter``
        of the image in x and y;
      lighting: ambient ~ U(ambient_range) plus a light of strength ~ U(light_range) from a random
        direction in the hemisphere facing the camera, each colour channel scaled by 1 +- colour_jitter;
      background: None (black), ``"noise"`` (:func:`smooth_noise`) or a (M, 3, H', W') tensor of linear
        RGB images, one drawn at random per face and resized to the image size.

    ``batch(i)`` is deterministic given ``seed``; iterating yields ``batch(0), batch(1), ...`` (forever, or
    ``num_batches`` of them); ``sample()`` returns the next batch of a private counter.
    """

    def __init__(self, model: MorphableModel, image_size: int | tuple[int, int] = 224, batch_size: int = 8,
                 seed: int = 0, pose_range_deg=(40.0, 20.0, 15.0), backgrounds=None, sigma: float = 1.0,
                 texture_sigma: float = 1.0, expression_sigma: float = 1.0, expression_density: float = 0.2,
                 focal_range=(1.2, 2.5), fill_range=(0.5, 0.75), translation_jitter: float = 0.05,
                 ambient_range=(0.5, 0.9), light_range=(0.2, 0.6), colour_jitter: float = 0.1,
                 num_batches: int | None = None, backend: str | None = None, antialias: bool = True):
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"image_size must be an int or (H, W) of at least 8 pixels, got {image_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(tuple(pose_range_deg)) != 3:
            raise ValueError("pose_range_deg must be (yaw, pitch, roll) in degrees")
        for name, rng in (("focal_range", focal_range), ("fill_range", fill_range),
                          ("ambient_range", ambient_range), ("light_range", light_range)):
            if len(tuple(rng)) != 2 or rng[0] > rng[1] or rng[0] < 0:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {rng}")
        if not 0.0 <= expression_density <= 1.0:
            raise ValueError(f"expression_density must lie in [0, 1], got {expression_density}")
        if isinstance(backgrounds, str) and backgrounds != "noise":
            raise ValueError(f"backgrounds must be None, 'noise' or a (M, 3, H, W) tensor, got {backgrounds!r}")
        if isinstance(backgrounds, torch.Tensor) and (backgrounds.ndim != 4 or backgrounds.shape[1] != 3
                                                      or backgrounds.shape[0] < 1):
            raise ValueError(f"background images must be (M, 3, H, W), got {tuple(backgrounds.shape)}")
        self.model = model
        self.image_size = size
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.pose_range = tuple(math.radians(float(r)) for r in pose_range_deg)
        self.backgrounds = backgrounds
        self.sigma, self.texture_sigma = float(sigma), float(texture_sigma)
        self.expression_sigma = float(expression_sigma)
        self.expression_density = float(expression_density)
        self.focal_range, self.fill_range = tuple(focal_range), tuple(fill_range)
        self.translation_jitter = float(translation_jitter)
        self.ambient_range, self.light_range = tuple(ambient_range), tuple(light_range)
        self.colour_jitter = float(colour_jitter)
        self.num_batches = num_batches
        self.backend, self.antialias = backend, antialias
        self._next = 0
        mean = model.vertices_mean.detach().double().cpu()
        self._centre = (mean.max(0).values + mean.min(0).values) / 2
        self._height = float(mean[:, 1].max() - mean[:, 1].min())

    def generator(self, index: int) -> torch.Generator:
        """The CPU random generator of batch ``index``."""
        return torch.Generator().manual_seed((self.seed * 0x9E3779B1 + int(index) * 0x85EBCA6B) % (2 ** 63))

    def sample_params(self, gen: torch.Generator, batch: int) -> FaceParams:
        """Random FaceParams (float32 on the model's device) drawn with ``gen``."""
        m = self.model
        h, w = self.image_size
        identity = torch.randn(batch, m.identity_dim, generator=gen, dtype=torch.float64) * self.sigma
        texture = torch.randn(batch, m.albedo_dim, generator=gen, dtype=torch.float64) * self.texture_sigma
        if m.expression_kind == "blendshapes":
            active = torch.rand(batch, m.expression_dim, generator=gen, dtype=torch.float64) < self.expression_density
            expression = torch.rand(batch, m.expression_dim, generator=gen, dtype=torch.float64) * active
        else:
            expression = torch.randn(batch, m.expression_dim, generator=gen, dtype=torch.float64)
            expression = expression * self.expression_sigma
        rotation = torch.stack([_uniform(gen, (batch,), -r, r) for r in self.pose_range], dim=-1)

        focal = _uniform(gen, (batch,), *self.focal_range) * max(h, w)
        fill = _uniform(gen, (batch,), *self.fill_range)
        distance = focal * self._height / (fill * min(h, w))
        shift = _uniform(gen, (batch, 2), -1.0, 1.0) * self.translation_jitter * min(h, w)  # pixels
        rot = euler_to_matrix(rotation)
        translation = -(rot @ self._centre) + torch.stack(
            [shift[:, 0] * distance / focal, -shift[:, 1] * distance / focal, -distance], dim=-1)

        ambient = _uniform(gen, (batch,), *self.ambient_range)
        strength = _uniform(gen, (batch,), *self.light_range)
        direction = torch.randn(batch, 3, generator=gen, dtype=torch.float64)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        direction[:, 2] = direction[:, 2].abs() + 0.5  # towards the camera (+z in the camera frame)
        direction = direction / direction.norm(dim=-1, keepdim=True)
        tint = 1.0 + _uniform(gen, (batch, 3), -self.colour_jitter, self.colour_jitter)
        light = math.pi * strength[:, None] * sh_basis(direction)  # a directional light, (B, 9)
        light[:, 0] += ambient * math.sqrt(4.0 * math.pi)
        lighting = (tint[:, :, None] * light[:, None, :]).reshape(batch, 3 * NUM_SH)

        ref = m.vertices_mean
        cam = Camera(focal.to(ref), torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=ref.dtype,
                                                 device=ref.device).expand(batch, 2).clone(), (h, w))
        art = None
        if m.num_joints:
            art = torch.zeros(batch, m.num_joints, 3, device=ref.device, dtype=ref.dtype)
        return FaceParams(identity=identity.to(ref), expression=expression.to(ref), texture=texture.to(ref),
                          rotation=rotation.to(ref), translation=translation.to(ref), lighting=lighting.to(ref),
                          camera=cam, articulation=art)

    def _backgrounds(self, gen: torch.Generator, batch: int) -> torch.Tensor | None:
        ref = self.model.vertices_mean
        if self.backgrounds is None:
            return None
        if isinstance(self.backgrounds, str):
            return smooth_noise(gen, batch, self.image_size).to(ref)
        pick = torch.randint(0, self.backgrounds.shape[0], (batch,), generator=gen)
        imgs = self.backgrounds[pick].to(device=ref.device, dtype=ref.dtype)
        if tuple(imgs.shape[2:]) != self.image_size:
            imgs = F.interpolate(imgs, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return imgs

    def batch(self, index: int, batch_size: int | None = None) -> SyntheticBatch:
        """Batch number ``index`` (deterministic given the seed)."""
        bsz = self.batch_size if batch_size is None else int(batch_size)
        gen = self.generator(index)
        params = self.sample_params(gen, bsz)
        background = self._backgrounds(gen, bsz)
        with torch.no_grad():
            r = render_face(self.model, params, outputs=("image", "mask", "depth", "normals", "landmarks"),
                            background=background, backend=self.backend, antialias=self.antialias)
            labels, _ = region_segmentation(self.model, r.rast)
        if background is None:
            background = torch.zeros_like(r.image)
        return SyntheticBatch(params=params, image=r.image.clamp(0.0, 1.0), background=background, mask=r.mask,
                              depth=r.depth, normals=r.normals, landmarks_2d=r.landmarks_2d,
                              landmark_visible=r.landmark_visible, segmentation=labels)

    def sample(self, batch_size: int | None = None) -> SyntheticBatch:
        """The next batch of this generator's own counter (starts at batch 0)."""
        out = self.batch(self._next, batch_size)
        self._next += 1
        return out

    def __iter__(self):
        index = 0
        while self.num_batches is None or index < self.num_batches:
            yield self.batch(index)
            index += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("this SyntheticFaces generator is endless (num_batches=None)")
        return int(self.num_batches)


__all__ = ["SyntheticBatch", "SyntheticFaces", "smooth_noise"]
