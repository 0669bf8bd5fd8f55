"""Face parameters: one container for every coefficient of a rendered face.

Conventions (``docs/conventions.md``): rotation is Euler ``[yaw, pitch, roll]`` in radians,
translation in mm in the camera frame, lighting is 27 SH radiance coefficients.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .camera import Camera
from .lighting import NUM_LIGHTING, NUM_SH, BAND_FACTORS, BAND_OF_COEFFICIENT, ambient_lighting

DEFAULT_DISTANCE_MM = 500.0
_TENSOR_FIELDS = ("identity", "expression", "texture", "rotation", "translation", "lighting")


@dataclass
class FaceParams:
    """All parameters of a batch of B faces.

    identity: (B, Ki) standard deviations of the identity basis.
    expression: (B, Ke) PCA coefficients or blendshape weights.
    texture: (B, Ka) standard deviations of the albedo basis.
    rotation: (B, 3) Euler [yaw, pitch, roll], radians.
    translation: (B, 3) mm, camera frame.
    lighting: (B, 27) SH radiance coefficients.
    camera: the cameras that view the faces.
    articulation: optional (B, J, 3) axis-angle joint rotations, radians (FLAME: global, neck, jaw, eyes).
    """

    identity: torch.Tensor
    expression: torch.Tensor
    texture: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    lighting: torch.Tensor
    camera: Camera
    articulation: torch.Tensor | None = None

    def __post_init__(self):
        b = self.identity.shape[0] if self.identity.ndim == 2 else -1
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[0] != b:
                raise ValueError(f"FaceParams.{name} must be a (B, K) tensor with the same B as identity; "
                                 f"got {getattr(t, 'shape', type(t))}")
        for name, k in (("rotation", 3), ("translation", 3), ("lighting", NUM_LIGHTING)):
            if getattr(self, name).shape[1] != k:
                raise ValueError(f"FaceParams.{name} must be (B, {k}), got {tuple(getattr(self, name).shape)}")
        if self.camera.batch_size != b:
            raise ValueError(f"camera batch {self.camera.batch_size} does not match parameter batch {b}")

    @property
    def batch_size(self) -> int:
        return self.identity.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The learnable tensors by name (camera excluded)."""
        out = {name: getattr(self, name) for name in _TENSOR_FIELDS}
        if self.articulation is not None:
            out["articulation"] = self.articulation
        return out

    def map(self, fn) -> "FaceParams":
        """Apply ``fn`` to every tensor (camera tensors included)."""
        cam = replace(self.camera, focal=fn(self.camera.focal), principal=fn(self.camera.principal))
        art = None if self.articulation is None else fn(self.articulation)
        return FaceParams(**{n: fn(getattr(self, n)) for n in _TENSOR_FIELDS}, camera=cam, articulation=art)

    def detach(self) -> "FaceParams":
        return self.map(lambda t: t.detach())

    def clone(self) -> "FaceParams":
        return self.map(lambda t: t.clone())

    def to(self, device=None, dtype=None) -> "FaceParams":
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def __getitem__(self, index) -> "FaceParams":
        """Select faces of the batch (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self.map(lambda t: t[index])

    @classmethod
    def cat(cls, items: list["FaceParams"]) -> "FaceParams":
        first = items[0]
        kw = {n: torch.cat([getattr(p, n) for p in items]) for n in _TENSOR_FIELDS}
        cam = Camera(torch.cat([p.camera.focal for p in items]), torch.cat([p.camera.principal for p in items]),
                     first.camera.image_size, first.camera.kind)
        art = None if first.articulation is None else torch.cat([p.articulation for p in items])
        return cls(**kw, camera=cam, articulation=art)

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready nested lists; rotation also given as ``pose_deg`` [yaw, pitch, roll] in degrees."""
        d = {name: t.detach().cpu().double().tolist() for name, t in self.tensors().items()}
        d["pose_deg"] = (self.rotation.detach().cpu().double() * 180.0 / math.pi).tolist()
        d["camera"] = {"kind": self.camera.kind, "image_size": list(self.camera.image_size),
                       "focal": self.camera.focal.detach().cpu().double().tolist(),
                       "principal": self.camera.principal.detach().cpu().double().tolist()}
        return d

    @classmethod
    def from_dict(cls, d: dict, device=None, dtype=torch.float32) -> "FaceParams":
        try:
            t = {n: torch.tensor(d[n], device=device, dtype=dtype) for n in _TENSOR_FIELDS}
            c = d["camera"]
            cam = Camera(torch.tensor(c["focal"], device=device, dtype=dtype),
                         torch.tensor(c["principal"], device=device, dtype=dtype),
                         tuple(c["image_size"]), c["kind"])
        except KeyError as exc:
            raise ValueError(f"parameter record is missing {exc}") from exc
        art = d.get("articulation")
        art = None if art is None else torch.tensor(art, device=device, dtype=dtype)
        return cls(**t, camera=cam, articulation=art)

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` or ``.npz`` (chosen by the suffix), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial" + path.suffix)
        if path.suffix == ".json":
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        elif path.suffix == ".npz":
            d = self.to_dict()
            cam = d.pop("camera")
            np.savez(tmp, **{k: np.asarray(v) for k, v in d.items()}, camera_kind=cam["kind"],
                     camera_image_size=np.asarray(cam["image_size"]), camera_focal=np.asarray(cam["focal"]),
                     camera_principal=np.asarray(cam["principal"]))
        else:
            raise ValueError(f"{path}: parameters are saved as .json or .npz")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device=None, dtype=torch.float32) -> "FaceParams":
        path = Path(path)
        if path.suffix == ".json":
            d = json.loads(path.read_text())
            d = d.get("params", d)
        elif path.suffix == ".npz":
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
            d["camera"] = {"kind": str(d.pop("camera_kind")), "image_size": d.pop("camera_image_size").tolist(),
                           "focal": d.pop("camera_focal"), "principal": d.pop("camera_principal")}
            d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        else:
            raise ValueError(f"{path}: parameters are read from .json or .npz")
        return cls.from_dict(d, device=device, dtype=dtype)


def default_params(identity_dim: int, expression_dim: int, albedo_dim: int, batch: int = 1,
                   image_size: tuple[int, int] = (224, 224), distance_mm: float = DEFAULT_DISTANCE_MM,
                   num_joints: int = 0, device=None, dtype=torch.float32) -> FaceParams:
    """Neutral frontal faces ``distance_mm`` in front of a default camera under ambient light."""
    z = lambda k: torch.zeros(batch, k, device=device, dtype=dtype)  # noqa: E731
    translation = z(3)
    translation[:, 2] = -distance_mm
    art = torch.zeros(batch, num_joints, 3, device=device, dtype=dtype) if num_joints else None
    return FaceParams(identity=z(identity_dim), expression=z(expression_dim), texture=z(albedo_dim),
                      rotation=z(3), translation=translation,
                      lighting=ambient_lighting(batch, device=device, dtype=dtype),
                      camera=Camera.create(batch, image_size, device=device, dtype=dtype), articulation=art)


# ---- Deep3DFaceRecon / StyleRig / PIE 257-dim layout ---------------------------------------
DEEP3D_LAYOUT = (("identity", 80), ("expression", 64), ("texture", 80), ("angles", 3), ("lighting", 27),
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


def _check_bfm(source_format: str) -> None:
    if not source_format.startswith("bfm"):
        raise ValueError(f"the 257-dim layout is defined for Basel Face Models; this model is '{source_format}'")


def from_deep3d(coeffs: torch.Tensor, source_format: str, dims: tuple[int, int, int]) -> FaceParams:
    """Deep3DFaceRecon coefficients (B, 257) -> FaceParams for a BFM model.

    dims: the model's (identity_dim, expression_dim, albedo_dim); components beyond 80/64/80 are zero.
    The camera is Deep3DFaceRecon's: 224 x 224, focal 1015 px, camera 1 m from the model origin.
    """
    _check_bfm(source_format)
    if coeffs.ndim != 2 or coeffs.shape[1] != DEEP3D_DIM:
        raise ValueError(f"expected (B, {DEEP3D_DIM}) Deep3DFaceRecon coefficients, got {tuple(coeffs.shape)}")
    parts, i = {}, 0
    for name, n in DEEP3D_LAYOUT:
        parts[name] = coeffs[:, i:i + n]
        i += n
    b, dev, dt = coeffs.shape[0], coeffs.device, coeffs.dtype

    def fit(t, k):
        if k >= t.shape[1]:
            return torch.cat([t, t.new_zeros(b, k - t.shape[1])], dim=1)
        if torch.any(t[:, k:] != 0):
            raise ValueError(f"the model has only {k} components but the coefficients use more")
        return t[:, :k]

    pitch, yaw, roll = parts["angles"].unbind(-1)
    gamma = parts["lighting"].reshape(b, 3, NUM_SH).clone()
    gamma[:, :, 0] = gamma[:, :, 0] + DEEP3D_AMBIENT
    lighting = (gamma * _deep3d_light_scale(dev, dt)).reshape(b, NUM_LIGHTING)
    t = parts["translation"]
    translation = torch.stack([t[:, 0], t[:, 1], t[:, 2] - DEEP3D_CAMERA_DISTANCE], dim=-1) * DEEP3D_UNIT_MM
    cam = Camera(torch.full((b,), DEEP3D_FOCAL, device=dev, dtype=dt),
                 torch.tensor(DEEP3D_PRINCIPAL, device=dev, dtype=dt).expand(b, 2).clone(),
                 (DEEP3D_IMAGE_SIZE, DEEP3D_IMAGE_SIZE))
    return FaceParams(identity=fit(parts["identity"], dims[0]), expression=fit(parts["expression"], dims[1]),
                      texture=fit(parts["texture"], dims[2]), rotation=torch.stack([yaw, pitch, roll], -1),
                      translation=translation, lighting=lighting, camera=cam)


def to_deep3d(params: FaceParams, source_format: str) -> torch.Tensor:
    """FaceParams of a BFM model -> Deep3DFaceRecon coefficients (B, 257).

    Raises if a coefficient beyond 80 id / 64 exp / 80 tex is non-zero (the layout cannot hold it).
    The camera is not part of the layout; render with Deep3DFaceRecon's camera to reproduce their images.
    """
    _check_bfm(source_format)
    b = params.batch_size

    def fit(t, k, name):
        if t.shape[1] > k and torch.any(t[:, k:] != 0):
            raise ValueError(f"{name} uses {t.shape[1]} components; the 257-dim layout holds {k}")
        t = t[:, :k]
        return torch.cat([t, t.new_zeros(b, k - t.shape[1])], dim=1) if t.shape[1] < k else t

    yaw, pitch, roll = params.rotation.unbind(-1)
    light = params.lighting.reshape(b, 3, NUM_SH) / _deep3d_light_scale(params.lighting.device, params.lighting.dtype)
    light = light.clone()
    light[:, :, 0] = light[:, :, 0] - DEEP3D_AMBIENT
    t = params.translation / DEEP3D_UNIT_MM
    t = torch.stack([t[:, 0], t[:, 1], t[:, 2] + DEEP3D_CAMERA_DISTANCE], dim=-1)
    return torch.cat([fit(params.identity, 80, "identity"), fit(params.expression, 64, "expression"),
                      fit(params.texture, 80, "texture"), torch.stack([pitch, yaw, roll], -1),
                      light.reshape(b, NUM_LIGHTING), t], dim=1)
