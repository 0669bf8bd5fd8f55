"""Flat parameter vectors: one layout object shared by regressors, rigs and VAEs.

A :class:`ParamLayout` is an ordered list of named blocks, each filling one field of
:class:`~morph3d.model.FaceParams` (``identity``, ``expression``, ``texture``, ``rotation``,
``translation``, ``lighting`` or ``articulation``). ``flatten(params) -> (B, D)`` and
``unflatten((B, D)) -> FaceParams`` convert; a block may hold fewer or more coefficients than the
model (zero-padded either way; dropping a non-zero coefficient is an error) and may carry a codec
that converts units or frames. ``ParamLayout.for_model(model)`` is the plain layout of a model (its
sizes, morph3d's units); :func:`deep3d_layout` is the 257-dim Deep3DFaceRecon / StyleRig / PIE
vector (80 id, 64 exp, 80 tex, 3 angles, 27 SH, 3 translation) in their units and frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .camera import Camera
from .lighting import BAND_FACTORS, BAND_OF_COEFFICIENT, NUM_LIGHTING, NUM_SH
from .params import DEFAULT_DISTANCE_MM, FaceParams, default_params

FIELDS = ("identity", "expression", "texture", "rotation", "translation", "lighting", "articulation")
COEFFICIENT_FIELDS = ("identity", "expression", "texture")
DEFAULT_BLOCKS = ("identity", "expression", "texture", "rotation", "translation", "lighting")


@dataclass(frozen=True)
class Block:
    """One block of a layout: ``size`` entries that fill ``FaceParams.<field>``.

    label: the block's name in the layout (default: the field). encode: optional (B, K) field -> (B, size)
    conversion; decode: its inverse. Without a codec, coefficient fields are zero-padded or truncated
    and the other fields must match in size.
    """

    field: str
    size: int
    label: str | None = None
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self):
        if self.field not in FIELDS:
            raise ValueError(f"unknown FaceParams field {self.field!r}; choose from {FIELDS}")
        if self.size <= 0:
            raise ValueError(f"block {self.field!r} needs a positive size, got {self.size}")
        if self.label is None:
            object.__setattr__(self, "label", self.field)


def _fit_width(t: torch.Tensor, k: int, message: str) -> torch.Tensor:
    """(B, n) -> (B, k): zero-padded, or truncated when the dropped columns are all zero."""
    n = t.shape[1]
    if n > k and torch.any(t[:, k:] != 0):
        raise ValueError(message)
    return torch.cat([t, t.new_zeros(t.shape[0], k - n)], dim=1) if n < k else t[:, :k]


class ParamLayout:
    """Named blocks of a flat (B, D) parameter vector (see the module docstring).

    blocks: the :class:`Block` s in order. dims: the model's width of each field it pads to on
    :meth:`unflatten` (``identity``, ``expression``, ``texture``; ``articulation`` as joints x 3);
    fields without a width take their block's size.
    """

    def __init__(self, blocks: Sequence[Block], dims: dict[str, int] | None = None, name: str = "custom"):
        self.blocks = tuple(blocks)
        if not self.blocks:
            raise ValueError("a parameter layout needs at least one block")
        labels = [b.label for b in self.blocks]
        fields = [b.field for b in self.blocks]
        if len(set(labels)) != len(labels) or len(set(fields)) != len(fields):
            raise ValueError(f"blocks must name distinct fields once each, got {fields}")
        self.dims = dict(dims or {})
        self.name = name
        self.slices, i = {}, 0
        for b in self.blocks:
            self.slices[b.label] = slice(i, i + b.size)
            i += b.size
        self.dim = i

    def __repr__(self) -> str:
        inner = ", ".join(f"{b.label}={b.size}" for b in self.blocks)
        return f"ParamLayout({self.name}: {inner}; D={self.dim})"

    @classmethod
    def for_model(cls, model, blocks: Sequence[str | tuple[str, int]] = DEFAULT_BLOCKS) -> "ParamLayout":
        """The plain layout of ``model``: each block a field in morph3d's units, its size the model's width
        unless given as ``(field, size)`` (e.g. ``("identity", 80)`` keeps the leading 80 components)."""
        dims = model_dims(model)
        out = []
        for spec in blocks:
            field, size = (spec, None) if isinstance(spec, str) else spec
            if field not in FIELDS:
                raise ValueError(f"unknown FaceParams field {field!r}; choose from {FIELDS}")
            size = dims[field] if size is None else int(size)
            if size == 0:
                continue  # the model has none of these (e.g. no albedo basis, no joints)
            out.append(Block(field, size))
        return cls(out, dims, name=getattr(model, "name", "model"))

    def split(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) -> {label: (B, size)} views."""
        self._check(vectors)
        return {label: vectors[:, s] for label, s in self.slices.items()}

    def _check(self, vectors: torch.Tensor) -> None:
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected (B, {self.dim}) parameter vectors for layout {self.name!r}, "
                             f"got {tuple(getattr(vectors, 'shape', ()))}")

    def flatten(self, params: FaceParams) -> torch.Tensor:
        """FaceParams -> (B, D); raises if a block cannot hold a non-zero coefficient."""
        parts = []
        for b in self.blocks:
            t = getattr(params, b.field)
            if t is None:
                raise ValueError(f"the parameters have no {b.field}, which layout {self.name!r} holds")
            if b.field == "articulation":
                t = t.reshape(t.shape[0], -1)
            if b.encode is not None:
                t = b.encode(t)
            else:
                t = _fit_width(t, b.size, f"{b.field} uses {t.shape[1]} components; the {self.dim}-dim layout "
                                          f"holds {b.size}")
            parts.append(t)
        return torch.cat(parts, dim=1)

    def unflatten(self, vectors: torch.Tensor, base: FaceParams | None = None,
                  camera: Camera | None = None) -> FaceParams:
        """(B, D) -> FaceParams. Fields the layout lacks come from ``base`` (default: neutral faces
        ``DEFAULT_DISTANCE_MM`` in front of the camera, ambient light); the camera is ``camera``, else
        ``base.camera``, else :meth:`Camera.create`'s default for 224 x 224 images."""
        self._check(vectors)
        b, dev, dt = vectors.shape[0], vectors.device, vectors.dtype
        if base is None:
            dims = {f: self.dims.get(f, self._block_size(f)) for f in ("identity", "expression", "texture",
                                                                      "articulation")}
            base = default_params(dims["identity"], dims["expression"], dims["texture"], batch=b,
                                  distance_mm=DEFAULT_DISTANCE_MM, num_joints=dims["articulation"] // 3,
                                  device=dev, dtype=dt)
        elif base.batch_size != b:
            raise ValueError(f"base parameters have batch {base.batch_size}, the vectors {b}")
        fields = {f: getattr(base, f) for f in FIELDS}
        for blk in self.blocks:
            t = vectors[:, self.slices[blk.label]]
            if blk.decode is not None:
                t = blk.decode(t)
            elif blk.field in COEFFICIENT_FIELDS:
                width = self.dims.get(blk.field, fields[blk.field].shape[1])
                t = _fit_width(t, width, f"the model has only {width} {blk.field} components but the "
                                         f"coefficients use more")
            if blk.field == "articulation":
                t = t.reshape(b, -1, 3)
            fields[blk.field] = t
        return FaceParams(**fields, camera=camera if camera is not None else base.camera)

    def _block_size(self, field: str) -> int:
        return next((b.size for b in self.blocks if b.field == field), 0)


