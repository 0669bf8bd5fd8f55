"""The 3D morphable model: coefficients -> vertices, albedo, normals, shaded colours, landmarks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from . import canonical
from .geometry import barycentric_points, vertex_normals
from .lighting import shade
from .params import FaceParams, default_params
from .pose import euler_to_matrix


@dataclass
class ModelOutput:
    """What :meth:`MorphableModel.forward` returns for B faces of N vertices.

    vertices: (B, N, 3) mm, model frame (shape before pose).
    vertices_cam: (B, N, 3) mm, camera frame.
    normals_cam: (B, N, 3) unit vertex normals, camera frame.
    albedo: (B, N, 3) linear RGB reflectance.
    landmarks_cam: (B, 68, 3) mm, camera frame (undefined landmarks are NaN).
    landmarks_2d: (B, 68, 2) pixels in the camera's image.
    lighting: (B, 27) the SH lighting the faces are shaded with.
    colors: (B, N, 3) shaded linear RGB (albedo x SH irradiance / pi), computed on first use: the
        renderer shades per pixel and never needs it.
    """

    vertices: torch.Tensor
    vertices_cam: torch.Tensor
    normals_cam: torch.Tensor
    albedo: torch.Tensor
    landmarks_cam: torch.Tensor
    landmarks_2d: torch.Tensor
    lighting: torch.Tensor

    @property
    def colors(self) -> torch.Tensor:
        return shade(self.albedo, self.normals_cam, self.lighting)


class MorphableModel(torch.nn.Module):
    """A linear 3DMM (optionally with FLAME articulation) on torch buffers.

    Built from a canonical model dict (``morph3d.model.canonical``); move it with ``.to(device, dtype)``.
    All methods are batched and differentiable.
    """

    def __init__(self, data: Mapping[str, object], source: str = "<model>"):
        super().__init__()
        data = canonical.validate(data, source)
        self.name = data["name"]
        self.source_format = data["source_format"]
        self.expression_kind = data["expression_kind"]
        self.expression_names = [str(s) for s in data["expression_names"]]
        self.region_names = [str(s) for s in data["region_names"]]
        self.license = data.get("license", "")
        n = data["vertices_mean"].shape[0]
        f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        i64 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
        self.register_buffer("vertices_mean", f32(data["vertices_mean"]))
        self.register_buffer("triangles", i64(data["triangles"]))
        # bases as (3N, K) matrices so a batch is one matmul
        self.register_buffer("identity_basis", f32(data["identity_basis"]).reshape(3 * n, -1))
        self.register_buffer("expression_basis", f32(data["expression_basis"]).reshape(3 * n, -1))
        self.register_buffer("albedo_mean", f32(data["albedo_mean"]))
        self.register_buffer("albedo_basis", f32(data["albedo_basis"]).reshape(3 * n, -1))
        lf = data["landmark_faces"]
        self.register_buffer("landmark_valid", torch.from_numpy(lf >= 0))
        self.register_buffer("landmark_faces", i64(np.maximum(lf, 0)))
        self.register_buffer("landmark_bary", f32(data["landmark_bary"]))
        self.register_buffer("region_labels", i64(data["region_labels"]))
        for key in ("contour_right", "contour_left"):
            self.register_buffer(key, i64(data.get(key, np.zeros(0, dtype=np.int64))))
        if "uv_coords" in data:
            self.register_buffer("uv_coords", f32(data["uv_coords"]))
            self.register_buffer("uv_triangles", i64(data["uv_triangles"]))
        else:
            self.uv_coords = self.uv_triangles = None
        self.has_articulation = "flame_parents" in data
        if self.has_articulation:
            self.register_buffer("joint_regressor", f32(data["flame_joint_regressor"]))
            self.register_buffer("joint_parents", i64(data["flame_parents"]))
            self.register_buffer("skinning_weights", f32(data["flame_skinning_weights"]))
            self.register_buffer("pose_basis", f32(data["flame_pose_basis"]))

    # ---- sizes ---------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.vertices_mean.shape[0]

    @property
    def num_triangles(self) -> int:
        return self.triangles.shape[0]

    @property
    def identity_dim(self) -> int:
        return self.identity_basis.shape[1]

    @property
    def expression_dim(self) -> int:
        return self.expression_basis.shape[1]

    @property
    def albedo_dim(self) -> int:
        return self.albedo_basis.shape[1]

    @property
    def num_joints(self) -> int:
        return self.joint_parents.shape[0] if self.has_articulation else 0

    @property
    def num_landmarks(self) -> int:
        return int(self.landmark_valid.sum())

    def summary(self) -> dict:
        """Sizes and names, as ``morph3d info`` prints them."""
        return {
            "name": self.name, "format": self.source_format, "num_vertices": self.num_vertices,
            "num_triangles": self.num_triangles, "identity_dim": self.identity_dim,
            "expression_dim": self.expression_dim, "expression_kind": self.expression_kind,
            "albedo_dim": self.albedo_dim, "landmarks": self.num_landmarks, "joints": self.num_joints,
            "has_uv": self.uv_coords is not None, "regions": self.region_names,
            "expression_names": self.expression_names if self.expression_kind == "blendshapes" else [],
        }

    # ---- parameters ----------------------------------------------------------------------
    def default_params(self, batch: int = 1, image_size=(224, 224), **kw) -> FaceParams:
        """Neutral frontal faces on this model's device and dtype (see ``params.default_params``)."""
        ref = self.vertices_mean
        return default_params(self.identity_dim, self.expression_dim, self.albedo_dim, batch, image_size,
                              num_joints=self.num_joints, device=ref.device, dtype=ref.dtype, **kw)

    def expression_from_names(self, weights: Mapping[str, float], batch: int = 1) -> torch.Tensor:
        """Blendshape weights by name, e.g. ``{"jaw_open": 0.6, "smile_left": 1}`` -> (batch, Ke)."""
        out = torch.zeros(batch, self.expression_dim, device=self.vertices_mean.device,
                          dtype=self.vertices_mean.dtype)
        for name, w in weights.items():
            if name not in self.expression_names:
                raise KeyError(f"model '{self.name}' has no expression named {name!r}; "
                               f"available: {', '.join(self.expression_names)}")
            out[:, self.expression_names.index(name)] = float(w)
        return out

    # ---- geometry ------------------------------------------------------------------------
    def _check_coeffs(self, coeffs: torch.Tensor, dim: int, what: str) -> None:
        if coeffs.ndim != 2 or coeffs.shape[1] != dim:
            raise ValueError(f"{what} coefficients must be (B, {dim}) for model '{self.name}', "
                             f"got {tuple(coeffs.shape)}")
        if not torch.isfinite(coeffs).all():
            raise ValueError(f"{what} coefficients contain NaN or infinite values")

    def shape(self, identity: torch.Tensor, expression: torch.Tensor,
              articulation: torch.Tensor | None = None) -> torch.Tensor:
        """identity (B, Ki), expression (B, Ke)[, articulation (B, J, 3)] -> vertices (B, N, 3), mm, model frame."""
        self._check_coeffs(identity, self.identity_dim, "identity")
        self._check_coeffs(expression, self.expression_dim, "expression")
        if identity.shape[0] != expression.shape[0]:
            raise ValueError(f"identity batch {identity.shape[0]} != expression batch {expression.shape[0]}")
        b = identity.shape[0]
        offsets = identity @ self.identity_basis.T + expression @ self.expression_basis.T
        vertices = self.vertices_mean + offsets.reshape(b, self.num_vertices, 3)
        if self.has_articulation and articulation is not None:
            from .skinning import lbs
            vertices, _ = lbs(vertices, articulation, self.joint_regressor, self.joint_parents,
                              self.skinning_weights, self.pose_basis)
        return vertices

    def albedo(self, texture: torch.Tensor) -> torch.Tensor:
        """texture (B, Ka) -> per-vertex linear RGB albedo (B, N, 3)."""
        self._check_coeffs(texture, self.albedo_dim, "texture")
        offsets = (texture @ self.albedo_basis.T).reshape(texture.shape[0], self.num_vertices, 3)
        return self.albedo_mean + offsets

    def vertex_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> unit vertex normals (B, N, 3)."""
        return vertex_normals(vertices, self.triangles)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 68 iBUG landmarks of posed or unposed vertices (B, N, 3) -> (B, 68, 3); undefined ones are NaN."""
        pts = barycentric_points(vertices, self.triangles, self.landmark_faces, self.landmark_bary)
        return torch.where(self.landmark_valid[None, :, None], pts, torch.full_like(pts, float("nan")))

    def forward(self, params: FaceParams) -> ModelOutput:
        """Evaluate the model for ``params``; everything differentiable."""
        vertices = self.shape(params.identity, params.expression, params.articulation)
        rot = euler_to_matrix(params.rotation)
        vertices_cam = vertices @ rot.transpose(1, 2) + params.translation[:, None, :]
        normals_cam = self.vertex_normals(vertices_cam)
        albedo = self.albedo(params.texture)
        landmarks_cam = self.landmarks(vertices_cam)
        return ModelOutput(vertices, vertices_cam, normals_cam, albedo, landmarks_cam,
                           params.camera.project(landmarks_cam), params.lighting)


def load_model(source: str = "open", **options) -> MorphableModel:
    """Load a morphable model: ``"open"`` (the embedded default) or a path in any supported format.

    Options are passed to the format's loader (see ``morph3d.model.loaders``).
    """
    from .loaders import load_canonical
    return MorphableModel(load_canonical(source, **options), str(source))
