"""Euler angles <-> rotation matrices, in the convention of ``docs/conventions.md``.

``angles = [yaw, pitch, roll]`` in radians, ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.
"""

import torch


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """angles: (..., 3) [yaw, pitch, roll], radians -> rotation matrices (..., 3, 3)."""
    if angles.shape[-1] != 3:
        raise ValueError(f"Euler angles must have a last dimension of 3 [yaw, pitch, roll], got {tuple(angles.shape)}")
    yaw, pitch, roll = angles.unbind(-1)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    # Rz(roll) @ Ry(yaw) @ Rx(pitch), expanded
    r00 = cr * cy
    r01 = cr * sy * sp - sr * cp
    r02 = cr * sy * cp + sr * sp
    r10 = sr * cy
    r11 = sr * sy * sp + cr * cp
    r12 = sr * sy * cp - cr * sp
    r20 = -sy
    r21 = cy * sp
    r22 = cy * cp
    rows = torch.stack([r00, r01, r02, r10, r11, r12, r20, r21, r22], dim=-1)
    return rows.reshape(angles.shape[:-1] + (3, 3))


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """matrix: (..., 3, 3) rotation -> (..., 3) [yaw, pitch, roll] in radians.

    yaw is in [-pi/2, pi/2]; at gimbal lock (|yaw| = pi/2) roll is set to 0.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (..., 3, 3), got {tuple(matrix.shape)}")
    r20 = matrix[..., 2, 0].clamp(-1.0, 1.0)
    yaw = torch.asin(-r20)
    cy = torch.sqrt((matrix[..., 0, 0] ** 2 + matrix[..., 1, 0] ** 2).clamp_min(0))
    regular = cy > 1e-6
    pitch = torch.where(regular, torch.atan2(matrix[..., 2, 1], matrix[..., 2, 2]),
                        torch.atan2(-matrix[..., 1, 2], matrix[..., 1, 1]))
    roll = torch.where(regular, torch.atan2(matrix[..., 1, 0], matrix[..., 0, 0]), torch.zeros_like(yaw))
    return torch.stack([yaw, pitch, roll], dim=-1)
