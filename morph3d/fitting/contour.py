"""Sliding jaw-contour correspondences (iBUG 0-16), in the manner of eos and 3DDFA.

A photo's jaw landmarks lie on the face's visible outline, which moves over the surface as the head
turns, so they cannot be tied to fixed model vertices. At every fitting iteration each jaw landmark
corresponds to the nearest point (in the image) of the model's projected outline near the jaw:

- the outline edges are the mesh edges of the *contour zone* that are either silhouette edges
  (between a camera-facing and a back-facing triangle) or border edges of the mesh whose triangle
  faces the camera (a face-mask model's rim);
- the contour zone is the model's outline candidates (``contour_right`` and ``contour_left``, the
  subject's right and left) and the vertices within ``ZONE_RADIUS`` x the candidates' width of them,
  without the inner face (the frontal convex hull of the inner landmarks 17-67) and without eye,
  nose, lip, brow and ear regions. On the side turned away this finds the cheek's silhouette; on the
  side facing the camera, the jaw's rim;
- landmarks 0-7 (subject's right) look only at edges on the right half (plus a strip around the
  midline), 9-16 on the left half, the chin (8, when the model does not define it) anywhere. The match
  is a point on an edge (two vertices, interpolated).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import Delaunay, cKDTree

from ..model.face_definitions import IBUG68, NON_CONTOUR_PARTS, regions_without

RIGHT_JAW = IBUG68.jaw_right
LEFT_JAW = IBUG68.jaw_left
INNER = IBUG68.inner
CHIN = IBUG68.chin
RIGHT, LEFT, BOTH = 0, 1, 2
ZONE_RADIUS = 0.45
MIDLINE_STRIP = 0.15


def mesh_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique edges (E, 2) and their adjacent faces (E, 2); the second is -1 on a border edge
    (edges with more than two faces keep the first two)."""
    key = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(faces)), 3)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    first = np.searchsorted(inv[order], np.arange(len(uniq)))
    count = np.bincount(inv, minlength=len(uniq))
    f0 = face[order[first]]
    f1 = np.where(count >= 2, face[order[np.minimum(first + 1, len(order) - 1)]], -1)
    return uniq, np.stack([f0, f1], axis=1)


