import math

import pytest
import torch

from morph3d.model.pose import euler_to_matrix, matrix_to_euler


def rad(*deg):
    return torch.tensor([math.radians(d) for d in deg], dtype=torch.float64)


def test_positive_yaw_turns_nose_to_viewer_right():
    r = euler_to_matrix(rad(30, 0, 0))
    nose = r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert nose[0] == pytest.approx(math.sin(math.radians(30)))
    assert nose[2] == pytest.approx(math.cos(math.radians(30)))


def test_positive_pitch_looks_down_and_roll_is_counter_clockwise():
    nose = euler_to_matrix(rad(0, 20, 0)) @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert nose[1] < 0  # nose moves down (y is up)
    up = euler_to_matrix(rad(0, 0, 15)) @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert up[0] < 0 and up[1] > 0  # top of the head moves to the viewer's left


def test_documented_composition_order():
    yaw, pitch, roll = rad(25, -10, 7)
    c, s = torch.cos, torch.sin
    rx = torch.tensor([[1, 0, 0], [0, c(pitch), -s(pitch)], [0, s(pitch), c(pitch)]], dtype=torch.float64)
    ry = torch.tensor([[c(yaw), 0, s(yaw)], [0, 1, 0], [-s(yaw), 0, c(yaw)]], dtype=torch.float64)
    rz = torch.tensor([[c(roll), -s(roll), 0], [s(roll), c(roll), 0], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(euler_to_matrix(rad(25, -10, 7)), rz @ ry @ rx)


def test_round_trip_random_and_batched():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(4, 50, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([3.0, 6.0, 6.0],
                                                                                          dtype=torch.float64)
    m = euler_to_matrix(angles)
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(m))
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(4, 50, dtype=torch.float64))
    torch.testing.assert_close(matrix_to_euler(m), angles)


def test_gimbal_lock_still_reproduces_matrix():
    m = euler_to_matrix(rad(90, 30, 0))
    torch.testing.assert_close(euler_to_matrix(matrix_to_euler(m)), m, atol=1e-6, rtol=0)


def test_bad_shapes():
    with pytest.raises(ValueError, match="yaw, pitch, roll"):
        euler_to_matrix(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="3, 3"):
        matrix_to_euler(torch.zeros(2, 3, 4))
