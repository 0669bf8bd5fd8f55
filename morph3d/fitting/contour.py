"""Sliding jaw-contour correspondences (iBUG 0-16), in the manner of eos.

A photo's jaw landmarks lie on the face's visible outline, which moves over the surface as the head
turns, so they cannot be tied to fixed model vertices. At every fitting iteration:

- on the side facing the camera, each jaw landmark corresponds to the nearest point (in the image) on
  the projected polyline of the model's outline candidates (``contour_right`` for iBUG 0-7, the
  subject's right; ``contour_left`` for iBUG 9-16);
- on the side turned away, the candidates are that polyline plus the mesh silhouette near it
  (vertices of edges between a camera-facing and a back-facing triangle), and the nearest wins.

A chin landmark (iBUG 8) the model does not define uses the nearest point of either polyline.
"""
from __future__ import annotations

import numpy as np
import torch

RIGHT_JAW = tuple(range(0, 8))
LEFT_JAW = tuple(range(9, 17))
CHIN = 8
RIGHT, LEFT, BOTH = 0, 1, 2
_EXCLUDED_REGIONS = {"eye", "eyes", "eyeball", "eyeballs", "nose", "lip", "lips", "mouth", "brow", "brows",
                     "eyebrow", "eyebrows", "teeth", "tongue", "ear", "ears", "hair", "scalp"}


