"""Pose conventions of 300W-LP / AFLW2000-3D, Deep3DFaceRecon and 3DDFA v2 <-> morph3d's angles.

``data/pose_conventions_reference.json`` holds outputs of the reference implementations themselves
(face3d's angle2matrix_3ddfa, 3DDFA_V2's P2sRt + matrix2angle, Deep3DFaceRecon's compute_rotation; the
file names the repositories and commits), so these tests check against their code, not a re-reading.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from morph3d.model import euler_to_matrix
from morph3d.model.camera import ORTHOGRAPHIC, project_points
from morph3d.model.pose_conventions import (angles_to_deep3d, angles_to_pose_para, angles_to_tddfa_pose,
                                            camera_to_pose_para, deep3d_to_angles, pose_para_matrix,
                                            pose_para_to_angles, pose_para_to_camera, tddfa_camera_matrix,
                                            tddfa_pose_to_angles, tddfa_rotation, tddfa_to_angles)

REFERENCE = json.loads((Path(__file__).parent / "data" / "pose_conventions_reference.json").read_text())["cases"]
D = torch.float64


def random_angles(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lim = torch.tensor([1.4, 1.2, 1.2], dtype=D)  # |yaw| < 80 degrees keeps away from gimbal lock
    return (torch.rand(n, 3, generator=g, dtype=D) * 2 - 1) * lim


@pytest.mark.parametrize("case", REFERENCE)
def test_matches_the_reference_implementations(case):
    a = torch.tensor(case["angles"], dtype=D)  # [pitch, yaw, roll] for 300W-LP, [x, y, z] for Deep3D
    r_3ddfa = torch.tensor(case["face3d_angle2matrix_3ddfa"], dtype=D)
    assert torch.allclose(pose_para_matrix(a), r_3ddfa, atol=1e-6)  # theirs is float32
    assert torch.allclose(euler_to_matrix(pose_para_to_angles(a)), r_3ddfa, atol=1e-6)
    # Deep3DFaceRecon returns the matrix for row vectors (pts @ rot): ours is its transpose
    r_d3d = torch.tensor(case["deep3d_compute_rotation"], dtype=D).T
    assert torch.allclose(euler_to_matrix(deep3d_to_angles(a)), r_d3d, atol=1e-12)
    # 3DDFA v2: the rotation of P = [s R | t] and the angles its calc_pose reports
    p = torch.tensor(case["tddfa_P"], dtype=D)
    assert torch.allclose(tddfa_rotation(p), r_3ddfa, atol=1e-6)
    ours = tddfa_to_angles(p)
    assert torch.allclose(tddfa_pose_to_angles(torch.tensor(case["tddfa_matrix2angle"], dtype=D)), ours, atol=1e-9)
    assert torch.allclose(ours, pose_para_to_angles(a), atol=1e-6)


def test_round_trips():
    a = random_angles()
    for forward, back in ((angles_to_pose_para, pose_para_to_angles), (angles_to_deep3d, deep3d_to_angles),
                          (angles_to_tddfa_pose, tddfa_pose_to_angles)):
        assert torch.allclose(back(forward(a)), a, atol=1e-10), forward.__name__
    assert torch.allclose(tddfa_to_angles(tddfa_camera_matrix(a, 1.7e-3, torch.ones(64, 3, dtype=D))), a, atol=1e-10)
    # the same rotation matrix, whichever way it is parametrised
    assert torch.allclose(pose_para_matrix(angles_to_pose_para(a)), euler_to_matrix(a), atol=1e-12)


def test_single_angles_mean_what_the_tools_say():
    """A Pose_Para yaw alone is minus morph3d's yaw (its yaw > 0 turns the face to the image left)."""
    for k, name in ((1, "yaw"), (0, "pitch"), (2, "roll")):
        pp = torch.zeros(3, dtype=D)
        pp[k] = 0.3
        ours = pose_para_to_angles(pp)
        expect = torch.zeros(3, dtype=D)
        expect[{"yaw": 0, "pitch": 1, "roll": 2}[name]] = -0.3
        assert torch.allclose(ours, expect, atol=1e-12), name


