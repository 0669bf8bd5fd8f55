"""Face parameters: one container for every coefficient of a rendered face.

Conventions (``docs/conventions.md``): rotation is Euler ``[yaw, pitch, roll]`` in radians,
translation in mm in the camera frame, lighting is 27 SH radiance coefficients. Flat vectors of these
(the 257-dim Deep3DFaceRecon layout among them) are ``layout.py``'s.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write
from .camera import Camera
from .lighting import NUM_LIGHTING, ambient_lighting

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
        if path.suffix == ".json":
            return atomic_write(path, json.dumps(self.to_dict(), indent=1))
        if path.suffix != ".npz":
            raise ValueError(f"{path}: parameters are saved as .json or .npz")
        d = self.to_dict()
        cam = d.pop("camera")
        return atomic_write(path, lambda tmp: np.savez(
            tmp, **{k: np.asarray(v) for k, v in d.items()}, camera_kind=cam["kind"],
            camera_image_size=np.asarray(cam["image_size"]), camera_focal=np.asarray(cam["focal"]),
            camera_principal=np.asarray(cam["principal"])))

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
