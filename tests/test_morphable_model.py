import numpy as np
import pytest
import torch

from conftest import tiny_canonical
from morph3d.model import FaceParams, MorphableModel, canonical
from morph3d.model.pose import euler_to_matrix


@pytest.fixture
def model():
    return MorphableModel(tiny_canonical())


def test_shape_is_mean_plus_scaled_bases(model):
    data = tiny_canonical()
    ident = torch.tensor([[1.0, -2.0, 0.5]])
    expr = torch.tensor([[0.3, 0.0]])
    v = model.shape(ident, expr)[0].numpy()
    expected = (data["vertices_mean"] + data["identity_basis"] @ ident[0].numpy()
                + data["expression_basis"] @ expr[0].numpy())
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-4)


def test_forward_pose_landmarks_and_projection(model):
    p = model.default_params(batch=2, image_size=(128, 128))
    p.rotation[1] = torch.tensor([0.3, -0.1, 0.2])
    out = model(p)
    rot = euler_to_matrix(p.rotation)
    torch.testing.assert_close(out.vertices_cam, out.vertices @ rot.transpose(1, 2) + p.translation[:, None])
    # landmarks are the mesh vertices they were defined on
    data = tiny_canonical()
    lm_vertex = data["triangles"][data["landmark_faces"], np.argmax(data["landmark_bary"], 1)]
    torch.testing.assert_close(out.landmarks_cam, out.vertices_cam[:, lm_vertex])
    torch.testing.assert_close(out.landmarks_2d, p.camera.project(out.landmarks_cam))
    # ambient light renders the albedo itself
    torch.testing.assert_close(out.colors, out.albedo)
    assert out.normals_cam.norm(dim=-1).sub(1).abs().max() < 1e-5


def test_gradients_reach_every_parameter(model):
    p = model.default_params(batch=1)
    for t in p.tensors().values():
        t.requires_grad_(True)
    out = model(p)
    (out.colors.sum() + out.landmarks_2d.sum()).backward()
    for name, t in p.tensors().items():
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
    assert p.identity.grad.abs().sum() > 0 and p.rotation.grad.abs().sum() > 0


def test_float64_and_named_expressions(model):
    m64 = model.to(torch.float64)
    e = m64.expression_from_names({"smile_left": 0.5})
    assert e.dtype == torch.float64 and e[0].tolist() == [0.0, 0.5]
    with pytest.raises(KeyError, match="no expression named 'wink'"):
        m64.expression_from_names({"wink": 1})


def test_bad_coefficients(model):
    with pytest.raises(ValueError, match=r"identity coefficients must be \(B, 3\)"):
        model.shape(torch.zeros(1, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NaN"):
        model.shape(torch.tensor([[float("nan"), 0, 0]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="batch"):
        model.shape(torch.zeros(2, 3), torch.zeros(1, 2))


def test_canonical_round_trip_and_errors(tmp_path):
    data = tiny_canonical()
    path = canonical.save(data, tmp_path / "m.npz")
    back = canonical.load(path)
    for k in ("vertices_mean", "triangles", "identity_basis", "landmark_bary"):
        np.testing.assert_array_equal(back[k], canonical.validate(data)[k])
    assert not list(tmp_path.glob("*.partial*"))

    bad = dict(data, triangles=data["triangles"] + 1000)
    with pytest.raises(canonical.ModelFormatError, match=r"bad.npz: triangle indices"):
        canonical.save(bad, tmp_path / "bad.npz")
    nan = dict(data, identity_basis=data["identity_basis"].copy())
    nan["identity_basis"][0, 0, 0] = np.nan
    with pytest.raises(canonical.ModelFormatError, match="identity_basis.*NaN"):
        canonical.validate(nan, "x.npz")
    missing = {k: v for k, v in data.items() if k != "albedo_mean"}
    with pytest.raises(canonical.ModelFormatError, match="albedo_mean"):
        canonical.validate(missing, "x.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(canonical.ModelFormatError, match="junk.npz: not a readable"):
        canonical.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(canonical.ModelFormatError, match="morph3d convert"):
        canonical.load(tmp_path / "other.npz")


def test_landmark_faces_from_vertices():
    tris = np.array([[0, 1, 2], [2, 1, 3]])
    faces, bary = canonical.landmark_faces_from_vertices(np.array([3, 0, -1]), tris)
    assert faces.tolist() == [1, 0, -1]
    assert bary.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_params_save_load(tmp_path, model):
    p = model.default_params(batch=3)
    p.identity.normal_()
    for suffix in (".json", ".npz"):
        path = p.save(tmp_path / f"p{suffix}")
        q = FaceParams.load(path)
        for name, t in p.tensors().items():
            torch.testing.assert_close(getattr(q, name), t)
        torch.testing.assert_close(q.camera.focal, p.camera.focal)
    with pytest.raises(ValueError, match=".json or .npz"):
        p.save(tmp_path / "p.txt")


def test_flame_model_articulates_through_forward(tmp_path):
    from model_fixtures import write_flame
    from morph3d.model import load_model
    write_flame(tmp_path)
    model = load_model(str(tmp_path / "generic_model.pkl"))
    assert model.has_articulation and model.num_joints == 5
    p = model.default_params(batch=2)
    rest = model(p).vertices
    torch.testing.assert_close(rest, model.shape(p.identity, p.expression))  # zero pose = unposed mesh
    p.articulation[1, 2, 0] = 0.3  # open the jaw of the second face
    posed = model(p).vertices
    torch.testing.assert_close(posed[0], rest[0])
    moved = (posed[1] - rest[1]).norm(dim=-1)
    jaw_weight = model.skinning_weights[:, 2]
    assert moved[jaw_weight == 0].max() < 1e-1 * moved[jaw_weight == 1].min()  # only pose correctives elsewhere
    p.articulation.requires_grad_(True)
    model(p).vertices.sum().backward()
    assert p.articulation.grad[1, 2].abs().sum() > 0


def test_vertex_normals_match_a_per_triangle_loop():
    from morph3d.model.geometry import vertex_normals
    g = torch.Generator().manual_seed(3)
    tri = torch.tensor(tiny_canonical()["triangles"])
    v = torch.randn(3, 81, 3, generator=g, dtype=torch.float64)
    ref = torch.zeros_like(v)
    for f in tri.tolist():
        fn = torch.cross(v[:, f[1]] - v[:, f[0]], v[:, f[2]] - v[:, f[0]], dim=-1)
        for i in f:
            ref[:, i] += fn
    ref = ref / ref.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(vertex_normals(v, tri), ref)