def model_dims(model) -> dict[str, int]:
    """The width of each FaceParams field for ``model`` (articulation: joints x 3)."""
    return {"identity": model.identity_dim, "expression": model.expression_dim, "texture": model.albedo_dim,
            "rotation": 3, "translation": 3, "lighting": NUM_LIGHTING, "articulation": 3 * model.num_joints}


# ---- Deep3DFaceRecon / StyleRig / PIE 257-dim layout ---------------------------------------
DEEP3D_BLOCKS = (("identity", 80), ("expression", 64), ("texture", 80), ("angles", 3), ("lighting", 27),
                 ("translation", 3))
DEEP3D_DIM = 257
DEEP3D_IMAGE_SIZE = 224
DEEP3D_FOCAL = 1015.0
DEEP3D_PRINCIPAL = (112.0, 111.0)  # their x centre 112, and y 224 - 1 - 112 after their flip
DEEP3D_CAMERA_DISTANCE = 10.0  # in their units of 0.1 m
DEEP3D_UNIT_MM = 100.0
DEEP3D_AMBIENT = 0.8  # added to the first SH coefficient of each channel by Deep3DFaceRecon
# Deep3DFaceRecon's SH basis: signs per coefficient and band constants a_l relative to ours.
_DEEP3D_SIGNS = (1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0)
_DEEP3D_BAND = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))


def _deep3d_light_scale(device, dtype) -> torch.Tensor:
    s = [math.pi * _DEEP3D_SIGNS[k] * _DEEP3D_BAND[BAND_OF_COEFFICIENT[k]] / BAND_FACTORS[BAND_OF_COEFFICIENT[k]]
         for k in range(NUM_SH)]
    return torch.tensor(s, device=device, dtype=dtype)