class ContourSet:
    """The model side of the jaw contour: the zone's vertices, edges and their triangles.

    vertex_ids: (M,) model vertices involved; ``edges`` (E, 2) index into it; ``edge_faces`` (E, 2)
    index ``faces`` (F, 3, also into vertex_ids), -1 for a border edge; ``edge_side`` (E, 3) bool:
    whether an edge may serve RIGHT (column 0), LEFT (1) or BOTH-sided (2, the chin) landmarks.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, contour_right: np.ndarray,
                 contour_left: np.ndarray, region_labels: np.ndarray, region_names: list[str],
                 inner_landmarks: np.ndarray):
        """vertices (N, 3) mean shape, mm; inner_landmarks (L, 3) positions of the defined inner landmarks."""
        cand = np.unique(np.concatenate([np.asarray(contour_right), np.asarray(contour_left)]).astype(np.int64))
        self.available = len(contour_right) >= 2 and len(contour_left) >= 2
        if not self.available:
            return
        allowed = regions_without(region_names, NON_CONTOUR_PARTS)[region_labels]
        width = np.ptp(vertices[cand, 0])
        mid = vertices[cand, 0].mean()
        dist, _ = cKDTree(vertices[cand]).query(vertices, distance_upper_bound=ZONE_RADIUS * width)
        zone = np.isfinite(dist) & allowed
        if len(inner_landmarks) >= 3:
            zone &= Delaunay(inner_landmarks[:, :2]).find_simplex(vertices[:, :2]) < 0
        zone[cand] = True
        ids = np.flatnonzero(zone)
        local = np.full(len(vertices), -1, np.int64)
        local[ids] = np.arange(len(ids))
        edges, edge_faces = mesh_edges(triangles)
        keep = zone[edges].all(axis=1)
        edges, edge_faces = edges[keep], edge_faces[keep]
        used_faces = np.unique(edge_faces[edge_faces >= 0])
        face_local = np.full(len(triangles), -1, np.int64)
        face_local[used_faces] = np.arange(len(used_faces))
        extra = np.setdiff1d(np.unique(triangles[used_faces]), ids)  # corners outside the zone
        self.vertex_ids = np.concatenate([ids, extra])
        local[extra] = len(ids) + np.arange(len(extra))
        x = vertices[edges, 0] - mid  # (E, 2)
        strip = MIDLINE_STRIP * width / 2
        self.edges = torch.from_numpy(local[edges])
        self.edge_faces = torch.from_numpy(np.where(edge_faces >= 0, face_local[np.maximum(edge_faces, 0)], -1))
        self.faces = torch.from_numpy(local[triangles[used_faces]])
        self.edge_side = torch.from_numpy(np.stack([(x <= strip).all(1), (x >= -strip).all(1),
                                                    np.ones(len(x), bool)], axis=1))

    @classmethod
    def from_model(cls, model) -> "ContourSet":
        """The contour set of a :class:`~morph3d.model.MorphableModel` (its mean shape and outline candidates)."""
        mean = model.vertices_mean.detach().cpu().double().numpy()
        inner = model.landmarks(model.vertices_mean[None])[0].detach().cpu().double().numpy()[list(INNER)]
        return cls(mean, model.triangles.cpu().numpy(), model.contour_right.cpu().numpy(),
                   model.contour_left.cpu().numpy(), model.region_labels.cpu().numpy(), model.region_names,
                   inner[np.isfinite(inner).all(1)])

    def outline(self, cam: torch.Tensor, perspective: bool) -> torch.Tensor:
        """(B, E) bool: which zone edges lie on the outline. cam: (B, M, 3) camera-frame ``vertex_ids``, mm."""
        f = self.faces
        v0, v1, v2 = cam[:, f[:, 0]], cam[:, f[:, 1]], cam[:, f[:, 2]]
        normal = torch.cross(v1 - v0, v2 - v0, dim=-1)
        facing = (normal * -v0).sum(-1) > 0 if perspective else normal[..., 2] > 0
        ef = self.edge_faces
        a = facing[:, ef[:, 0]]
        b = facing[:, ef[:, 1].clamp_min(0)]
        border = ef[:, 1] < 0
        return torch.where(border[None], a, a != b)

    def select(self, cam: torch.Tensor, img: torch.Tensor, targets: torch.Tensor, sides: torch.Tensor,
               perspective: bool):
        """Nearest outline points of jaw landmarks.

        cam: (B, M, 3) mm and img: (B, M, 2) px, the posed ``vertex_ids``; targets: (B, Q, 2) px;
        sides: (Q,) RIGHT, LEFT or BOTH. Returns ids (B, Q, 3) into vertex_ids, weights (B, Q, 3) and
        found (B, Q) bool (False when no outline edge was on that side).
        """
        b, q = targets.shape[:2]
        on = self.outline(cam, perspective)
        cols = on.any(0).nonzero()[:, 0]  # edges on the outline in any image of the batch
        ids = torch.zeros(b, q, 3, dtype=torch.long, device=img.device)
        weights = torch.zeros(b, q, 3, dtype=img.dtype, device=img.device)
        if cols.numel() == 0:
            return ids, weights, torch.zeros(b, q, dtype=torch.bool, device=img.device)
        e = self.edges[cols]
        a, c = img[:, e[:, 0]], img[:, e[:, 1]]  # (B, E, 2)
        ab = c - a
        rel = targets[:, :, None] - a[:, None]  # (B, Q, E, 2)
        t = ((rel * ab[:, None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)[:, None]).clamp(0, 1)
        d2 = (rel - t[..., None] * ab[:, None]).square().sum(-1)
        ok = on[:, cols][:, None, :] & self.edge_side[cols][:, sides].T[None]  # (B, Q, E)
        d2 = torch.where(ok, d2, torch.full_like(d2, float("inf")))
        best, k = d2.min(dim=2)
        tt = t.gather(2, k[..., None])[..., 0]
        ek = e[k]  # (B, Q, 2)
        ids = torch.stack([ek[..., 0], ek[..., 1], ek[..., 0]], dim=-1)
        weights = torch.stack([1 - tt, tt, torch.zeros_like(tt)], dim=-1)
        return ids, weights, torch.isfinite(best)


def sliding_landmarks(landmark_valid) -> tuple[torch.Tensor, torch.Tensor]:
    """The jaw landmarks that slide along the outline and the side each may use: (Q,) ids, (Q,) sides.

    All of 0-7 (RIGHT) and 9-16 (LEFT); the chin (8, BOTH) only when the model does not define it.
    landmark_valid: (68,) bool, the landmarks the model defines."""
    queries, sides = [], []
    for group, side in ((RIGHT_JAW, RIGHT), (LEFT_JAW, LEFT), ((CHIN,), BOTH)):
        for i in group:
            if i != CHIN or not bool(landmark_valid[i]):
                queries.append(i)
                sides.append(side)
    return torch.tensor(queries, dtype=torch.long), torch.tensor(sides, dtype=torch.long)
