"""FFHQ face crops and face-region weights."""
import numpy as np
import pytest
import torch

from gan_bridge.face.crops import face_region_weights, ffhq_crop, ffhq_square, square_to_crop_matrix


def _ring(cx, cy, rx, ry, n, start=np.pi):
    t = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy - ry * np.sin(t)], 1)


def frontal_landmarks(cx=100.0, cy=120.0, s=1.0, angle=0.0):
    """A plausible frontal iBUG-68 layout (eyes level at y - 12, mouth corners at y + 25), scaled by ``s``
    and rotated by ``angle`` radians about the origin of the layout, then moved to (cx, cy)."""
    lm = np.zeros((68, 2))
    t = np.radians(np.linspace(-100, 100, 17))
    lm[0:17] = np.stack([45 * np.sin(t), -5 + 40 * np.cos(t)], 1)
    lm[17:22] = np.stack([np.linspace(-35, -8, 5), np.full(5, -25.0)], 1)
    lm[22:27] = np.stack([np.linspace(8, 35, 5), np.full(5, -25.0)], 1)
    lm[27:31] = np.stack([np.zeros(4), np.linspace(-15, 5, 4)], 1)
    lm[31:36] = np.stack([np.linspace(-8, 8, 5), np.full(5, 10.0)], 1)
    lm[36:42] = _ring(-20, -12, 8, 3, 6)
    lm[42:48] = _ring(20, -12, 8, 3, 6)
    lm[48:60] = _ring(0, 25, 15, 6, 12)
    lm[60:68] = _ring(0, 25, 10, 3, 8)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (lm * s) @ rot.T + [cx, cy]


def test_ffhq_square_geometry():
    c, x, y = ffhq_square(frontal_landmarks())
    # eyes at (80, 108) and (120, 108), mouth corners' midpoint (100, 145): centre 10 % towards the mouth
    assert np.allclose(c, [100, 108 + 0.1 * 37])
    assert np.allclose(y, [-x[1], x[0]])
    assert np.isclose(np.hypot(*x), max(2 * 40, 1.8 * 37))
    assert abs(x[1]) < 1e-9 and x[0] > 0  # upright face: x axis is horizontal, pointing right


def test_crop_is_rotation_and_scale_invariant():
    """The same face rotated and scaled in the photo gives the same crop landmarks."""
    size = 64
    lms = [frontal_landmarks(), frontal_landmarks(cx=300, cy=200, s=2.5, angle=0.4)]
    crops = []
    for lm in lms:
        m = square_to_crop_matrix(*ffhq_square(lm), size)
        crops.append(lm @ m[:, :2].T + m[:, 2])
    assert np.allclose(crops[0], crops[1], atol=1e-6)
    m = square_to_crop_matrix(*ffhq_square(lms[0]), size)
    c, x, y = ffhq_square(lms[0])
    corner = c - x - y
    assert np.allclose(m[:, :2] @ corner + m[:, 2], [-0.5, -0.5])  # outer edge of pixel (0, 0)


def test_crop_samples_the_right_pixels():
    """A photo whose colour encodes position: the crop's pixels carry the positions the matrix names."""
    h, w = 240, 200
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)
    crop = ffhq_crop(img, frontal_landmarks(), 32)
    inv = np.linalg.inv(np.concatenate([crop.matrix, [[0, 0, 1]]]))
    src = inv[:2] @ np.array([16, 16, 1.0])
    got = (crop.image[:2, 16, 16].numpy() + 1) * 127.5
    assert np.allclose(got, src, atol=1.0)


def test_face_region_weights():
    lm = torch.as_tensor(frontal_landmarks(cx=32, cy=30, s=0.5))[None]
    wts = face_region_weights(lm, (64, 64), background=0.25, feather=0)
    assert wts.shape == (1, 1, 64, 64)
    assert wts[0, 0, 32, 32] == 1.0 and wts[0, 0, 0, 0] == 0.25
    assert set(torch.unique(wts).tolist()) == {0.25, 1.0}


def test_world_framing_reproduces_the_worlds_own_crops():
    """A world image cropped by the 'world' framing from its true landmarks keeps about its own framing:
    the square is about the whole image, centred on it (the FFHQ square is 0.48-0.71 of it)."""
    from gan_bridge.face.crops import world_square
    from gan_bridge.face.world import FaceWorld, WorldConfig
    batch = FaceWorld(WorldConfig(image_size=64, split="heldout")).samples(range(40))
    sides, centres = [], []
    for lm in batch.landmarks_2d.double().numpy():
        c, x, y = world_square(lm)
        sides.append(2 * np.hypot(*x) / 64)
        centres.append(c / 64)
    assert 0.9 < np.median(sides) < 1.1
    assert np.allclose(np.median(np.array(centres), 0), [0.5, 0.5], atol=0.04)
    c, x, y = world_square(frontal_landmarks())
    c0, x0, y0 = ffhq_square(frontal_landmarks())
    assert np.isclose(np.hypot(*x), np.hypot(*x0) / 0.593) and c[1] > c0[1] and np.isclose(c[0], c0[0])


def test_alignment_choices_match():
    from gan_bridge.cli._inputs import ALIGN_CHOICES
    from gan_bridge.face.photos import ALIGNMENTS
    assert ALIGN_CHOICES == ALIGNMENTS


@pytest.mark.parametrize("command", [["linet", "reenact", "a.png", "b.png"], ["pas", "rotate", "a.png"]])
def test_commands_that_need_landmarks_refuse_align_none(command, capsys):
    from gan_bridge.cli import main
    with pytest.raises(SystemExit) as exc:
        main([*command, "--weights", "w", "--out", "o", "--align", "none"])
    assert exc.value.code == 2 and "invalid choice: 'none'" in capsys.readouterr().err
