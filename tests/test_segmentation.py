import numpy as np
import pytest
import torch

from morph3d.render import (LANDMARK_CLASS, LANDMARK_CLASSES, interpolate, landmark_segmentation, polygon_mask,
                            rasterize_face, region_class_names, region_segmentation)
from render_fixtures import face_landmarks_2d, sphere_model


def _inside_reference(poly: np.ndarray, x: float, y: float) -> bool:
    """Even-odd rule, one point at a time."""
    inside = False
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


def test_polygon_fill_matches_a_pointwise_crossing_test():
    g = torch.Generator().manual_seed(0)
    polys = torch.rand(3, 7, 2, generator=g, dtype=torch.float64) * 20 - 1  # self-intersecting, partly outside
    polys[2, :, 0] *= 0.5
    mask = polygon_mask(polys, (18, 21))
    assert mask.shape == (3, 18, 21)
    for b in range(3):
        ref = np.array([[_inside_reference(polys[b].numpy(), x, y) for x in range(21)] for y in range(18)])
        assert (mask[b].numpy() == ref).all()
    # a square covers exactly the pixel centres inside it
    square = torch.tensor([[[2.5, 1.5], [6.5, 1.5], [6.5, 4.5], [2.5, 4.5]]])
    m = polygon_mask(square, (8, 8))[0]
    assert m.sum() == 12 and m[2:5, 3:7].all()


def test_landmark_segmentation_regions_hold_their_landmarks():
    lm = face_landmarks_2d(128, open_mouth=6.0)
    labels, onehot = landmark_segmentation(lm, (128, 128))
    assert labels.shape == (1, 1, 128, 128) and labels.dtype == torch.long
    assert onehot.shape == (1, len(LANDMARK_CLASSES), 128, 128)
    torch.testing.assert_close(onehot.sum(1), torch.ones(1, 128, 128))  # disjoint and complete
    assert (onehot.argmax(1, keepdim=True) == labels).all()

    def label_at(pt):
        x, y = (int(round(float(c))) for c in pt)
        return LANDMARK_CLASSES[int(labels[0, 0, y, x])]

    pts = lm[0]
    assert label_at(pts[36:42].mean(0)) == "eye_right" and label_at(pts[42:48].mean(0)) == "eye_left"
    assert all(label_at(pts[k]) == "brow_right" for k in range(17, 22))
    assert all(label_at(pts[k]) == "brow_left" for k in range(22, 27))
    assert label_at(pts[30]) == "nose" and label_at((pts[27] + pts[33]) / 2) == "nose"
    assert label_at(pts[60:68].mean(0)) == "inner_mouth"
    assert label_at((pts[51] + pts[62]) / 2) == "upper_lip" and label_at((pts[57] + pts[66]) / 2) == "lower_lip"
    assert label_at((pts[3] + pts[31]) / 2) == "skin" and label_at((pts[13] + pts[35]) / 2) == "skin"
    assert label_at(pts[19] - torch.tensor([0.0, 4.0])) == "skin"  # forehead above the brow
    assert labels[0, 0, 2, 2] == 0 and labels[0, 0, 125, 64] == 0  # corners and below the chin
    # every class is present, each region is one compact blob around its landmarks
    present = set(labels.unique().tolist())
    assert present == set(range(len(LANDMARK_CLASSES)))
    ys, xs = torch.nonzero(labels[0, 0] == LANDMARK_CLASS["eye_left"], as_tuple=True)
    assert xs.min() >= pts[42:48, 0].min() - 1 and xs.max() <= pts[42:48, 0].max() + 1
    assert ys.min() >= pts[42:48, 1].min() - 1 and ys.max() <= pts[42:48, 1].max() + 1


def test_landmark_segmentation_is_batched_and_follows_the_landmarks():
    lm = face_landmarks_2d(96)
    moved = lm + torch.tensor([7.0, -4.0])
    labels, _ = landmark_segmentation(torch.cat([lm, moved]), (96, 96))
    # integer shift: the second map is the first one shifted
    assert (labels[1, 0, 0:96 - 4 - 10, 7:] == labels[0, 0, 4:96 - 10, :96 - 7]).all()
    closed = face_landmarks_2d(96, open_mouth=0.0)
    lab_closed, _ = landmark_segmentation(closed, (96, 96))
    assert (lab_closed == LANDMARK_CLASS["inner_mouth"]).sum() < (labels[0] == LANDMARK_CLASS["inner_mouth"]).sum()
    with pytest.raises(ValueError, match="68, 2"):
        landmark_segmentation(torch.zeros(1, 5, 2), (32, 32))
    with pytest.raises(ValueError, match="image_size"):
        landmark_segmentation(lm, (0, 32))


def test_region_segmentation_matches_the_nearest_vertex():
    model = sphere_model()
    p = model.default_params(2, (64, 64))
    p.rotation[1] = torch.tensor([0.8, 0.3, 0.0])
    labels, onehot = region_segmentation(model, p)
    assert region_class_names(model) == ["background", "front", "right", "left"]
    assert labels.shape == (2, 1, 64, 64) and onehot.shape == (2, 4, 64, 64)
    torch.testing.assert_close(onehot.sum(1), torch.ones(2, 64, 64))
    geo, _, rast = rasterize_face(model, p)
    fg = rast[..., 3] > 0
    assert ((labels[:, 0] == 0) == ~fg).all()
    # the surface point behind each pixel, and the region of the mesh vertex nearest to it in 3D
    pts = interpolate(geo.vertices_cam, rast, model.triangles)[fg]  # (P, 3)
    batch = torch.nonzero(fg)[:, 0]
    dist = torch.cdist(pts[:, None], geo.vertices_cam[batch])[:, 0]  # (P, N)
    nearest_region = model.region_labels[dist.argmin(-1)] + 1
    got = labels[:, 0][fg]
    assert (got == nearest_region).float().mean() > 0.97
    tri = model.triangles[rast[..., 3][fg].long() - 1]
    uniform = (model.region_labels[tri] == model.region_labels[tri[:, :1]]).all(-1)
    assert uniform.sum() > 500 and (got[uniform] == nearest_region[uniform]).all()
    # the two batch items see different regions (the second is turned), and rast input gives the same map
    assert (labels[1] == 2).sum() > (labels[0] == 2).sum() + 50
    again, _ = region_segmentation(model, rast)
    assert (again == labels).all()
    with pytest.raises(TypeError, match="rast"):
        region_segmentation(model, torch.zeros(2, 64, 64))