def _angles_from_deep3d(a):  # their (pitch, yaw, roll) -> our (yaw, pitch, roll)
    pitch, yaw, roll = a.unbind(-1)
    return torch.stack([yaw, pitch, roll], -1)


def _angles_to_deep3d(r):
    yaw, pitch, roll = r.unbind(-1)
    return torch.stack([pitch, yaw, roll], -1)


def _lighting_from_deep3d(g):  # their gamma (ambient offset removed, their basis) -> our radiance
    b = g.shape[0]
    gamma = g.reshape(b, 3, NUM_SH).clone()
    gamma[:, :, 0] = gamma[:, :, 0] + DEEP3D_AMBIENT
    return (gamma * _deep3d_light_scale(g.device, g.dtype)).reshape(b, NUM_LIGHTING)


def _lighting_to_deep3d(light):
    b = light.shape[0]
    gamma = (light.reshape(b, 3, NUM_SH) / _deep3d_light_scale(light.device, light.dtype)).clone()
    gamma[:, :, 0] = gamma[:, :, 0] - DEEP3D_AMBIENT
    return gamma.reshape(b, NUM_LIGHTING)


def _translation_from_deep3d(t):  # 0.1 m, camera 10 units away -> mm, camera frame
    return torch.stack([t[:, 0], t[:, 1], t[:, 2] - DEEP3D_CAMERA_DISTANCE], dim=-1) * DEEP3D_UNIT_MM


def _translation_to_deep3d(t):
    t = t / DEEP3D_UNIT_MM
    return torch.stack([t[:, 0], t[:, 1], t[:, 2] + DEEP3D_CAMERA_DISTANCE], dim=-1)


def deep3d_layout(dims: tuple[int, int, int] = (80, 64, 80)) -> ParamLayout:
    """The 257-dim layout for a BFM model of (identity_dim, expression_dim, albedo_dim) components."""
    return ParamLayout([
        Block("identity", 80), Block("expression", 64), Block("texture", 80),
        Block("rotation", 3, "angles", _angles_to_deep3d, _angles_from_deep3d),
        Block("lighting", NUM_LIGHTING, "lighting", _lighting_to_deep3d, _lighting_from_deep3d),
        Block("translation", 3, "translation", _translation_to_deep3d, _translation_from_deep3d),
    ], dims={"identity": dims[0], "expression": dims[1], "texture": dims[2]}, name="deep3d")


def deep3d_camera(batch: int, device=None, dtype=torch.float32) -> Camera:
    """Deep3DFaceRecon's camera: 224 x 224, focal 1015 px, principal point (112, 111)."""
    return Camera(torch.full((batch,), DEEP3D_FOCAL, device=device, dtype=dtype),
                  torch.tensor(DEEP3D_PRINCIPAL, device=device, dtype=dtype).expand(batch, 2).clone(),
                  (DEEP3D_IMAGE_SIZE, DEEP3D_IMAGE_SIZE))


def _check_bfm(source_format: str) -> None:
    if not source_format.startswith("bfm"):
        raise ValueError(f"the 257-dim layout is defined for Basel Face Models; this model is '{source_format}'")


def from_deep3d(coeffs: torch.Tensor, source_format: str, dims: tuple[int, int, int]) -> FaceParams:
    """Deep3DFaceRecon coefficients (B, 257) -> FaceParams for a BFM model.

    dims: the model's (identity_dim, expression_dim, albedo_dim); components beyond 80/64/80 are zero.
    The camera is Deep3DFaceRecon's (:func:`deep3d_camera`): the camera 1 m from the model origin.
    """
    _check_bfm(source_format)
    if coeffs.ndim != 2 or coeffs.shape[1] != DEEP3D_DIM:
        raise ValueError(f"expected (B, {DEEP3D_DIM}) Deep3DFaceRecon coefficients, got {tuple(coeffs.shape)}")
    camera = deep3d_camera(coeffs.shape[0], coeffs.device, coeffs.dtype)
    return deep3d_layout(dims).unflatten(coeffs, camera=camera)


def to_deep3d(params: FaceParams, source_format: str) -> torch.Tensor:
    """FaceParams of a BFM model -> Deep3DFaceRecon coefficients (B, 257).

    Raises if a coefficient beyond 80 id / 64 exp / 80 tex is non-zero (the layout cannot hold it).
    The camera is not part of the layout; render with Deep3DFaceRecon's camera to reproduce their images.
    """
    _check_bfm(source_format)
    return deep3d_layout().flatten(params)


__all__ = ["Block", "DEEP3D_DIM", "DEFAULT_BLOCKS", "FIELDS", "ParamLayout", "deep3d_camera", "deep3d_layout",
           "from_deep3d", "model_dims", "to_deep3d"]
