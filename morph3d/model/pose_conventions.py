"""Head-pose conventions of other tools <-> morph3d's Euler angles (``docs/conventions.md``).

morph3d: ``angles = [yaw, pitch, roll]`` radians, ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` acting on column
vectors of the model frame (x right, y up, z to the viewer). Every tool below rotates a model in that
same frame (the Basel Face Model's) into a y-up view frame and flips y only when it forms image rows,
so its rotation *matrix* is morph3d's; only the angle parametrisations differ:

- AFLW2000-3D / 300W-LP ``Pose_Para`` (7 values: pitch, yaw, roll radians, tx, ty, tz, scale), as in
  3DDFA's code (face3d's ``angle2matrix_3ddfa``): ``R = Rx'(pitch) @ Ry'(yaw) @ Rz'(roll)`` with the
  *transposed* elementary matrices, i.e. ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)`` in morph3d's, the
  product in the opposite order. Their yaw > 0 turns the face to the image left, pitch > 0 looks up
  (roughly the negatives of morph3d's, exactly so only for a single angle). Projection: scaled
  orthographic, ``u = s (R X)_x + tx``, ``v = H + 1 - (s (R X)_y + ty)``, MATLAB 1-based pixels, X in the
  BFM's micrometres.
- Deep3DFaceRecon (``angles`` = coefficients 224:227 of its 257 vector, ``compute_rotation``):
  ``[x, y, z]`` = ``[pitch, yaw, roll]`` with ``R = Rz(z) @ Ry(y) @ Rx(x)``: morph3d's angles reordered.
- 3DDFA v2 (62 parameters: a 3 x 4 camera matrix ``P`` row-major, 40 shape, 10 expression, after
  de-normalisation): ``R`` has rows ``P[0, :3] / |.|``, ``P[1, :3] / |.|`` and their cross product
  (its ``P2sRt``); its ``calc_pose`` reports ``[x, y, z] = [asin R[2, 0], atan2(R[2, 1], R[2, 2]),
  atan2(R[1, 0], R[0, 0])]`` labelled (yaw, pitch, roll), i.e. ``[-yaw, pitch, roll]`` in morph3d's terms.

All functions take and return torch tensors with any leading batch dimensions.
"""
from __future__ import annotations

import torch

from .camera import ORTHOGRAPHIC, Camera
from .params import DEFAULT_DISTANCE_MM
from .pose import euler_to_matrix, matrix_to_euler

POSE_PARA_UNIT_MM = 1e-3  # 300W-LP's model (BFM 2009) is in micrometres


def _check(x: torch.Tensor, n: int, what: str) -> None:
    if x.shape[-1] != n:
        raise ValueError(f"{what} must have a last dimension of {n}, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinite values")


# ---- AFLW2000-3D / 300W-LP Pose_Para ----------------------------------------------------------
def pose_para_matrix(pose_para: torch.Tensor) -> torch.Tensor:
    """Pose_Para angles (..., 3) [pitch, yaw, roll] radians (or the full (..., 7)) -> R (..., 3, 3)."""
    a = pose_para[..., :3]
    _check(a, 3, "Pose_Para angles")
    pitch, yaw, roll = a.unbind(-1)
    # Rx(-p) Ry(-y) Rz(-r) = (Rz(r) Ry(y) Rx(p))^T
    return euler_to_matrix(torch.stack([yaw, pitch, roll], -1)).transpose(-1, -2)


def pose_para_to_angles(pose_para: torch.Tensor) -> torch.Tensor:
    """Pose_Para angles (..., 3) [pitch, yaw, roll] (or the full (..., 7)) -> morph3d (..., 3) [yaw, pitch, roll]."""
    return matrix_to_euler(pose_para_matrix(pose_para))


def angles_to_pose_para(angles: torch.Tensor) -> torch.Tensor:
    """morph3d angles (..., 3) [yaw, pitch, roll] radians -> Pose_Para angles (..., 3) [pitch, yaw, roll]."""
    _check(angles, 3, "angles")
    yaw, pitch, roll = matrix_to_euler(euler_to_matrix(angles).transpose(-1, -2)).unbind(-1)
    return torch.stack([pitch, yaw, roll], -1)


def pose_para_to_camera(pose_para: torch.Tensor, image_size: tuple[int, int],
                        unit_mm: float = POSE_PARA_UNIT_MM) -> tuple[torch.Tensor, torch.Tensor, Camera]:
    """A full Pose_Para (B, 7) or (7,) -> morph3d rotation (B, 3), translation (B, 3) mm, orthographic Camera.

    image_size: (height, width) of the image the Pose_Para belongs to. unit_mm: the model unit in mm
    (BFM micrometres). The translation is relative to *their* model's origin: a model whose vertices were
    re-centred by ``o`` mm (``X' = X - o``) needs ``translation + R o``. tz is unused by the orthographic
    projection and dropped (morph3d puts the face ``DEFAULT_DISTANCE_MM`` in front of the camera).
    """
    p = pose_para.reshape(-1, 7) if pose_para.ndim == 1 else pose_para
    _check(p, 7, "Pose_Para")
    if (p[:, 6] <= 0).any():
        raise ValueError("Pose_Para scale (the 7th value) must be positive")
    h, w = (int(v) for v in image_size)
    scale = p[:, 6] / unit_mm  # px per mm
    # 1-based u = s X + tx, v = H + 1 - (s Y + ty)  ->  0-based u = cx + s' (X + t), v = cy - s' (Y + t)
    tx = (p[:, 3] - (w + 1) / 2.0) / scale
    ty = (p[:, 4] - (h + 1) / 2.0) / scale
    t = torch.stack([tx, ty, torch.full_like(tx, -DEFAULT_DISTANCE_MM)], -1)
    cam = Camera.create(p.shape[0], (h, w), scale, ORTHOGRAPHIC, dtype=p.dtype)
    return pose_para_to_angles(p[:, :3]), t, cam


