"""PAS preprocessing (Sec. 3.1): exposed side, least-squares similarity, aligned image and segmentation maps."""
from __future__ import annotations

import math

import pytest
import torch

from gan_bridge.face.pas_prep import (LEFT_SIDE, RIGHT_SIDE, apply_transform, exposed_side, landmarks_3d,
                                      posed_landmarks, preprocess, segmentation, similarity_transform,
                                      warp_similarity)
from gan_bridge.face.world import FaceWorld, WorldConfig
from gan_bridge.pas.networks import identity_grid
from morph3d.ops import pixel_sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return FaceWorld(WorldConfig(image_size=48, hair_probability=0.0, clothing_probability=0.0))


@pytest.fixture(scope="module")
def faces(world):
    return world.samples([0, 1, 2])


def similarity(scale, angle_deg, tx, ty, dtype=torch.float64):
    a, b = scale * math.cos(math.radians(angle_deg)), scale * math.sin(math.radians(angle_deg))
    return torch.tensor([[a, -b, tx], [b, a, ty]], dtype=dtype)


def test_similarity_transform_recovers_a_known_transform(faces):
    src = faces.landmarks_2d.double()
    m = torch.stack([similarity(1.3, 20, 5, -3), similarity(0.7, -35, -2, 8), similarity(1.0, 0, 0, 0)])
    dst = apply_transform(m, src)
    torch.testing.assert_close(similarity_transform(src, dst), m, atol=1e-9, rtol=0)
    # least squares: noise on the target moves the estimate only a little, and zero-weight points are ignored
    w = torch.ones(3, 68, dtype=torch.float64)
    w[:, :10] = 0
    bad = dst.clone()
    bad[:, :10] += 50
    torch.testing.assert_close(similarity_transform(src, bad, w), m, atol=1e-9, rtol=0)
    assert (similarity_transform(src, bad) - m).abs().max() > 1


def test_similarity_transform_rejects_degenerate_input():
    pts = torch.ones(1, 68, 2)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(pts, pts)
    with pytest.raises(ValueError, match="B, N >= 2, 2"):
        similarity_transform(pts, pts[:, :5])


def test_warp_similarity_moves_pixels_like_the_landmarks():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 2, 20, 24, generator=g)
    shift = similarity(1.0, 0, 3, -2)[None]
    out = warp_similarity(image, shift)
    torch.testing.assert_close(out[..., 2:17, 3:], image[..., 4:19, :21])
    # a rotation by 90 degrees about a pixel centre permutes pixels exactly
    square = torch.rand(1, 1, 9, 9, generator=g)
    rot = torch.tensor([[[0.0, -1.0, 8.0], [1.0, 0.0, 0.0]]])  # (x, y) -> (8 - y, x)
    torch.testing.assert_close(warp_similarity(square, rot)[0, 0], square[0, 0].flip(0).T)


def test_unaligned_grid_reads_the_aligned_image_back_into_the_source_frame(world, faces):
    lm = landmarks_3d(world.model, faces.params)
    shift = similarity(1.0, 0, 3, -2)[None].expand(3, 2, 3)
    target = torch.cat([apply_transform(shift, lm[..., :2].double()).float(), lm[..., 2:]], -1)
    out = preprocess(faces.image, lm, target)
    back = pixel_sample(out.image_tf, out.unaligned_grid())
    # a whole-pixel shift is undone exactly where I_tf holds I's pixels (away from the repeated edge)
    torch.testing.assert_close(back[..., 4:44, 4:44], faces.image[..., 4:44, 4:44], atol=1e-4, rtol=0)
    # a map of I_tf read through source_grid gives what sampling I_tf itself gives, with one resampling
    g = torch.Generator().manual_seed(1)
    grid = (identity_grid(3, (48, 48)) * 0.8 + 0.02 * torch.randn(3, 48, 48, 2, generator=g)).clamp(-0.85, 0.85)
    torch.testing.assert_close(pixel_sample(faces.image, out.source_grid(grid)), pixel_sample(out.image_tf, grid),
                               atol=1e-4, rtol=0)
    same = preprocess(faces.image, lm, lm)
    torch.testing.assert_close(same.unaligned_grid(), identity_grid(3, (48, 48)), atol=1e-5, rtol=0)


def test_landmarks_3d_projects_to_the_rendered_landmarks(world, faces):
    lm = landmarks_3d(world.model, faces.params)
    assert lm.shape == (3, 68, 3)
    torch.testing.assert_close(lm[..., :2], faces.landmarks_2d)
    assert (lm[:, 30, 2] > lm[:, 0, 2]).all()  # the nose tip is nearer the camera than the jaw's end


