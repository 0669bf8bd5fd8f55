"""Linear blend skinning with pose correctives, as FLAME articulates neck, jaw and eyes."""
from __future__ import annotations

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix


def lbs(vertices: torch.Tensor, joint_rotations: torch.Tensor, joint_regressor: torch.Tensor,
        parents, skinning_weights: torch.Tensor, pose_basis: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a shaped mesh with linear blend skinning.

    vertices: (B, N, 3) float, mm, the shaped mesh (identity + expression) at rest pose.
    joint_rotations: (B, J, 3) axis-angle, radians, each joint's rotation relative to its parent
        (joint 0, the root, rotates about its own rest position).
    joint_regressor: (J, N), rest joints = joint_regressor @ vertices.
    parents: (J,) ints (tensor or sequence), -1 for the root, each joint listed after its parent.
    skinning_weights: (N, J), each row summing to 1.
    pose_basis: (N, 3, 9 (J - 1)), mm per unit of the pose feature: the row-major entries of
        ``R_j - I`` for joints 1..J-1, concatenated in joint order.
    Returns posed vertices (B, N, 3) and posed joints (B, J, 3), mm. Differentiable; works on any
    device and float dtype (the model arrays are moved to ``vertices``' device and dtype).

    Written as displacements from the rest pose, ``v' = v + p + sum_j w_j ((R_j - I)(v + p - J_j)
    + d_j)`` (``p`` the pose correctives, ``R_j`` the world rotation, ``d_j`` the joint's
    displacement), which equals the usual LBS for weights that sum to 1 and returns the rest mesh
    bit for bit at zero pose.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, N, 3), got {tuple(vertices.shape)}")
    b, n, _ = vertices.shape
    parents = [int(p) for p in (parents.tolist() if torch.is_tensor(parents) else parents)]
    j = len(parents)
    like = dict(dtype=vertices.dtype, device=vertices.device)
    joint_regressor = joint_regressor.to(**like)
    skinning_weights = skinning_weights.to(**like)
    pose_basis = pose_basis.to(**like)
    joint_rotations = joint_rotations.to(**like)
    if joint_rotations.shape != (b, j, 3):
        raise ValueError(f"joint_rotations must be (B={b}, J={j}, 3), got {tuple(joint_rotations.shape)}")
    if joint_regressor.shape != (j, n) or skinning_weights.shape != (n, j):
        raise ValueError(f"joint_regressor must be ({j}, {n}) and skinning_weights ({n}, {j}), got "
                         f"{tuple(joint_regressor.shape)} and {tuple(skinning_weights.shape)}")
    if pose_basis.shape != (n, 3, 9 * (j - 1)):
        raise ValueError(f"pose_basis must be ({n}, 3, {9 * (j - 1)}), got {tuple(pose_basis.shape)}")
    if parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(parents[1:], start=1)):
        raise ValueError(f"parents must start with -1 and list each joint after its parent, got {parents}")

    joints = torch.einsum("jn,bnc->bjc", joint_regressor, vertices)
    local = axis_angle_to_rotation_matrix(joint_rotations.reshape(-1, 3)).reshape(b, j, 3, 3)
    eye = torch.eye(3, **like)
    pose_feature = (local[:, 1:] - eye).reshape(b, -1)
    shaped = vertices + torch.einsum("ncp,bp->bnc", pose_basis, pose_feature)

    world = [local[:, 0]]
    disp = [torch.zeros(b, 3, **like)]
    for i in range(1, j):
        p = parents[i]
        world.append(world[p] @ local[:, i])
        bone = (joints[:, i] - joints[:, p]).unsqueeze(-1)
        disp.append(disp[p] + ((world[p] - eye) @ bone).squeeze(-1))
    rel = torch.stack(world, dim=1) - eye                    # (B, J, 3, 3) world rotation - I
    disp = torch.stack(disp, dim=1)                          # (B, J, 3)
    offset = disp - (rel @ joints.unsqueeze(-1)).squeeze(-1)  # (B, J, 3)

    blend_rel = torch.einsum("nj,bjkl->bnkl", skinning_weights, rel)
    blend_off = torch.einsum("nj,bjk->bnk", skinning_weights, offset)
    posed = shaped + (blend_rel @ shaped.unsqueeze(-1)).squeeze(-1) + blend_off
    return posed, joints + disp