def camera_to_pose_para(rotation: torch.Tensor, translation: torch.Tensor, camera: Camera,
                        unit_mm: float = POSE_PARA_UNIT_MM) -> torch.Tensor:
    """Inverse of :func:`pose_para_to_camera`: (B, 3) angles, (B, 3) mm, orthographic Camera -> (B, 7), tz = 0."""
    if camera.kind != ORTHOGRAPHIC:
        raise ValueError("Pose_Para describes a scaled-orthographic projection; pass an orthographic camera "
                         "(a perspective fit has no exact Pose_Para)")
    h, w = camera.image_size
    s = camera.focal.to(translation.dtype)
    cx, cy = camera.principal.to(translation.dtype).unbind(-1)
    # the principal point may differ from the image centre: fold it into tx, ty
    tx = s * translation[:, 0] + cx + 1.0
    ty = s * translation[:, 1] + (h + 1) - (cy + 1.0)
    return torch.cat([angles_to_pose_para(rotation), torch.stack([tx, ty, torch.zeros_like(tx), s * unit_mm], -1)],
                     -1)


# ---- Deep3DFaceRecon --------------------------------------------------------------------------
def deep3d_to_angles(angles: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon angles (..., 3) [x, y, z] = [pitch, yaw, roll] -> morph3d (..., 3) [yaw, pitch, roll]."""
    _check(angles, 3, "Deep3DFaceRecon angles")
    return angles[..., [1, 0, 2]]


def angles_to_deep3d(angles: torch.Tensor) -> torch.Tensor:
    """morph3d angles (..., 3) [yaw, pitch, roll] -> Deep3DFaceRecon (..., 3) [pitch, yaw, roll]."""
    _check(angles, 3, "angles")
    return angles[..., [1, 0, 2]]


# ---- 3DDFA v2 ---------------------------------------------------------------------------------
def tddfa_rotation(param: torch.Tensor) -> torch.Tensor:
    """3DDFA v2 parameters (..., 62) (or their first 12, the camera matrix) -> R (..., 3, 3), as its P2sRt.

    The rows are normalised but, as in 3DDFA, not re-orthogonalised.
    """
    if param.shape[-1] < 12:
        raise ValueError(f"3DDFA parameters need at least the 12 camera-matrix values, got shape {tuple(param.shape)}")
    _check(param[..., :12], 12, "3DDFA camera matrix")
    p = param[..., :12].reshape(param.shape[:-1] + (3, 4))
    r1 = p[..., 0, :3] / p[..., 0, :3].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    r2 = p[..., 1, :3] / p[..., 1, :3].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([r1, r2, torch.linalg.cross(r1, r2)], -2)


def tddfa_to_angles(param: torch.Tensor) -> torch.Tensor:
    """3DDFA v2 parameters (..., 62) or (..., 12) -> morph3d angles (..., 3) [yaw, pitch, roll] radians."""
    return matrix_to_euler(tddfa_rotation(param))


def tddfa_camera_matrix(angles: torch.Tensor, scale: torch.Tensor | float,
                        offset: torch.Tensor | None = None) -> torch.Tensor:
    """morph3d angles (..., 3) -> 3DDFA v2's first 12 parameters ``s [R | 0] + [0 | offset]`` (..., 12).

    scale: px per model unit; offset (..., 3): their translation column (default 0).
    """
    _check(angles, 3, "angles")
    r = euler_to_matrix(angles) * torch.as_tensor(scale, dtype=angles.dtype)[..., None, None]
    t = torch.zeros(angles.shape[:-1] + (3,), dtype=angles.dtype) if offset is None else offset
    return torch.cat([r, t[..., None]], -1).reshape(angles.shape[:-1] + (12,))


def tddfa_pose_to_angles(pose: torch.Tensor) -> torch.Tensor:
    """3DDFA v2 ``calc_pose`` angles (..., 3) [x, y, z] ("yaw, pitch, roll"), radians -> morph3d angles.

    Exact away from |yaw| = 90 degrees (3DDFA clamps there).
    """
    _check(pose, 3, "3DDFA pose")
    return torch.stack([-pose[..., 0], pose[..., 1], pose[..., 2]], -1)


def angles_to_tddfa_pose(angles: torch.Tensor) -> torch.Tensor:
    """morph3d angles (..., 3) -> 3DDFA v2 ``calc_pose`` angles [x, y, z] (radians; it prints degrees)."""
    _check(angles, 3, "angles")
    return torch.stack([-angles[..., 0], angles[..., 1], angles[..., 2]], -1)


__all__ = ["POSE_PARA_UNIT_MM", "angles_to_deep3d", "angles_to_pose_para", "angles_to_tddfa_pose",
           "camera_to_pose_para", "deep3d_to_angles", "pose_para_matrix", "pose_para_to_angles",
           "pose_para_to_camera", "tddfa_camera_matrix", "tddfa_pose_to_angles", "tddfa_rotation",
           "tddfa_to_angles"]