@pytest.mark.parametrize("yaw, side", [(40.0, 0), (-40.0, 1)])
def test_exposed_side_follows_the_yaw(world, faces, yaw, side):
    """Yaw > 0 turns the nose to the image right: the subject's right half faces the camera."""
    lm = posed_landmarks(world.model, faces.params, yaw, 0.0, 0.0, absolute=True)
    assert exposed_side(lm).tolist() == [side] * 3


def test_posed_landmarks_turn_and_keep_the_centre(world, faces):
    before = landmarks_3d(world.model, faces.params)
    after = posed_landmarks(world.model, faces.params, 30.0)
    torch.testing.assert_close(after[..., :2].mean(1), before[..., :2].mean(1))
    assert (after[:, 30, 0] - after[:, 27, 0] > before[:, 30, 0] - before[:, 27, 0]).all()  # nose tip to the right
    torch.testing.assert_close(posed_landmarks(world.model, faces.params), before)


def test_preprocess_aligns_the_exposed_side_to_the_target(world, faces):
    lm = landmarks_3d(world.model, faces.params)
    m = torch.stack([similarity(1.2, 15, 4, -3), similarity(0.8, -10, 6, 5), similarity(1.1, 5, -4, 2)])
    target = torch.cat([apply_transform(m, lm[..., :2].double()).float(), lm[..., 2:]], -1)
    out = preprocess(faces.image, lm, target)
    torch.testing.assert_close(out.matrix.double(), m, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.landmarks_tf, target[..., :2], atol=1e-3, rtol=0)
    torch.testing.assert_close(out.image_tf, warp_similarity(faces.image, out.matrix))
    assert out.image_tf.shape == faces.image.shape and out.seg_tf.shape == (3, 10, 48, 48)
    torch.testing.assert_close(out.seg_tf, segmentation(target, (48, 48)), atol=0, rtol=0)
    torch.testing.assert_close(out.seg_target, out.seg_tf)
    torch.testing.assert_close(out.seg_source, segmentation(lm, (48, 48)))
    assert torch.equal(out.side, exposed_side(lm))


def test_preprocess_fits_only_the_exposed_half(world, faces):
    """Moving the hidden half's target landmarks must not change the transform; moving the exposed half must."""
    lm = posed_landmarks(world.model, faces.params, 40.0, absolute=True)  # right half exposed
    target = lm.clone()
    hidden = [i for i in LEFT_SIDE if i not in RIGHT_SIDE]
    target[:, hidden, :2] += 7.0
    out = preprocess(faces.image, lm, target)
    torch.testing.assert_close(out.matrix, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(out.seg_target, segmentation(target, (48, 48)), atol=0, rtol=0)  # J's own map
    assert (out.seg_target != out.seg_tf).any()
    target = lm.clone()
    target[:, [i for i in RIGHT_SIDE if i not in LEFT_SIDE], :2] += 7.0
    assert (preprocess(faces.image, lm, target).matrix[:, :, 2].abs() > 1).any()


def test_preprocess_matches_a_true_pose_pair_better_on_the_face(world):
    """On a same-identity pose pair the aligned I_tf shares more face pixels with J than I does (Fig. 3(g))."""
    pair = FaceWorld(WorldConfig(image_size=48, hair_probability=0.0, clothing_probability=0.0,
                                 backgrounds=("gradient",)), world.model).identity_set(3, 2, vary=("pose", "camera"))
    lm = landmarks_3d(world.model, pair.params)
    out = preprocess(pair.image[:1], lm[:1], lm[1:])
    face = out.seg_target[:, 1:].sum(1, keepdim=True).clamp(max=1)  # J's face region
    err_tf = ((out.image_tf - pair.image[1:]).abs() * face).sum()
    err = ((pair.image[:1] - pair.image[1:]).abs() * face).sum()
    assert err_tf < err


def test_preprocess_errors_are_one_line(faces):
    lm = torch.zeros(3, 68, 3)
    with pytest.raises(ValueError, match="68"):
        preprocess(faces.image, lm[:, :60], lm)
    bad = faces.landmarks_2d.clone()
    bad[0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        preprocess(faces.image, bad, faces.landmarks_2d)
    with pytest.raises(ValueError, match="empty batch"):
        preprocess(faces.image[:0], lm[:0], lm[:0])
    with pytest.raises(ValueError, match="one of each"):
        preprocess(faces.image, faces.landmarks_2d[:2], faces.landmarks_2d)
