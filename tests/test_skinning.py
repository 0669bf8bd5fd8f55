"""Linear blend skinning (FLAME articulation): rest pose, pure joint rotations, correctives, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import model_fixtures as mf
from morph3d.model.loaders import load_canonical
from morph3d.model.skinning import lbs

JAW, NECK = 2, 1


@pytest.fixture(scope="module")
def flame(tmp_path_factory):
    path = mf.write_flame(tmp_path_factory.mktemp("flame"))["path"]
    m = load_canonical(path, num_identity=10, num_expression=5)
    t = {k: torch.from_numpy(np.asarray(m[k])) for k in
         ("vertices_mean", "identity_basis", "flame_joint_regressor", "flame_parents",
          "flame_skinning_weights", "flame_pose_basis")}
    return t


def shaped(flame, batch=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    coeff = torch.randn(batch, flame["identity_basis"].shape[2], generator=g, dtype=torch.float64)
    v = flame["vertices_mean"].double() + torch.einsum("nck,bk->bnc", flame["identity_basis"].double(), coeff)
    return v.to(dtype)


def call(flame, v, rot, pose_basis=None):
    return lbs(v, rot, flame["flame_joint_regressor"], flame["flame_parents"], flame["flame_skinning_weights"],
               flame["flame_pose_basis"] if pose_basis is None else pose_basis)


def reference_lbs(v, rot, reg, parents, w, pose_basis):
    """Textbook LBS with 4x4 transforms G_j G_rest_j^-1 (float64 numpy), for one mesh."""
    j = len(parents)
    joints = reg @ v
    r_local = Rotation.from_rotvec(rot).as_matrix()
    feat = (r_local[1:] - np.eye(3)).reshape(-1)
    vp = v + np.einsum("ncp,p->nc", pose_basis, feat)
    g = [None] * j
    for i in range(j):
        local = np.eye(4)
        local[:3, :3] = r_local[i]
        local[:3, 3] = joints[i] - (joints[parents[i]] if parents[i] >= 0 else 0)
        g[i] = local if parents[i] < 0 else g[parents[i]] @ local
    t = []
    for i in range(j):
        rest = np.eye(4)
        rest[:3, 3] = -joints[i]
        t.append(g[i] @ rest)
    t = np.stack(t)  # (J, 4, 4)
    blended = np.einsum("nj,jab->nab", w, t)
    homo = np.concatenate([vp, np.ones((v.shape[0], 1))], axis=1)
    return np.einsum("nab,nb->na", blended, homo)[:, :3], np.stack([gi[:3, 3] for gi in g])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_pose_is_the_rest_mesh_exactly(flame, dtype):
    v = shaped(flame, dtype=dtype)
    posed, joints = call(flame, v, torch.zeros(2, 5, 3, dtype=dtype))
    assert posed.dtype == dtype
    assert torch.equal(posed, v)
    assert torch.equal(joints, torch.einsum("jn,bnc->bjc", flame["flame_joint_regressor"].to(dtype), v))


def test_pure_jaw_rotation_rotates_jaw_vertices_about_the_jaw_joint(flame):
    v = shaped(flame, batch=1)
    rot = torch.zeros(1, 5, 3, dtype=torch.float64)
    rot[0, JAW] = torch.tensor([0.3, 0.05, -0.02], dtype=torch.float64)
    zero_basis = torch.zeros_like(flame["flame_pose_basis"])
    posed, joints = call(flame, v, rot, zero_basis)
    w_jaw = flame["flame_skinning_weights"][:, JAW].double()
    rest_joints = torch.einsum("jn,nc->jc", flame["flame_joint_regressor"].double(), v[0])
    r = torch.from_numpy(Rotation.from_rotvec(rot[0, JAW].numpy()).as_matrix())
    rotated = (v[0] - rest_joints[JAW]) @ r.T + rest_joints[JAW]
    expected = w_jaw[:, None] * rotated + (1 - w_jaw[:, None]) * v[0]
    torch.testing.assert_close(posed[0], expected, rtol=0, atol=1e-9)
    untouched = w_jaw == 0
    assert untouched.sum() > 20 and (w_jaw == 1).sum() > 5 and ((w_jaw > 0) & (w_jaw < 1)).sum() > 5
    assert torch.equal(posed[0, untouched], v[0, untouched])
    moved = (posed[0] - v[0]).norm(dim=1)
    assert torch.all(moved[w_jaw == 1] > 0.1)
    torch.testing.assert_close(joints[0], rest_joints, rtol=0, atol=1e-12)  # a joint's own rotation keeps it


def test_matches_textbook_lbs_for_a_full_pose(flame):
    """Neck, jaw, eyes and global rotations together, with pose correctives, against 4x4 transforms."""
    v = shaped(flame, batch=2)
    g = torch.Generator().manual_seed(3)
    rot = torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 0.3
    posed, joints = call(flame, v, rot)
    args = [np.asarray(flame[k], dtype=np.float64) for k in
            ("flame_joint_regressor", "flame_parents", "flame_skinning_weights", "flame_pose_basis")]
    args[1] = args[1].astype(int)
    for b in range(2):
        ref_v, ref_j = reference_lbs(v[b].numpy(), rot[b].numpy(), *args)
        np.testing.assert_allclose(posed[b].numpy(), ref_v, rtol=0, atol=1e-9)
        np.testing.assert_allclose(joints[b].numpy(), ref_j, rtol=0, atol=1e-9)
    # a neck rotation carries the jaw and eye joints with it
    rot = torch.zeros(1, 5, 3, dtype=torch.float64)
    rot[0, NECK] = torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64)
    _, joints = call(flame, v[:1], rot)
    rest = torch.einsum("jn,nc->jc", flame["flame_joint_regressor"].double(), v[0])
    r = torch.from_numpy(Rotation.from_rotvec(rot[0, NECK].numpy()).as_matrix())
    torch.testing.assert_close(joints[0, 2:], (rest[2:] - rest[NECK]) @ r.T + rest[NECK], rtol=0, atol=1e-9)


def test_pose_correctives_follow_the_row_major_feature_layout(flame):
    v = shaped(flame, batch=1)
    n = v.shape[1]
    weights = torch.zeros(n, 5, dtype=torch.float64)
    weights[:, 0] = 1  # everything on the (unrotated) root: only correctives move vertices
    basis = torch.zeros(n, 3, 36, dtype=torch.float64)
    basis[:, 1, 9 * (JAW - 1) + 3 * 1 + 2] = 1.0  # y offset driven by (R_jaw - I)[1, 2]
    rot = torch.zeros(1, 5, 3, dtype=torch.float64)
    rot[0, JAW, 0] = 0.5  # rotation about x: R[1, 2] = -sin(0.5)
    posed, _ = lbs(v, rot, flame["flame_joint_regressor"], flame["flame_parents"], weights, basis)
    expected = v.clone()
    expected[..., 1] -= np.sin(0.5)
    torch.testing.assert_close(posed, expected, rtol=0, atol=1e-12)


def test_gradients_reach_joint_rotations(flame):
    v = shaped(flame, batch=1)[:, :, :]
    rot = (torch.randn(1, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 0.2)
    rot.requires_grad_(True)
    posed, joints = call(flame, v, rot)
    (posed.square().sum() + joints.sum()).backward()
    assert torch.all(rot.grad.abs().sum(-1) > 0)  # every joint influences the result
    small = {k: t for k, t in flame.items()}
    keep = torch.arange(0, v.shape[1], 7)
    small["flame_skinning_weights"] = flame["flame_skinning_weights"][keep].double()
    small["flame_pose_basis"] = flame["flame_pose_basis"][keep].double()
    reg = flame["flame_joint_regressor"][:, keep].double()
    small["flame_joint_regressor"] = reg / reg.sum(1, keepdim=True).clamp_min(1e-9)
    vs = v[:, keep].clone().requires_grad_(True)
    r = rot.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: call(small, a, b), (vs, r))


def test_rejects_inconsistent_inputs(flame):
    v = shaped(flame, batch=1)
    with pytest.raises(ValueError, match="joint_rotations must be"):
        call(flame, v, torch.zeros(1, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="pose_basis must be"):
        call(flame, v, torch.zeros(1, 5, 3, dtype=torch.float64), torch.zeros(3, 3, 36))
    with pytest.raises(ValueError, match="parents must start with -1"):
        lbs(v, torch.zeros(1, 5, 3), flame["flame_joint_regressor"], [0, 0, 1, 1, 1],
            flame["flame_skinning_weights"], flame["flame_pose_basis"])
