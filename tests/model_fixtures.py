"""Writers of tiny model files in the real formats (BFM .mat, Exp_Pca.bin, FLAME .pkl, eos cereal .bin).

Each writer returns the ground truth it wrote, in canonical units (mm, 0-based, CCW triangles),
so tests can check the loaders' conversions value by value.
"""
from __future__ import annotations

import json
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

RNG_SEED = 7


def face_mesh(nx: int = 9, ny: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A small face-like height field facing +z: (N, 3) mm vertices, (F, 3) CCW-from-outside triangles."""
    xs, ys = np.linspace(-70, 70, nx), np.linspace(-90, 90, ny)
    x, y = np.meshgrid(xs, ys)
    z = 30 * np.exp(-(x ** 2 + (y + 5) ** 2) / (2 * 18 ** 2)) - 0.006 * x ** 2 - 0.002 * y ** 2
    v = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    tris = []
    for r in range(ny - 1):
        for c in range(nx - 1):
            a, b, d, e = r * nx + c, r * nx + c + 1, (r + 1) * nx + c, (r + 1) * nx + c + 1
            tris += [(a, b, e), (a, e, d)]  # counter-clockwise seen from +z
    return v, np.asarray(tris, dtype=np.int64)


def orthonormal(rows: int, k: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    return q


def landmark_vertices(n: int) -> np.ndarray:
    """68 distinct vertex ids (a few undefined, -1) for landmark tests."""
    ids = (np.arange(68) * 7) % n
    ids[[60, 64]] = -1
    return ids


# ----------------------------------------------------------------------------- BFM 2009
def write_bfm2009(folder: Path, k_id: int = 5, k_tex: int = 4, segbin: bool = True,
                  name: str = "01_MorphableModel.mat") -> dict:
    """01_MorphableModel.mat: micrometres, 1-based clockwise ``tl`` (as BFM ships it)."""
    rng = np.random.default_rng(RNG_SEED)
    v_mm, tri = face_mesh()
    n = v_mm.shape[0]
    pc = orthonormal(3 * n, k_id, rng)
    ev = np.linspace(40000, 5000, k_id)  # standard deviations, micrometres
    tex_mu = rng.uniform(60, 220, (n, 3))
    tex_pc = orthonormal(3 * n, k_tex, rng)
    tex_ev = np.linspace(300, 50, k_tex)
    seg = np.zeros((n, 4), dtype=np.uint8)
    seg[v_mm[:, 1] > 30, 1] = 1                       # eyes band
    seg[np.hypot(v_mm[:, 0], v_mm[:, 1] + 5) < 25, 0] = 1  # nose (claims overlaps first)
    seg[v_mm[:, 1] < -40, 2] = 1                      # mouth
    seg[:, 3] = 1                                     # rest of the face covers everything
    data = {
        "shapeMU": (v_mm * 1000).reshape(-1, 1).astype(np.float32),
        "shapePC": pc.astype(np.float32), "shapeEV": ev.reshape(-1, 1).astype(np.float32),
        "texMU": tex_mu.reshape(-1, 1).astype(np.float32), "texPC": tex_pc.astype(np.float32),
        "texEV": tex_ev.reshape(-1, 1).astype(np.float32),
        "tl": (tri[:, [0, 2, 1]] + 1).astype(np.float64),  # clockwise, 1-based doubles
    }
    if segbin:
        data["segbin"] = seg
    scipy.io.savemat(str(folder / name), data)
    f32 = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
    return {
        "path": folder / name, "n": n, "triangles": tri,
        "mean_mm": f32["shapeMU"].reshape(-1, 3) / 1000,
        "identity_mm": (f32["shapePC"] * f32["shapeEV"].reshape(-1)).reshape(n, 3, k_id) / 1000,
        "albedo": f32["texMU"].reshape(-1, 3) / 255,
        "albedo_basis": (f32["texPC"] * f32["texEV"].reshape(-1)).reshape(n, 3, k_tex) / 255,
        "segbin": seg,
    }


def write_exp_pca(folder: Path, n_model: int, drop=(0, 1, 9), k: int = 3, std_file: bool = True,
                  index_file: bool = True) -> dict:
    """Exp_Pca.bin on the BFM vertices minus ``drop``, plus std_exp.txt and BFM_exp_idx.mat."""
    rng = np.random.default_rng(RNG_SEED + 1)
    keep = np.setdiff1d(np.arange(n_model), np.asarray(drop))
    m = keep.shape[0]
    mu = rng.standard_normal(3 * m).astype(np.float32) * 100
    pc = orthonormal(3 * m, k, rng).astype(np.float32)  # (3m, K) columns
    std = np.linspace(20000, 8000, k)
    with open(folder / "Exp_Pca.bin", "wb") as f:
        f.write(struct.pack("<i", k))
        f.write(mu.astype("<f4").tobytes())
        f.write(pc.T.astype("<f4").tobytes())  # K rows of 3m values
    if std_file:
        np.savetxt(folder / "std_exp.txt", std)
    if index_file:
        scipy.io.savemat(str(folder / "BFM_exp_idx.mat"), {"trimIndex": (keep + 1).reshape(-1, 1).astype(np.int32)})
    return {"path": folder / "Exp_Pca.bin", "keep": keep,
            "expression_mm": (pc.astype(np.float64) * std).reshape(m, 3, k) / 1000}


def write_bfm_front(folder: Path, name: str = "BFM_model_front.mat", keypoints: bool = True,
                    skinmask: bool = True, source: dict | None = None) -> dict:
    """Deep3DFaceRecon's BFM_model_front.mat (units of 1e5 micrometres, pre-scaled bases, 0..255 colour).

    With ``source`` (a :func:`write_bfm2009` result) the crop is BFM's own vertices, as in the real file.
    """
    rng = np.random.default_rng(RNG_SEED + 2)
    v_mm, tri = face_mesh()
    if source is not None:
        v_mm = source["mean_mm"]
    n = v_mm.shape[0]
    crop = np.arange(3, n)  # the crop drops the first vertices; triangles re-indexed
    remap = np.full(n, -1)
    remap[crop] = np.arange(crop.shape[0])
    tri_c = remap[tri]
    tri_c = tri_c[(tri_c >= 0).all(axis=1)]
    m = crop.shape[0]
    kp = (np.arange(68) * 5) % m
    data = {
        "meanshape": (v_mm[crop] * 1000 / 1e5).reshape(1, -1).astype(np.float32),
        "idBase": (rng.standard_normal((3 * m, 6)) * 0.02).astype(np.float32),
        "exBase": (rng.standard_normal((3 * m, 4)) * 0.01).astype(np.float32),
        "meantex": rng.uniform(60, 220, (1, 3 * m)).astype(np.float32),
        "texBase": (rng.standard_normal((3 * m, 5)) * 10).astype(np.float32),
        "tri": (tri_c + 1).astype(np.float64),
        "point_buf": np.ones((m, 8)), "frontmask2_idx": np.arange(1, m + 1).reshape(-1, 1),
        "tri_mask2": (tri_c + 1).astype(np.float64),
    }
    if keypoints:
        data["keypoints"] = (kp + 1).reshape(1, -1).astype(np.float64)
    skin = (np.abs(v_mm[crop, 0]) < 40).astype(np.float64)
    if skinmask:
        data["skinmask"] = skin.reshape(1, -1)
    scipy.io.savemat(str(folder / name), data)
    return {**{k: np.asarray(v, dtype=np.float64) for k, v in data.items()},
            "path": folder / name, "crop": crop, "triangles": tri_c, "keypoint_ids": kp, "skin": skin}


# ----------------------------------------------------------------------------- FLAME
class _FakeChumpy:
    """Installs a stand-in ``chumpy`` package (``Ch`` pickles like the real one) while pickling."""

    def __enter__(self):
        ch_mod = types.ModuleType("chumpy.ch")
        reo_mod = types.ModuleType("chumpy.reordering")

        class Ch:
            def __init__(self, x):
                self.x = np.asarray(x, dtype=np.float64)
                self._dirty_vars, self._itr, self._depends_on_deps = set(), None, {}
                self._make_dense, self._make_sparse = False, False

        class transpose:  # an expression node: no 'x' of its own
            def __init__(self, a):
                self.a, self.axes = a, None

        for cls, mod in ((Ch, ch_mod), (transpose, reo_mod)):
            cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
            setattr(mod, cls.__name__, cls)
        pkg = types.ModuleType("chumpy")
        pkg.ch, pkg.reordering, pkg.Ch = ch_mod, reo_mod, Ch
        self.saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
        sys.modules.update({"chumpy": pkg, "chumpy.ch": ch_mod, "chumpy.reordering": reo_mod})
        return pkg

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def flame_data() -> dict:
    """Arrays of a tiny FLAME: 5 joints (global, neck, jaw, eyes), 300 + 100 shape directions, metres."""
    rng = np.random.default_rng(RNG_SEED + 3)
    v_mm, tri = face_mesh()
    n, j = v_mm.shape[0], 5
    v = v_mm / 1000
    weights = np.zeros((n, j))
    jaw, half = v_mm[:, 1] < -40, (v_mm[:, 1] >= -40) & (v_mm[:, 1] < -20)
    eye_l = (np.hypot(v_mm[:, 0] - 35, v_mm[:, 1] - 36) < 12)
    eye_r = (np.hypot(v_mm[:, 0] + 35, v_mm[:, 1] - 36) < 12)
    weights[jaw, 2] = 1
    weights[half, 1], weights[half, 2] = 0.5, 0.5
    weights[eye_l, 3] = 1
    weights[eye_r, 4] = 1
    weights[weights.sum(axis=1) == 0, 1] = 1
    reg = np.zeros((j, n))
    for jj, sel in enumerate([np.arange(n), v_mm[:, 1] < -60, v_mm[:, 1] < -20, eye_l, eye_r]):
        idx = np.flatnonzero(sel)
        reg[jj, idx] = 1 / idx.size
    return {
        "v_template": v, "f": tri.astype(np.uint32),
        "shapedirs": rng.standard_normal((n, 3, 400)) * 1e-3,
        "posedirs": rng.standard_normal((n, 3, 36)) * 1e-4,
        "J_regressor": reg, "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
    }


def write_flame(folder: Path, name: str = "generic_model.pkl", protocol: int = 2, data: dict | None = None,
                chumpy_expression: bool = False) -> dict:
    """A FLAME pickle as the official files store it: chumpy ``shapedirs``, sparse ``J_regressor``."""
    data = flame_data() if data is None else data
    with _FakeChumpy() as ch:
        model = dict(data)
        model["shapedirs"] = ch.Ch(data["shapedirs"])
        if chumpy_expression:
            model["shapedirs"] = ch.reordering.transpose(ch.Ch(data["shapedirs"]))
        model["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
        model["J"] = ch.Ch(data["J_regressor"] @ data["v_template"])
        model["bs_style"], model["bs_type"] = "lbs", "lrotmin"
        with open(folder / name, "wb") as f:
            pickle.dump(model, f, protocol=protocol)
    return {"path": folder / name, **data}


def write_flame_landmarks_npy(folder: Path, n_faces: int, with_torch: bool = True) -> dict:
    """DECA-style landmark_embedding.npy: a pickled dict (full 68 + static 51 + torch dynamic)."""
    rng = np.random.default_rng(RNG_SEED + 4)
    faces = (np.arange(68) * 3) % n_faces
    bary = rng.dirichlet(np.ones(3), 68)
    emb = {"full_lmk_faces_idx": faces.reshape(1, 68), "full_lmk_bary_coords": bary.reshape(1, 68, 3),
           "static_lmk_faces_idx": faces[17:], "static_lmk_bary_coords": bary[17:]}
    if with_torch:
        import torch

        emb["dynamic_lmk_faces_idx"] = torch.zeros(79, 17, dtype=torch.long)
    path = folder / "landmark_embedding.npy"
    np.save(path, np.array(emb, dtype=object), allow_pickle=True)
    return {"path": path, "faces": faces, "bary": bary}


def write_flame_static_pkl(folder: Path, n_faces: int) -> dict:
    """FLAME's flame_static_embedding.pkl: 51 landmarks (iBUG 18-68)."""
    rng = np.random.default_rng(RNG_SEED + 5)
    faces = (np.arange(51) * 4) % n_faces
    bary = rng.dirichlet(np.ones(3), 51)
    path = folder / "flame_static_embedding.pkl"
    with open(path, "wb") as f:
        pickle.dump({"lmk_face_idx": faces.astype(np.uint32), "lmk_b_coords": bary}, f, protocol=2)
    return {"path": path, "faces": faces, "bary": bary}


# ----------------------------------------------------------------------------- eos cereal
def _cereal_matrix(a) -> bytes:
    a = np.asarray(a, dtype="<f4")
    if a.ndim == 1:
        a = a[:, None]
    return struct.pack("<ii", *a.shape) + a.tobytes(order="F")  # Eigen: column-major


def _cereal_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _cereal_triangles(tri) -> bytes:
    tri = np.asarray(tri, dtype="<i4").reshape(-1, 3)
    return struct.pack("<Q", tri.shape[0]) + tri.tobytes()


def cereal_pca(mean, basis, eigenvalues, triangles) -> bytes:
    basis = np.asarray(basis).reshape(len(mean), -1) if len(mean) else np.zeros((0, 0))
    return (_cereal_matrix(mean) + _cereal_matrix(basis) + _cereal_matrix(eigenvalues)
            + _cereal_triangles(triangles))


def cereal_blendshapes(shapes) -> bytes:
    out = struct.pack("<Q", len(shapes))
    for name, d in shapes:
        out += _cereal_string(name) + _cereal_matrix(np.asarray(d).reshape(-1))
    return out


def sfm_data(k: int = 4) -> dict:
    """A tiny eos-style shape model in mm with per-vertex uv (v pointing down) and 3 blendshapes."""
    rng = np.random.default_rng(RNG_SEED + 6)
    v, tri = face_mesh()
    n = v.shape[0]
    uv = np.stack([(v[:, 0] + 70) / 140, 1 - (v[:, 1] + 90) / 180], axis=1)  # image-style v
    return {"mean": v.reshape(-1), "basis": orthonormal(3 * n, k, rng), "eigenvalues": np.linspace(900, 100, k),
            "triangles": tri, "uv": uv, "n": n,
            "blendshapes": [(nm, rng.standard_normal(3 * n) * 2) for nm in ("anger", "happiness", "surprise")]}


def write_eos_model(path: Path, d: dict, version: int = 1, expression=None, landmarks=None,
                    uv_triangles=None, color=None) -> Path:
    """An eos MorphableModel cereal file (class version 1-4) from :func:`sfm_data`-like arrays."""
    out = struct.pack("<I", version)
    out += cereal_pca(d["mean"], d["basis"], d["eigenvalues"], d["triangles"])
    out += cereal_pca(*color) if color is not None else cereal_pca(np.zeros(0), np.zeros((0, 0)), np.zeros(0), [])
    if version >= 2:
        if expression is None:
            out += b"\x01"
        elif expression[0] == "pca":
            out += b"\x00" + struct.pack("<i", 0) + cereal_pca(*expression[1])
        else:
            out += b"\x00" + struct.pack("<i", 1) + cereal_blendshapes(expression[1])
    if version >= 3:
        if landmarks is None:
            out += b"\x01"
        else:
            out += b"\x00" + struct.pack("<Q", len(landmarks))
            for name, vid in landmarks.items():
                out += _cereal_string(name) + struct.pack("<i", vid)
    uv = np.asarray(d["uv"], dtype="<f8")
    out += struct.pack("<Q", uv.shape[0]) + uv.tobytes()
    if version >= 4:
        out += _cereal_triangles(uv_triangles if uv_triangles is not None else np.zeros((0, 3)))
    path.write_bytes(out)
    return path


def write_blendshapes(path: Path, shapes) -> Path:
    path.write_bytes(cereal_blendshapes(shapes))
    return path


def write_ibug_mapping(path: Path, ids) -> Path:
    """eos's ibug_to_sfm.txt TOML: 1-based iBUG id = 0-based vertex (undefined ids left out)."""
    lines = ["# iBUG-68 to model vertex", "[landmark_mappings]"]
    lines += [f"{i + 1} = {int(v)}  # point {i + 1}" for i, v in enumerate(ids) if v >= 0]
    lines += ["", "[contour_landmarks]", "right = [ 1, 2 ]", "left = [ 10, 11 ]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_contours(path: Path, right, left) -> Path:
    path.write_text(json.dumps({"model_contour": {"right_contour": [int(i) for i in right],
                                                  "left_contour": [int(i) for i in left]}}, indent=2))
    return path
