import numpy as np
import pytest
import trimesh

from conftest import tiny_canonical
from morph3d.model import export_mesh


def test_obj_and_ply_with_vertex_colours(tmp_path):
    d = tiny_canonical()
    colors = np.random.default_rng(0).random((len(d["vertices_mean"]), 3))
    for name in ("m.obj", "m.ply"):
        path = export_mesh(tmp_path / name, d["vertices_mean"], d["triangles"], colors=colors)
        mesh = trimesh.load(path, process=False)
        np.testing.assert_allclose(mesh.vertices, d["vertices_mean"], atol=1e-4)
        np.testing.assert_array_equal(mesh.faces, d["triangles"])
        # written sRGB-encoded, as viewers expect, and the file says so
        srgb = np.where(colors <= 0.0031308, 12.92 * colors, 1.055 * colors ** (1 / 2.4) - 0.055)
        np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3] / 255.0, srgb, atol=1 / 255.0 + 1e-6)
        assert b"vertex colours are sRGB" in path.read_bytes()[:300]
    assert not list(tmp_path.glob("*partial*"))


def test_obj_mid_grey_is_written_as_srgb_188(tmp_path):
    d = tiny_canonical()
    path = export_mesh(tmp_path / "g.obj", d["vertices_mean"], d["triangles"],
                       colors=np.full((len(d["vertices_mean"]), 3), 0.5))
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and "sRGB" in first
    assert trimesh.load(path, process=False).visual.vertex_colors[0, 0] == 188  # linear 0.5 -> sRGB 0.735


def test_export_into_a_folder_in_the_way_leaves_nothing(tmp_path):
    d = tiny_canonical()
    (tmp_path / "m.obj").mkdir()
    with pytest.raises(OSError):
        export_mesh(tmp_path / "m.obj", d["vertices_mean"], d["triangles"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.obj"]


def test_textured_obj(tmp_path):
    d = tiny_canonical()
    tex = np.zeros((16, 16, 3))
    tex[..., 0] = 1.0
    path = export_mesh(tmp_path / "t.obj", d["vertices_mean"], d["triangles"], uv_coords=d["uv_coords"],
                       texture=tex)
    assert (tmp_path / "t.mtl").exists() and any(p.suffix == ".png" for p in tmp_path.iterdir())
    mesh = trimesh.load(path, process=False)
    assert mesh.visual.uv.shape[0] == mesh.vertices.shape[0]
    assert abs(mesh.area - trimesh.Trimesh(d["vertices_mean"], d["triangles"]).area) < 1e-3


def test_export_refuses_bad_input(tmp_path):
    d = tiny_canonical()
    v = d["vertices_mean"].copy()
    v[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_mesh(tmp_path / "x.obj", v, d["triangles"])
    with pytest.raises(ValueError, match=".obj or .ply"):
        export_mesh(tmp_path / "x.stl", d["vertices_mean"], d["triangles"])
    assert not list(tmp_path.iterdir())
