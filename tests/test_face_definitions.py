"""Face definitions (morph3d.model.face_definitions): the iBUG-68 layout and the region-name vocabulary
that contour, photometric, segmentation and metrics share."""
import numpy as np
import pytest

from morph3d.fitting import nme
from morph3d.fitting.contour import CHIN, INNER, LEFT_JAW, RIGHT_JAW, sliding_landmarks
from morph3d.model import IBUG68, NON_CONTOUR_PARTS, NON_SKIN_PARTS, NUM_LANDMARKS, region_parts, regions_without


def test_groups_partition_the_68_points():
    L = IBUG68
    groups = [L.jaw, L.brow_right, L.brow_left, L.nose_bridge, L.nostrils, L.eye_right, L.eye_left, L.mouth_outer,
              L.mouth_inner]
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(NUM_LANDMARKS)) == list(range(68))
    assert L.jaw == L.jaw_right + (L.chin,) + L.jaw_left
    assert L.inner == tuple(range(17, 68)) == INNER
    assert (RIGHT_JAW, CHIN, LEFT_JAW) == (tuple(range(8)), 8, tuple(range(9, 17)))


def test_mirror_pairs():
    m = np.array(IBUG68.mirror)
    assert sorted(m.tolist()) == list(range(68))
    assert (m[m] == np.arange(68)).all()  # an involution
    assert m[36] == 45 and m[39] == 42 and m[48] == 54 and m[0] == 16 and m[31] == 35
    assert IBUG68.midline == (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)
    # left and right groups swap as wholes
    assert sorted(m[list(IBUG68.eye_right)].tolist()) == list(IBUG68.eye_left)
    assert sorted(m[list(IBUG68.brow_left)].tolist()) == list(IBUG68.brow_right)


def test_mirror_points_flips_and_renumbers():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, size=(2, 68, 2))
    flipped = IBUG68.mirror_points(pts, width=120)
    assert flipped[0, 45, 0] == pytest.approx(119 - pts[0, 36, 0])
    assert flipped[0, 45, 1] == pts[0, 36, 1]
    np.testing.assert_allclose(IBUG68.mirror_points(flipped, width=120), pts)


def test_outer_eye_corners_normalise_nme():
    gt = np.zeros((68, 2))
    gt[36], gt[45] = (10.0, 50.0), (70.0, 50.0)
    pred = gt + np.array([3.0, 4.0])
    assert IBUG68.outer_eye_corners == (36, 45)
    assert nme(pred, gt) == pytest.approx(5.0 / 60.0)


def test_region_vocabulary():
    assert region_parts("mouth_interior") == {"mouth", "interior"}
    assert region_parts("Left-Ear") == {"ears"}
    assert region_parts("skin") == set()
    names = ["skin", "brows", "nose", "mouth_interior", "cheeks", "nostrils", "neck"]
    assert regions_without(names, NON_SKIN_PARTS).tolist() == [True, False, True, False, True, False, False]
    assert regions_without(names, NON_CONTOUR_PARTS).tolist() == [True, False, False, False, True, True, True]
    with pytest.raises(ValueError, match="unknown face parts"):
        regions_without(names, ("beard",))


def test_sliding_landmarks_skip_a_defined_chin():
    valid = np.ones(68, bool)
    q, sides = sliding_landmarks(valid)
    assert q.tolist() == list(range(8)) + list(range(9, 17)) and set(sides.tolist()) == {0, 1}
    valid[8] = False
    q, sides = sliding_landmarks(valid)
    assert q.tolist()[-1] == 8 and sides.tolist()[-1] == 2
