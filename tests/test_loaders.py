"""Model loaders: unit conversion, pre-scaling, index bases, winding, landmarks, errors, round trip."""
from __future__ import annotations

import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import model_fixtures as mf
from morph3d.model import canonical, loaders
from morph3d.model.canonical import ModelFormatError
from morph3d.model.loaders import format_name, load_canonical

SHARED_SFM = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "sfm"


def landmark_points(model: dict) -> np.ndarray:
    """(68, 3) positions of the mean shape's landmarks, NaN where undefined."""
    v, tri = model["vertices_mean"].astype(np.float64), model["triangles"]
    out = np.full((68, 3), np.nan)
    ok = model["landmark_faces"] >= 0
    out[ok] = np.einsum("lk,lkc->lc", model["landmark_bary"][ok], v[tri[model["landmark_faces"][ok]]])
    return out


def front_normals_z(model: dict) -> float:
    v, t = model["vertices_mean"].astype(np.float64), model["triangles"]
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    return float(n[:, 2].sum())


def assert_round_trip(model: dict, tmp_path: Path) -> None:
    path = canonical.save(model, tmp_path / "round_trip.npz")
    back = load_canonical(path)
    assert format_name(path) == "canonical"
    assert set(back) == set(model)
    for k, v in model.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(back[k], v, err_msg=k)
        else:
            assert back[k] == v, k


