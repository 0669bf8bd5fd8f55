import math

import pytest
import torch

from morph3d.model import Camera, FaceParams, from_deep3d, to_deep3d
from morph3d.model.lighting import irradiance
from morph3d.model import DEEP3D_DIM


def deep3d_shading(normals, gamma):
    """Deep3DFaceRecon's SH shading, written from its published formula (signs and band constants)."""
    a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)
    c0, c1, c2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)
    x, y, z = normals.unbind(-1)
    basis = torch.stack([a0 * c0 * torch.ones_like(x), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x,
                         a2 * c2 * x * y, -a2 * c2 * y * z, 0.5 * a2 * c2 / math.sqrt(3.0) * (3 * z * z - 1),
                         -a2 * c2 * x * z, 0.5 * a2 * c2 * (x * x - y * y)], -1)
    g = gamma.reshape(-1, 3, 9).clone()
    g[:, :, 0] += 0.8
    return torch.einsum("bnk,bck->bnc", basis, g)


def test_deep3d_round_trip_and_lighting_equivalence():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(4, DEEP3D_DIM, generator=g, dtype=torch.float64) * 0.3
    p = from_deep3d(coeffs, "bfm_front", (80, 64, 80))
    torch.testing.assert_close(to_deep3d(p, "bfm_front"), coeffs)
    # angles: their (x, y, z) = (pitch, yaw, roll)
    torch.testing.assert_close(p.rotation[:, 0], coeffs[:, 225])
    torch.testing.assert_close(p.rotation[:, 1], coeffs[:, 224])
    # translation: camera 10 units (1 m) from the origin, units of 100 mm
    torch.testing.assert_close(p.translation[:, 2], (coeffs[:, 256] - 10) * 100)
    n = torch.nn.functional.normalize(torch.randn(1, 50, 3, generator=g, dtype=torch.float64), dim=-1)
    ours = irradiance(n.expand(4, -1, -1), p.lighting) / math.pi
    torch.testing.assert_close(ours, deep3d_shading(n.expand(4, -1, -1), coeffs[:, 227:254]))


def test_deep3d_padding_and_refusals():
    coeffs = torch.zeros(1, DEEP3D_DIM)
    p = from_deep3d(coeffs, "bfm2009", (199, 79, 199))
    assert p.identity.shape == (1, 199) and p.expression.shape == (1, 79)
    p.identity[0, 150] = 1.0
    with pytest.raises(ValueError, match="257-dim layout holds 80"):
        to_deep3d(p, "bfm2009")
    with pytest.raises(ValueError, match="Basel"):
        from_deep3d(coeffs, "flame", (100, 50, 0))
    with pytest.raises(ValueError, match="257"):
        from_deep3d(torch.zeros(1, 256), "bfm_front", (80, 64, 80))


def test_params_validation():
    cam = Camera.create(2, (64, 64))
    z = lambda k, b=2: torch.zeros(b, k)  # noqa: E731
    with pytest.raises(ValueError, match="lighting"):
        FaceParams(z(3), z(2), z(1), z(3), z(3), z(9), cam)
    with pytest.raises(ValueError, match="camera batch"):
        FaceParams(z(3, 1), z(2, 1), z(1, 1), z(3, 1), z(3, 1), z(27, 1), cam)
    with pytest.raises(ValueError, match="same B"):
        FaceParams(z(3), z(2, 1), z(1), z(3), z(3), z(27), cam)