def test_pose_para_projection_matches_morph3d_camera():
    """Projecting with Pose_Para's formula (1-based, y flipped) = morph3d's orthographic camera + 1 px."""
    g = torch.Generator().manual_seed(1)
    h, w = 450, 400
    pp = torch.tensor([[0.2, -0.7, 0.1, 210.0, 190.0, 33.0, 9e-4], [-0.1, 0.4, -0.3, 180.0, 260.0, 0.0, 1.2e-3]],
                      dtype=D)
    x_um = torch.randn(2, 50, 3, generator=g, dtype=D) * 6e4  # BFM micrometres
    rp = torch.einsum("bij,bnj->bni", pose_para_matrix(pp), x_um) * pp[:, 6, None, None]
    u_theirs = rp[..., 0] + pp[:, 3:4]
    v_theirs = h + 1 - (rp[..., 1] + pp[:, 4:5])
    rot, t, cam = pose_para_to_camera(pp, (h, w))
    assert cam.kind == ORTHOGRAPHIC and cam.image_size == (h, w)
    x_cam = torch.einsum("bij,bnj->bni", euler_to_matrix(rot), x_um * 1e-3) + t[:, None]
    uv = project_points(x_cam, cam.focal, cam.principal, ORTHOGRAPHIC)
    assert torch.allclose(uv[..., 0] + 1, u_theirs, atol=1e-8)
    assert torch.allclose(uv[..., 1] + 1, v_theirs, atol=1e-8)
    back = camera_to_pose_para(rot, t, cam)
    assert torch.allclose(back[:, [0, 1, 2, 3, 4, 6]], pp[:, [0, 1, 2, 3, 4, 6]], atol=1e-9)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="last dimension of 3"):
        deep3d_to_angles(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        pose_para_to_angles(torch.tensor([float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match="scale .* must be positive"):
        pose_para_to_camera(torch.tensor([0.0, 0, 0, 1, 1, 0, 0]), (10, 10))
    with pytest.raises(ValueError, match="at least the 12"):
        tddfa_rotation(torch.zeros(8))
    _, t, cam = pose_para_to_camera(torch.tensor([0.0, 0, 0, 1, 1, 0, 1e-3], dtype=D), (10, 10))
    cam.kind = "perspective"
    with pytest.raises(ValueError, match="orthographic camera"):
        camera_to_pose_para(torch.zeros(1, 3, dtype=D), t, cam)


@pytest.mark.shared
def test_300w_lp_pose_on_the_shared_photo():
    """The one shared 300W-LP photo: its Pose_Para, converted, agrees with the image and with a fit."""
    from morph3d.fitting import LandmarkFitter
    from morph3d.model import load_model
    manifest = shared_path("data", "faces", "manifest.json")
    e = {e["id"]: e for e in json.loads(manifest.read_text())["entries"]}["300wlp_IBUG_image_008_1_0"]
    yaw, pitch, roll = (math.radians(v) for v in e["pose"])  # the manifest lists [yaw, pitch, roll]
    truth = pose_para_to_angles(torch.tensor([pitch, yaw, roll], dtype=D))
    assert math.degrees(truth[0]) > 30  # morph3d yaw > 0: the nose turns to the image right ...
    gt = np.array(e["landmarks68"])
    eyes = (gt[36] + gt[45]) / 2
    assert gt[30, 0] > eyes[0] + 0.1 * np.ptp(gt[:, 0])  # ... and it does in the photo
    fit = LandmarkFitter(load_model("open")).fit(gt[None], (e["height"], e["width"]))
    err = np.degrees(np.abs(fit.params.rotation[0].double().numpy() - truth.numpy()))
    assert err.max() < 5, err  # measured [1.6, 0.3, 0.4] degrees (truth [44.0, 7.5, 2.9])
