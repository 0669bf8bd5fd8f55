import math

import pytest
import torch
import trimesh

from morph3d.model.geometry import vertex_normals
from morph3d.model.lighting import (ambient_lighting, irradiance, project_environment, sh_basis, shade)


def sphere_normals():
    s = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(s.vertices, dtype=torch.float64)[None]
    f = torch.tensor(s.faces, dtype=torch.int64)
    n = vertex_normals(v, f)
    torch.testing.assert_close(n, v / v.norm(dim=-1, keepdim=True), atol=0.02, rtol=0)
    return n


def brute_force_irradiance(normals, radiance_fn, samples=400_000):
    """E(n) = integral of L(w) max(n.w, 0) dw by Monte Carlo over the sphere."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(samples, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True)
    cos = (normals @ w.T).clamp_min(0)  # (N, S)
    return (4 * math.pi / samples) * cos @ radiance_fn(w)


def test_sphere_matches_analytic_irradiance_linear_sky():
    # radiance L(w) = a + b w_z: E(n) = pi a + 2 pi / 3 b n_z exactly
    a, b = 0.7, 0.4
    n = sphere_normals()
    light = torch.zeros(3, 9, dtype=torch.float64)
    light[:, 0] = a * math.sqrt(4 * math.pi)
    light[:, 2] = b * math.sqrt(4 * math.pi / 3)
    e = irradiance(n, light.reshape(1, 27))[0]
    expected = math.pi * a + 2 * math.pi / 3 * b * n[0, :, 2]
    torch.testing.assert_close(e, expected[:, None].expand(-1, 3))


def test_sphere_matches_brute_force_integral_for_second_order_environment():
    def radiance(w):
        x, y, z = w.unbind(-1)
        r = 1.0 + 0.3 * x + 0.5 * x * y + 0.2 * (3 * z * z - 1)
        g = 0.8 - 0.2 * y + 0.4 * y * z
        bl = 0.5 + 0.1 * z + 0.3 * (x * x - y * y)
        return torch.stack([r, g, bl], -1)

    light = project_environment(radiance, num_samples=400_000)
    n = sphere_normals()[:, ::7]
    e = irradiance(n, light[None])[0]
    ref = brute_force_irradiance(n[0], radiance)
    torch.testing.assert_close(e, ref, atol=0.02, rtol=0.01)


def test_ambient_unit_light_renders_albedo():
    n = sphere_normals()
    albedo = torch.rand(1, n.shape[1], 3, dtype=torch.float64)
    out = shade(albedo, n, ambient_lighting(1, dtype=torch.float64))
    torch.testing.assert_close(out, albedo)


def test_basis_is_orthonormal():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(300_000, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True)
    y = sh_basis(w)
    gram = 4 * math.pi * y.T @ y / w.shape[0]
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=0.02, rtol=0)


def test_bad_lighting_shape():
    with pytest.raises(ValueError, match="27"):
        irradiance(torch.zeros(1, 4, 3), torch.zeros(1, 9))