# ----------------------------------------------------------------------------- BFM 2009
def test_bfm2009_units_scaling_winding_regions(tmp_path):
    truth = mf.write_bfm2009(tmp_path)
    m = load_canonical(truth["path"])
    assert format_name(truth["path"]) == "bfm2009" and m["source_format"] == "bfm2009"
    np.testing.assert_allclose(m["vertices_mean"], truth["mean_mm"], atol=1e-4)  # micrometres -> mm
    np.testing.assert_allclose(m["identity_basis"], truth["identity_mm"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["albedo_mean"], truth["albedo"], atol=1e-6)
    np.testing.assert_allclose(m["albedo_basis"], truth["albedo_basis"], rtol=1e-5, atol=1e-7)
    # BFM's tl is clockwise and 1-based: the loader flips it back to the CCW 0-based truth
    np.testing.assert_array_equal(m["triangles"], truth["triangles"])
    assert front_normals_z(m) > 0
    # segbin: nose claims first, then eyes, then mouth, the rest is skin
    names = list(m["region_names"])
    labels = np.asarray(names)[m["region_labels"]]
    seg = truth["segbin"]
    assert np.all(labels[seg[:, 0] == 1] == "nose")
    assert np.all(labels[(seg[:, 0] == 0) & (seg[:, 1] == 1)] == "eyes")
    assert np.all(labels[(seg[:, :3] == 0).all(axis=1)] == "skin")
    assert m["expression_basis"].shape == (truth["n"], 3, 0)
    np.testing.assert_array_equal(m["landmark_faces"], -1)
    # identity_std_mm: RMS displacement length of each (pre-scaled) mode
    rms = np.sqrt((truth["identity_mm"] ** 2).sum(axis=1).mean(axis=0))
    np.testing.assert_allclose(m["identity_std_mm"], rms, rtol=1e-5)
    assert_round_trip(m, tmp_path)


def test_bfm2009_truncation_recenter_and_landmark_txt(tmp_path):
    truth = mf.write_bfm2009(tmp_path)
    ids = mf.landmark_vertices(truth["n"])
    np.savetxt(tmp_path / "lmk.txt", ids, fmt="%d")
    m = load_canonical(truth["path"], num_identity=2, num_albedo=1, recenter=True,
                       landmark_file=tmp_path / "lmk.txt")
    assert m["identity_basis"].shape[2] == 2 and m["albedo_basis"].shape[2] == 1
    np.testing.assert_allclose(m["vertices_mean"].mean(axis=0), 0, atol=1e-4)
    centred = truth["mean_mm"] - truth["mean_mm"].mean(axis=0)
    pts = landmark_points(m)
    ok = ids >= 0
    np.testing.assert_allclose(pts[ok], centred[ids[ok]], atol=1e-4)
    assert np.all(np.isnan(pts[~ok]))
    with pytest.raises(ModelFormatError, match="asked for 9 identity"):
        load_canonical(truth["path"], num_identity=9)


def test_bfm2009_with_exp_pca_restricts_to_expression_vertices(tmp_path):
    truth = mf.write_bfm2009(tmp_path)
    exp = mf.write_exp_pca(tmp_path, truth["n"])  # std_exp.txt and BFM_exp_idx.mat found beside it
    ids = mf.landmark_vertices(truth["n"])
    ids[5] = 9  # a landmark on a vertex the expression model drops -> undefined
    np.save(tmp_path / "lmk.npy", ids)
    m = load_canonical(truth["path"], expression_file=exp["path"], landmark_file=tmp_path / "lmk.npy")
    keep = exp["keep"]
    assert m["vertices_mean"].shape == (keep.shape[0], 3)
    np.testing.assert_allclose(m["vertices_mean"], truth["mean_mm"][keep], atol=1e-4)
    np.testing.assert_allclose(m["identity_basis"], truth["identity_mm"][keep], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["expression_basis"], exp["expression_mm"], rtol=1e-5, atol=1e-6)
    # triangles: exactly the truth triangles that avoid dropped vertices, re-indexed
    remap = np.full(truth["n"], -1)
    remap[keep] = np.arange(keep.shape[0])
    expected = remap[truth["triangles"]]
    np.testing.assert_array_equal(m["triangles"], expected[(expected >= 0).all(axis=1)])
    pts = landmark_points(m)
    ok = (ids >= 0) & np.isin(ids, keep)
    np.testing.assert_allclose(pts[ok], truth["mean_mm"][ids[ok]], atol=1e-4)
    assert np.isnan(pts[5]).all() and np.isnan(pts[60]).all()
    m2 = load_canonical(truth["path"], expression_file=exp["path"], num_expression=2)
    assert m2["expression_basis"].shape[2] == 2 and m2["expression_kind"] == "pca"


def test_bfm2009_expression_companion_files_required(tmp_path):
    truth = mf.write_bfm2009(tmp_path)
    exp = mf.write_exp_pca(tmp_path, truth["n"], std_file=False, index_file=False)
    with pytest.raises(ModelFormatError, match="std_exp.txt") as err:
        load_canonical(truth["path"], expression_file=exp["path"])
    assert "Exp_Pca.bin" in str(err.value)
    np.savetxt(tmp_path / "std.txt", np.ones(3))
    with pytest.raises(ModelFormatError, match="expression_index_file"):
        load_canonical(truth["path"], expression_file=exp["path"], expression_std_file=tmp_path / "std.txt")
    scipy.io.savemat(str(tmp_path / "idx.mat"), {"trimIndex": np.arange(1, 10).reshape(-1, 1)})
    with pytest.raises(ModelFormatError, match="idx.mat: lists 9 vertices"):
        load_canonical(truth["path"], expression_file=exp["path"], expression_std_file=tmp_path / "std.txt",
                       expression_index_file=tmp_path / "idx.mat")
    np.savetxt(tmp_path / "std.txt", np.ones(2))
    with pytest.raises(ModelFormatError, match="std.txt: 'std_exp' must hold 3 values"):
        load_canonical(truth["path"], expression_file=exp["path"], expression_std_file=tmp_path / "std.txt")


def test_bfm2009_landmarks_from_bfm_model_front(tmp_path):
    """The front crop's 1-based keypoints are matched to BFM 2009 vertices by position."""
    truth = mf.write_bfm2009(tmp_path)
    front = mf.write_bfm_front(tmp_path, source=truth)
    m = load_canonical(truth["path"], landmark_file=front["path"])
    want = truth["mean_mm"][front["crop"][front["keypoint_ids"]]]
    np.testing.assert_allclose(landmark_points(m), want, atol=1e-4)


# ----------------------------------------------------------------------------- BFM front
def test_bfm_front_matches_deep3dfacerecon(tmp_path):
    truth = mf.write_bfm_front(tmp_path)
    m = load_canonical(truth["path"])
    assert format_name(truth["path"]) == "bfm_front" and m["source_format"] == "bfm_front"
    mean_dm = truth["meanshape"].reshape(-1, 3)
    mean_dm = mean_dm - mean_dm.mean(axis=0)  # Deep3DFaceRecon's recenter=True
    np.testing.assert_allclose(m["vertices_mean"], mean_dm * 100, atol=1e-4)
    # coefficients keep Deep3DFaceRecon's meaning: shape(c) = mean + idBase c + exBase e, x100 mm
    rng = np.random.default_rng(0)
    c, e, t = rng.standard_normal(6), rng.standard_normal(4), rng.standard_normal(5)
    d3d_shape = (mean_dm.reshape(-1) + truth["idBase"] @ c + truth["exBase"] @ e).reshape(-1, 3) * 100
    ours = m["vertices_mean"] + m["identity_basis"] @ c + m["expression_basis"] @ e
    np.testing.assert_allclose(ours, d3d_shape, atol=1e-3)
    d3d_tex = (truth["meantex"].reshape(-1) + truth["texBase"] @ t).reshape(-1, 3) / 255
    np.testing.assert_allclose(m["albedo_mean"] + m["albedo_basis"] @ t, d3d_tex, atol=1e-5)
    np.testing.assert_array_equal(m["triangles"], truth["triangles"])  # 1-based -> 0-based, CCW kept
    np.testing.assert_allclose(landmark_points(m), m["vertices_mean"][truth["keypoint_ids"]], atol=1e-5)
    labels = m["region_names"][m["region_labels"]]
    np.testing.assert_array_equal(labels == "skin", truth["skin"] == 1)
    assert_round_trip(m, tmp_path)


def test_bfm_front_without_recenter_and_optional_entries(tmp_path):
    truth = mf.write_bfm_front(tmp_path, keypoints=False, skinmask=False)
    m = load_canonical(truth["path"], recenter=False)
    np.testing.assert_allclose(m["vertices_mean"], truth["meanshape"].reshape(-1, 3) * 100, atol=1e-4)
    np.testing.assert_array_equal(m["landmark_faces"], -1)
    assert list(m["region_names"]) == ["face"]


def test_bfm_front_clockwise_file_is_flipped(tmp_path):
    truth = mf.write_bfm_front(tmp_path)
    data = {k: v for k, v in scipy.io.loadmat(str(truth["path"])).items() if not k.startswith("__")}
    data["tri"] = data["tri"][:, [0, 2, 1]]
    scipy.io.savemat(str(tmp_path / "cw.mat"), data)
    m = load_canonical(tmp_path / "cw.mat")
    np.testing.assert_array_equal(m["triangles"], truth["triangles"])
    # barycentric landmarks still land on the keypoint vertices after the flip
    np.testing.assert_allclose(landmark_points(m), m["vertices_mean"][truth["keypoint_ids"]], atol=1e-5)


# ----------------------------------------------------------------------------- FLAME
@pytest.mark.parametrize("protocol", [0, 2])
def test_flame_without_chumpy(tmp_path, protocol, monkeypatch):
    truth = mf.write_flame(tmp_path, protocol=protocol)
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of chumpy now fails
    m = load_canonical(truth["path"])
    assert format_name(truth["path"]) == "flame" and m["source_format"] == "flame"
    np.testing.assert_allclose(m["vertices_mean"], truth["v_template"] * 1000, atol=1e-4)  # m -> mm
    np.testing.assert_allclose(m["identity_basis"], truth["shapedirs"][:, :, :100] * 1000, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["expression_basis"], truth["shapedirs"][:, :, 300:350] * 1000, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m["triangles"], truth["f"].astype(np.int64))
    np.testing.assert_array_equal(m["flame_parents"], [-1, 0, 1, 1, 1])
    np.testing.assert_allclose(m["flame_joint_regressor"], truth["J_regressor"], atol=1e-7)
    np.testing.assert_allclose(m["flame_skinning_weights"], truth["weights"], atol=1e-7)
    np.testing.assert_allclose(m["flame_pose_basis"], truth["posedirs"] * 1000, rtol=1e-5, atol=1e-7)
    assert m["albedo_basis"].shape[2] == 0 and np.all(m["albedo_mean"] > 0.2)
    assert_round_trip(m, tmp_path)


def test_flame_component_counts_and_landmarks(tmp_path):
    truth = mf.write_flame(tmp_path)
    n_faces = truth["f"].shape[0]
    full = mf.write_flame_landmarks_npy(tmp_path, n_faces)  # also holds a torch tensor entry
    m = load_canonical(truth["path"], num_identity=300, num_expression=100, landmark_file=full["path"])
    assert m["identity_basis"].shape[2] == 300 and m["expression_basis"].shape[2] == 100
    np.testing.assert_allclose(m["expression_basis"], truth["shapedirs"][:, :, 300:] * 1000, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m["landmark_faces"], full["faces"])
    np.testing.assert_allclose(m["landmark_bary"], full["bary"], atol=1e-6)
    static = mf.write_flame_static_pkl(tmp_path, n_faces)
    m = load_canonical(truth["path"], num_identity=10, num_expression=0, landmark_file=static["path"])
    assert m["identity_basis"].shape[2] == 10 and m["expression_basis"].shape[2] == 0
    np.testing.assert_array_equal(m["landmark_faces"][:17], -1)  # no jaw contour in a 51-point embedding
    np.testing.assert_array_equal(m["landmark_faces"][17:], static["faces"])
    np.testing.assert_allclose(m["landmark_bary"][17:], static["bary"], atol=1e-6)
    with pytest.raises(ModelFormatError, match="asked for 101 expression"):
        load_canonical(truth["path"], num_expression=101)


def test_flame_masks_give_exclusive_regions(tmp_path):
    truth = mf.write_flame(tmp_path)
    n = truth["v_template"].shape[0]
    masks = {"face": np.arange(0, 60), "lips": np.arange(10, 20), "left_eyeball": np.arange(50, 55),
             "scalp": np.arange(80, 99)}
    with open(tmp_path / "FLAME_masks.pkl", "wb") as f:
        pickle.dump(masks, f, protocol=2)
    m = load_canonical(truth["path"], masks_file=tmp_path / "FLAME_masks.pkl")
    labels = m["region_names"][m["region_labels"]]
    assert np.all(labels[10:20] == "lips") and np.all(labels[50:55] == "eyes")
    assert np.all(labels[:10] == "skin") and np.all(labels[80:] == "scalp") and np.all(labels[60:80] == "other")
    assert labels.shape == (n,)


def test_flame_npz_and_chumpy_expression_error(tmp_path):
    data = mf.flame_data()
    np.savez(tmp_path / "flame.npz", **data)
    assert format_name(tmp_path / "flame.npz") == "flame"
    np.testing.assert_allclose(load_canonical(tmp_path / "flame.npz")["vertices_mean"], data["v_template"] * 1000,
                               atol=1e-4)
    bad = mf.write_flame(tmp_path, name="expr.pkl", chumpy_expression=True)
    with pytest.raises(ModelFormatError, match=r"expr\.pkl: 'shapedirs' is a chumpy chumpy.reordering.transpose"):
        load_canonical(bad["path"])


# ----------------------------------------------------------------------------- SFM / eos
def test_sfm_v1_scaling_uv_and_companions(tmp_path):
    d = mf.sfm_data()
    path = mf.write_eos_model(tmp_path / "sfm_shape_3448.bin", d)
    m = load_canonical(path)
    assert format_name(path) == "sfm" and m["source_format"] == "sfm"
    n = d["n"]
    np.testing.assert_allclose(m["vertices_mean"], d["mean"].reshape(-1, 3), atol=1e-5)
    scaled = (d["basis"] * np.sqrt(d["eigenvalues"])).reshape(n, 3, -1)
    np.testing.assert_allclose(m["identity_basis"], scaled, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m["triangles"], d["triangles"])
    np.testing.assert_allclose(m["uv_coords"], np.stack([d["uv"][:, 0], 1 - d["uv"][:, 1]], 1), atol=1e-7)
    np.testing.assert_array_equal(m["uv_triangles"], d["triangles"])
    np.testing.assert_allclose(m["albedo_mean"], np.tile([0.63, 0.45, 0.36], (n, 1)), atol=1e-7)
    assert m["albedo_basis"].shape == (n, 3, 0) and m["expression_basis"].shape[2] == 0
    np.testing.assert_array_equal(m["landmark_faces"], -1)
    # standard-named companions next to the model are picked up automatically
    mf.write_blendshapes(tmp_path / "expression_blendshapes_3448.bin", d["blendshapes"])
    ids = mf.landmark_vertices(n)
    mf.write_ibug_mapping(tmp_path / "ibug_to_sfm.txt", ids)
    mf.write_contours(tmp_path / "sfm_model_contours.json", [1, 2, 3], [7, 8])
    m = load_canonical(path)
    assert m["expression_kind"] == "blendshapes"
    assert list(m["expression_names"]) == ["anger", "happiness", "surprise"]
    for i, (_, defo) in enumerate(d["blendshapes"]):
        np.testing.assert_allclose(m["expression_basis"][:, :, i], defo.reshape(-1, 3), atol=1e-5)
    pts = landmark_points(m)
    ok = ids >= 0
    np.testing.assert_allclose(pts[ok], m["vertices_mean"][ids[ok]], atol=1e-6)
    assert np.isnan(pts[~ok]).all()
    np.testing.assert_array_equal(m["contour_right"], [1, 2, 3])
    np.testing.assert_array_equal(m["contour_left"], [7, 8])
    assert_round_trip(m, tmp_path)


def test_sfm_v4_embedded_expression_landmarks_uv_triangles(tmp_path):
    d = mf.sfm_data()
    uv_tri = d["triangles"][:, [1, 2, 0]]
    path = mf.write_eos_model(tmp_path / "model.bin", d, version=4, expression=("blendshapes", d["blendshapes"][:2]),
                              landmarks={"9": 4, "31": 40, "eye.right.outer": 2}, uv_triangles=uv_tri)
    m = load_canonical(path)
    assert list(m["expression_names"]) == ["anger", "happiness"]
    pts = landmark_points(m)
    np.testing.assert_allclose(pts[[8, 30]], m["vertices_mean"][[4, 40]], atol=1e-6)
    assert np.isnan(pts[0]).all()
    np.testing.assert_array_equal(m["uv_triangles"], uv_tri)
    k = 2
    pca = (d["mean"] * 0, d["basis"][:, :k], np.array([4.0, 1.0]), d["triangles"])
    path = mf.write_eos_model(tmp_path / "pca.bin", d, version=3, expression=("pca", pca))
    m = load_canonical(path)
    assert m["expression_kind"] == "pca"
    np.testing.assert_allclose(m["expression_basis"], (d["basis"][:, :k] * [2.0, 1.0]).reshape(d["n"], 3, k),
                               rtol=1e-5, atol=1e-6)
    # explicit options override the model's own expression
    mf.write_blendshapes(tmp_path / "bs.bin", d["blendshapes"])
    m = load_canonical(path, blendshapes_file=tmp_path / "bs.bin")
    assert m["expression_kind"] == "blendshapes" and m["expression_basis"].shape[2] == 3


def _eos():
    return pytest.importorskip("eos")


def test_fixture_writer_matches_eos_reader(tmp_path):
    eos_mm = _eos().morphablemodel
    d = mf.sfm_data()
    path = mf.write_eos_model(tmp_path / "m.bin", d, version=4, expression=("blendshapes", d["blendshapes"]),
                              landmarks={"9": 4})
    em = eos_mm.load_model(str(path))
    np.testing.assert_allclose(np.asarray(em.get_shape_model().get_mean()), d["mean"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(em.get_shape_model().get_orthonormal_pca_basis()), d["basis"], atol=1e-6)
    assert em.get_landmark_definitions() == {"9": 4}
    assert [b.name for b in em.get_expression_model()] == ["anger", "happiness", "surprise"]


def test_parser_matches_eos_writer(tmp_path):
    """Files written by eos itself (version 4: PCA or blendshape expressions, landmark definitions)."""
    eos_mm = _eos().morphablemodel
    d = mf.sfm_data()
    n = d["n"]
    tri = d["triangles"].tolist()
    shape = eos_mm.PcaModel(d["mean"].astype(np.float32), d["basis"].astype(np.float32),
                            d["eigenvalues"].astype(np.float32), tri)
    colour = eos_mm.PcaModel(np.full(3 * n, 0.5, np.float32), d["basis"][:, :2].astype(np.float32),
                             np.array([0.01, 0.0025], np.float32), tri)
    shapes = [eos_mm.Blendshape(nm, v.astype(np.float32)) for nm, v in d["blendshapes"]]
    model = eos_mm.MorphableModel(shape, shapes, colour, {"31": 7, "nose": 3}, d["uv"].tolist(), tri)
    eos_mm.save_model(model, str(tmp_path / "eos.bin"))
    m = load_canonical(tmp_path / "eos.bin")
    np.testing.assert_allclose(m["identity_basis"].reshape(3 * n, -1),
                               np.asarray(model.get_shape_model().get_rescaled_pca_basis()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["albedo_mean"], 0.5)
    np.testing.assert_allclose(m["albedo_basis"].reshape(3 * n, -1),
                               np.asarray(model.get_color_model().get_rescaled_pca_basis()), rtol=1e-5, atol=1e-7)
    for i, b in enumerate(model.get_expression_model()):
        np.testing.assert_allclose(m["expression_basis"][:, :, i].reshape(-1), np.asarray(b.deformation), atol=1e-6)
    np.testing.assert_allclose(landmark_points(m)[30], m["vertices_mean"][7], atol=1e-6)
    pca_model = eos_mm.MorphableModel(shape, shape, colour, None, [], [])
    eos_mm.save_model(pca_model, str(tmp_path / "eos_pca.bin"))
    m = load_canonical(tmp_path / "eos_pca.bin")
    assert m["expression_kind"] == "pca" and "uv_coords" not in m
    np.testing.assert_allclose(m["expression_basis"], m["identity_basis"], atol=1e-6)


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED_SFM / "sfm_shape_3448.bin").is_file(), reason="../shared/models/sfm absent")
def test_real_surrey_face_model(tmp_path):
    path = SHARED_SFM / "sfm_shape_3448.bin"
    m = load_canonical(path)  # companions found beside it
    v = m["vertices_mean"]
    assert v.shape == (3448, 3) and m["identity_basis"].shape == (3448, 3, 63)
    assert m["expression_kind"] == "blendshapes" and m["expression_basis"].shape[2] == 6
    assert list(m["expression_names"]) == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    defined = m["landmark_faces"] >= 0
    assert defined.sum() == 50  # ibug_to_sfm.txt leaves out the 16 contour points and 61, 65
    assert not defined[[0, 7, 60, 64]].any() and defined[8]
    width = v[:, 0].max() - v[:, 0].min()
    assert 130 < width < 160  # mm
    pts = landmark_points(m)
    nose_tip, chin = pts[30], pts[8]
    assert nose_tip[2] > np.percentile(v[:, 2], 99) - 5  # nose tip near the front (+z)
    assert abs(nose_tip[0]) < 5 and chin[1] < nose_tip[1] - 40  # chin below the nose (y up)
    assert pts[36, 0] < 0 < pts[45, 0]  # subject's right eye corner on the viewer's left (x < 0)
    assert np.all(v[m["contour_right"], 0] < 0) and np.all(v[m["contour_left"], 0] > 0)
    assert front_normals_z(m) > 0
    # uv: v points up after the flip, so it grows with y
    assert np.corrcoef(m["uv_coords"][:, 1], v[:, 1])[0, 1] > 0.95

    eos_mm = _eos().morphablemodel
    em = eos_mm.load_model(str(path))
    sm = em.get_shape_model()
    np.testing.assert_array_equal(v.reshape(-1), np.asarray(sm.get_mean(), dtype=np.float32))
    np.testing.assert_allclose(m["identity_basis"].reshape(3 * 3448, -1), np.asarray(sm.get_rescaled_pca_basis()),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose((m["identity_basis"].reshape(3 * 3448, -1) ** 2).sum(0),
                               np.asarray(sm.get_eigenvalues()), rtol=1e-4)
    np.testing.assert_array_equal(m["triangles"], np.asarray(sm.get_triangle_list()))
    uv = np.asarray(em.get_texture_coordinates())
    np.testing.assert_allclose(m["uv_coords"], np.stack([uv[:, 0], 1 - uv[:, 1]], 1), atol=1e-7)
    for i, b in enumerate(eos_mm.load_blendshapes(str(SHARED_SFM / "expression_blendshapes_3448.bin"))):
        np.testing.assert_array_equal(m["expression_basis"][:, :, i].reshape(-1), np.asarray(b.deformation))
    assert_round_trip(m, tmp_path)


# ----------------------------------------------------------------------------- dispatch & errors
def test_open_model(tmp_path, monkeypatch):
    try:
        m = load_canonical("open")
        assert m["source_format"] == "open"
    except FileNotFoundError as exc:
        assert "open_face_model.npz" in str(exc)
    assert format_name("open") == "open"
    truth = mf.write_bfm_front(tmp_path)
    canon = canonical.save(load_canonical(truth["path"]), tmp_path / "open_face_model.npz")
    monkeypatch.setattr(loaders, "open_model_path", lambda: canon)
    assert load_canonical("open")["source_format"] == "bfm_front"
    with pytest.raises(TypeError, match="takes no loader options"):
        load_canonical("open", num_identity=3)


def test_unknown_option_is_a_clear_type_error(tmp_path):
    truth = mf.write_bfm_front(tmp_path)
    with pytest.raises(TypeError, match="unsupported option for a bfm_front model"):
        load_canonical(truth["path"], num_expression=3)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_canonical("/nonexistent/model.mat")


def _resave_mat(src: Path, dst: Path, **changes) -> Path:
    data = {k: v for k, v in scipy.io.loadmat(str(src)).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    scipy.io.savemat(str(dst), data)
    return dst


def _bad_files(tmp: Path):
    """(path, message fragment) for each broken input."""
    bfm = mf.write_bfm2009(tmp, name="good_bfm.mat")
    front = mf.write_bfm_front(tmp, name="good_front.mat")
    n = bfm["n"]
    shape_mu = scipy.io.loadmat(str(bfm["path"]))["shapeMU"]
    yield _resave_mat(bfm["path"], tmp / "no_shapepc.mat", shapePC=None), "missing ['shapePC']"
    yield _resave_mat(bfm["path"], tmp / "nan_mean.mat", shapeMU=np.where(np.arange(3 * n)[:, None] == 5, np.nan,
                                                                          shape_mu)), "'shapeMU' contains NaN"
    yield _resave_mat(bfm["path"], tmp / "tri_range.mat", tl=np.array([[1, 2, n + 5]], float)), "'tl' indices must lie"
    yield _resave_mat(bfm["path"], tmp / "tri_zero.mat", tl=np.array([[0, 1, 2]], float)), "'tl' indices must lie"
    yield _resave_mat(bfm["path"], tmp / "tri_frac.mat", tl=np.array([[1, 2, 3.5]])), "whole-number"
    yield _resave_mat(bfm["path"], tmp / "pc_shape.mat", shapePC=np.ones((7, 3), np.float32)), "'shapePC' must be"
    yield _resave_mat(bfm["path"], tmp / "ev_count.mat", shapeEV=np.ones((2, 1))), "'shapeEV' must hold 5"
    yield _resave_mat(bfm["path"], tmp / "ev_neg.mat", shapeEV=-np.ones((5, 1))), "must not be negative"
    yield _resave_mat(front["path"], tmp / "kp_range.mat", keypoints=np.full((1, 68), 1e6)), "'keypoints' indices"
    yield _resave_mat(front["path"], tmp / "kp_count.mat", keypoints=np.ones((1, 5))), "must list 68"
    yield _resave_mat(front["path"], tmp / "front_id.mat", idBase=np.ones((4, 2))), "'idBase' must be"
    scipy.io.savemat(str(tmp / "other.mat"), {"foo": np.ones(3)})
    yield tmp / "other.mat", "neither BFM 2009"
    (tmp / "hdf5.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    yield tmp / "hdf5.mat", "v7.3"
    (tmp / "garbage.mat").write_bytes(np.random.default_rng(0).bytes(500))
    yield tmp / "garbage.mat", "not a readable MATLAB"

    flame = mf.flame_data()
    for i, (key, value, msg) in enumerate((("v_template", None, "missing ['v_template']"),
                            ("f", np.array([[0, 1, 999]], np.uint32), "'f' indices must lie"),
                            ("shapedirs", np.zeros((99, 3, 200)), "'shapedirs' must be"),
                            ("posedirs", np.zeros((99, 3, 9)), "'posedirs' must be"),
                            ("weights", np.zeros((99, 4)), "'weights' must be"),
                            ("kintree_table", np.array([[4294967295, 3, 1, 1, 1], [0, 1, 2, 3, 4]]), "not an earlier"),
                            ("v_template", np.full((99, 3), np.nan), "'v_template' contains NaN"))):
        data = dict(flame)
        if value is None:
            data.pop(key)
        else:
            data[key] = value
        name = f"flame_bad_{i}.pkl"
        with open(tmp / name, "wb") as f:
            pickle.dump(data, f, protocol=2)
        yield tmp / name, msg
    good = mf.write_flame(tmp, name="good_flame.pkl")["path"]
    raw = good.read_bytes()
    (tmp / "trunc_flame.pkl").write_bytes(raw[: len(raw) // 2])
    yield tmp / "trunc_flame.pkl", "not a readable"
    with open(tmp / "list.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f, protocol=2)
    yield tmp / "list.pkl", "without FLAME's keys"
    with open(tmp / "evil.pkl", "wb") as f:  # a pickle that would call os.system
        f.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueX\x0a\x00\x00\x00v_template"
                b"X\x09\x00\x00\x00shapedirsX\x01\x00\x00\x00fX\x0b\x00\x00\x00J_regressor\x85R.")
    yield tmp / "evil.pkl", "refusing"
    (tmp / "random.pkl").write_bytes(np.random.default_rng(1).bytes(300))
    yield tmp / "random.pkl", "not a readable pickle"

    d = mf.sfm_data()
    sfm_raw = mf.write_eos_model(tmp / "good.bin", d).read_bytes()
    (tmp / "trunc.bin").write_bytes(sfm_raw[:-100])
    yield tmp / "trunc.bin", "truncated"
    (tmp / "trail.bin").write_bytes(sfm_raw + b"\x00\x00")
    yield tmp / "trail.bin", "unexpected bytes"
    (tmp / "version.bin").write_bytes(struct.pack("<I", 0) + sfm_raw[4:])
    yield tmp / "version.bin", "not an eos/SFM"
    bad_tri = dict(d, triangles=np.array([[0, 1, 5000]]))
    mf.write_eos_model(tmp / "tri.bin", bad_tri)
    yield tmp / "tri.bin", "'shape triangles' indices must lie"
    nan = dict(d, eigenvalues=np.array([1.0, np.nan, 1.0, 1.0]))
    mf.write_eos_model(tmp / "nan.bin", nan)
    yield tmp / "nan.bin", "NaN"
    huge = bytearray(sfm_raw)
    huge[4:8] = struct.pack("<i", 3 * 10 ** 8)
    (tmp / "huge.bin").write_bytes(bytes(huge))
    yield tmp / "huge.bin", "truncated"
    (tmp / "random.bin").write_bytes(np.random.default_rng(2).bytes(1000))
    yield tmp / "random.bin", "not an eos/SFM"
    mf.write_blendshapes(tmp / "expression_blendshapes.bin", d["blendshapes"])
    yield tmp / "expression_blendshapes.bin", "blendshapes_file="
    mf.write_exp_pca(tmp, n)
    yield tmp / "Exp_Pca.bin", "expression_file="
    (tmp / "empty.bin").write_bytes(b"")
    yield tmp / "empty.bin", "is empty"

    np.savez(tmp / "plain.npz", a=np.ones(3))
    yield tmp / "plain.npz", "neither a morph3d canonical model nor a FLAME"
    (tmp / "bad.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    yield tmp / "bad.npz", "not a readable .npz"
    (tmp / "model.obj").write_text("v 0 0 0\n")
    yield tmp / "model.obj", "unknown model file type '.obj'"
    shutil.copy(tmp / "good.bin", tmp / "renamed.mat")
    yield tmp / "renamed.mat", "extension says mat but the content looks like cereal"


def test_every_bad_file_is_a_model_format_error_naming_the_file(tmp_path):
    cases = list(_bad_files(tmp_path))
    assert len(cases) > 35
    for path, fragment in cases:
        with pytest.raises(ModelFormatError) as err:
            load_canonical(path)
        msg = str(err.value)
        assert path.name in msg, (path.name, msg)
        assert fragment in msg, (path.name, fragment, msg)


def test_bad_companion_files(tmp_path):
    d = mf.sfm_data()
    path = mf.write_eos_model(tmp_path / "m.bin", d)
    (tmp_path / "map.txt").write_text("[landmark_mappings]\n70 = 3\n")
    (tmp_path / "map2.txt").write_text("[landmark_mappings]\n9 = 99999\n")
    (tmp_path / "map3.txt").write_text("this is = = not toml")
    (tmp_path / "c.json").write_text('{"model_contour": {"right_contour": [1]}}')
    (tmp_path / "bs.bin").write_bytes(mf.cereal_blendshapes(d["blendshapes"])[:-10])
    cases = [({"landmark_mapping": tmp_path / "map.txt"}, "map.txt", "not an iBUG-68 number"),
             ({"landmark_mapping": tmp_path / "map2.txt"}, "map2.txt", "not a vertex index"),
             ({"landmark_mapping": tmp_path / "map3.txt"}, "map3.txt", "TOML"),
             ({"contours_file": tmp_path / "c.json"}, "c.json", "left_contour"),
             ({"blendshapes_file": tmp_path / "bs.bin"}, "bs.bin", "truncated")]
    for options, name, fragment in cases:
        with pytest.raises(ModelFormatError, match=fragment) as err:
            load_canonical(path, **options)
        assert name in str(err.value)
    flame = mf.write_flame(tmp_path)
    np.save(tmp_path / "lmk.npy", np.zeros((5, 3)))
    with pytest.raises(ModelFormatError, match=r"lmk\.npy: expected a dict"):
        load_canonical(flame["path"], landmark_file=tmp_path / "lmk.npy")
    with open(tmp_path / "lmk.pkl", "wb") as f:
        pickle.dump({"lmk_face_idx": np.zeros(51, int), "lmk_b_coords": np.full((51, 3), 0.5)}, f)
    with pytest.raises(ModelFormatError, match=r"lmk\.pkl: 'lmk_b_coords' rows must be finite and sum to 1"):
        load_canonical(flame["path"], landmark_file=tmp_path / "lmk.pkl")