def _interior_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges shared by exactly two faces -> vertex pairs (E, 2) and face pairs (E, 2)."""
    key = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(faces)), 3)
    uniq, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    two = np.flatnonzero(counts[inv] == 2)
    two = two[np.argsort(inv[two], kind="stable")]  # the two faces of each edge side by side
    return uniq[inv[two[::2]]], face[two].reshape(-1, 2)


class ContourSet:
    """The model side of the jaw contour: outline polylines and, per side, a silhouette zone.

    vertex_ids: (M,) the model vertices involved; every other index here points into it.
    polyline[side]: (C,) outline candidates in order; zone_faces[side]: (F, 3); zone_edges[side]
    (E, 2) vertex pairs and zone_edge_faces[side] (E, 2) face pairs of interior edges.

    The zone of a side: vertices on that side, farther than 30 % of the half face width from the
    midline, within the height range of its polyline and not behind it, outside the eye, nose,
    lip, brow and ear regions.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, contour_right: np.ndarray,
                 contour_left: np.ndarray, region_labels: np.ndarray, region_names: list[str]):
        contour_right, contour_left = np.asarray(contour_right), np.asarray(contour_left)
        self.available = len(contour_right) >= 2 and len(contour_left) >= 2
        if not self.available:
            return
        allowed = np.array([not (set(n.lower().replace("-", "_").split("_")) & _EXCLUDED_REGIONS)
                            for n in region_names])[region_labels]
        both = np.concatenate([contour_right, contour_left])
        pts = vertices[both]
        mid = pts[:, 0].mean()
        half = np.abs(pts[:, 0] - mid).max()
        zones = []
        for sign, poly in ((-1.0, contour_right), (1.0, contour_left)):
            p = vertices[poly]
            dx = (vertices[:, 0] - mid) * sign
            zone = ((dx > 0.3 * half) & (vertices[:, 1] >= p[:, 1].min() - 0.05 * half)
                    & (vertices[:, 1] <= p[:, 1].max()) & (vertices[:, 2] >= p[:, 2].min() - 0.05 * half)
                    & allowed)
            zones.append(np.flatnonzero(zone))
        ids = np.unique(np.concatenate([both, *zones]))
        local = np.full(len(vertices), -1, np.int64)
        local[ids] = np.arange(len(ids))
        self.vertex_ids = ids
        self.polyline = [local[contour_right], local[contour_left]]
        self.zone_faces, self.zone_edges, self.zone_edge_faces = [], [], []
        for zone in zones:
            inside = np.zeros(len(vertices), bool)
            inside[zone] = True
            tri = triangles[inside[triangles].all(axis=1)]
            edges, edge_faces = _interior_edges(tri)
            self.zone_faces.append(torch.from_numpy(local[tri]))
            self.zone_edges.append(torch.from_numpy(local[edges]))
            self.zone_edge_faces.append(torch.from_numpy(edge_faces))
        self.polyline = [torch.from_numpy(p) for p in self.polyline]

    # ---- per iteration -----------------------------------------------------------------------
    def silhouette(self, side: int, cam: torch.Tensor, perspective: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Silhouette edges of one side's zone: (B, E) bool mask and the edges (E, 2) (indices into
        vertex_ids). cam: (B, M, 3) camera-frame positions of ``vertex_ids``, mm."""
        faces = self.zone_faces[side]
        v0, v1, v2 = cam[:, faces[:, 0]], cam[:, faces[:, 1]], cam[:, faces[:, 2]]
        normal = torch.cross(v1 - v0, v2 - v0, dim=-1)
        facing = (normal * -v0).sum(-1) > 0 if perspective else normal[..., 2] > 0
        ef = self.zone_edge_faces[side]
        return facing[:, ef[:, 0]] != facing[:, ef[:, 1]], self.zone_edges[side]

    def select(self, cam: torch.Tensor, img: torch.Tensor, targets: torch.Tensor, sides: torch.Tensor,
               away: torch.Tensor, perspective: bool, sliding: bool = True):
        """Correspondences for contour landmarks.

        cam: (B, M, 3) mm and img: (B, M, 2) px, the posed ``vertex_ids``; targets: (B, Q, 2) px
        detected points; sides: (Q,) RIGHT, LEFT or BOTH; away: (B,) the side turned away from the
        camera (RIGHT or LEFT). Returns ids (B, Q, 3) into vertex_ids and weights (B, Q, 3).
        """
        b, q = targets.shape[:2]
        best = torch.full((b, q), float("inf"), dtype=img.dtype, device=img.device)
        ids = torch.zeros(b, q, 3, dtype=torch.long, device=img.device)
        weights = torch.zeros(b, q, 3, dtype=img.dtype, device=img.device)
        for side in (RIGHT, LEFT):
            use = (sides == side) | (sides == BOTH)
            if not use.any():
                continue
            poly = self.polyline[side]
            a, c = img[:, poly[:-1]], img[:, poly[1:]]  # (B, S, 2) segment ends
            ab = c - a
            rel = targets[:, :, None] - a[:, None]  # (B, Q, S, 2)
            t = ((rel * ab[:, None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)[:, None]).clamp(0, 1)
            d2 = (rel - t[..., None] * ab[:, None]).square().sum(-1)
            dist, seg = d2.min(dim=2)
            tt = t.gather(2, seg[..., None])[..., 0]
            better = use[None] & (dist < best)
            best = torch.where(better, dist, best)
            cand = torch.stack([poly[seg], poly[seg + 1], poly[seg]], dim=-1)
            wts = torch.stack([1 - tt, tt, torch.zeros_like(tt)], dim=-1)
            ids = torch.where(better[..., None], cand, ids)
            weights = torch.where(better[..., None], wts, weights)
            if not sliding:
                continue
            mask, edges = self.silhouette(side, cam, perspective)
            cols = mask.any(0).nonzero()[:, 0]  # silhouette edges of any image of the batch
            if cols.numel() == 0:
                continue
            vid = edges[cols].T.reshape(-1)  # both ends of each edge
            ok = mask[:, cols].repeat(1, 2)
            d2 = (targets[:, :, None] - img[:, vid][:, None]).square().sum(-1)  # (B, Q, V)
            d2 = torch.where(ok[:, None], d2, torch.full_like(d2, float("inf")))
            dist, k = d2.min(dim=2)
            better = use[None] & (away[:, None] == side) & (dist < best)
            best = torch.where(better, dist, best)
            v = vid[k]
            one = torch.tensor([1.0, 0.0, 0.0], dtype=img.dtype, device=img.device)
            ids = torch.where(better[..., None], torch.stack([v, v, v], -1), ids)
            weights = torch.where(better[..., None], one.expand(b, q, 3), weights)
        return ids, weights
