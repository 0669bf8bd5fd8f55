"""LI-Net pieces: landmark images, the identity grid, network shapes and the loss terms of Eqs. 1-9."""
from __future__ import annotations

import math

import pytest
import torch

from gan_bridge.face.linet_prep import grid_faces, head_pose, landmark_image
from gan_bridge.face.world import FaceWorld, WorldConfig
from gan_bridge.linet.baseline import Pix2PixGenerator, conditional_discriminator
from gan_bridge.linet.blocks import adain
from gan_bridge.linet.config import LinetConfig
from gan_bridge.linet.discriminators import image_discriminator, landmark_discriminator
from gan_bridge.linet.generator import ExpressionGenerator
from gan_bridge.linet.losses import (bce_discriminator, bce_generator, cycle_loss, identity_classification_loss,
                                     identity_feature_loss, l1, lsgan_discriminator, lsgan_generator,
                                     perceptual_loss, pose_loss, reconstruction_loss)
from gan_bridge.linet.rotation import FaceRotation, PosePredictor
from gan_bridge.linet.transformer import IdentityClassifier, LandmarkTransformer

torch.set_num_threads(1)
W = dict(base=4, levels=2, max_channels=8)


def test_landmark_image_puts_unit_dots_at_the_points():
    lm = torch.tensor([[[3.0, 5.0], [10.0, 2.0]]])
    img = landmark_image(lm, 16, sigma=1.0)
    assert img.shape == (1, 1, 16, 16)
    assert img[0, 0, 5, 3] == pytest.approx(1.0) and img[0, 0, 2, 10] == pytest.approx(1.0)
    assert img[0, 0, 5, 4] == pytest.approx(math.exp(-0.5), rel=1e-5)  # one pixel right of a dot
    assert img[0, 0, 12, 12] < 1e-6
    hidden = landmark_image(lm, 16, visible=torch.tensor([[True, False]]))
    assert hidden[0, 0, 2, 10] < 1e-6 and hidden[0, 0, 5, 3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        landmark_image(torch.full((1, 68, 2), float("nan")), 16)
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        landmark_image(torch.zeros(68, 2), 16)


def test_grid_shares_expressions_and_poses_across_identities():
    world = FaceWorld(WorldConfig(image_size=16, train_identities=4, hair_probability=0, clothing_probability=0))
    b = grid_faces(world, [(0, 1, 2), (3, 1, 2), (0, 0, 2), (0, 1, 0)])
    p = b.params
    assert torch.equal(p.expression[0], p.expression[1]) and not torch.equal(p.expression[0], p.expression[2])
    pose = head_pose(b)
    assert torch.allclose(pose[0, :2], pose[1, :2]) and torch.allclose(pose[0], pose[2])  # yaw, pitch shared
    assert not torch.allclose(pose[0], pose[3])
    assert torch.equal(p.identity[0], p.identity[2]) and not torch.equal(p.identity[0], p.identity[1])
    assert b.landmarks_2d.shape == (4, 68, 2)
    with pytest.raises(ValueError, match="outside"):
        grid_faces(world, [(4, 0, 0)])


def test_network_shapes():
    L, img = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32) * 2 - 1
    T = LandmarkTransformer(**W)
    assert T(L, L).shape == (2, 1, 32, 32)
    C = IdentityClassifier(7, **W)
    assert C(L).shape == (2, 7) and C.features(L).shape == (2, 8)
    R = FaceRotation(res_blocks=1, **W)
    assert R(img, L).shape == (2, 3, 32, 32) and R(img, L).abs().max() <= 1
    assert PosePredictor(**W)(img).shape == (2, 3)
    G = ExpressionGenerator(res_blocks=1, style_dim=5, **W)
    assert G(img, img, L).shape == (2, 3, 32, 32)
    P = Pix2PixGenerator(res_blocks=1, **W)
    assert P(img, L).shape == (2, 3, 32, 32)
    assert conditional_discriminator(**W)(torch.cat([img, L, img], 1)).shape == (2, 1, 8, 8)
    assert landmark_discriminator(**W)(L).shape == (2, 1, 8, 8)
    assert image_discriminator(**W)(img).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="landmark images"):
        R(img, L[:, :, :16])
    with pytest.raises(ValueError, match="T needs"):
        T(L, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="G needs"):
        G(img, img, L[:1])


def test_transformer_adds_the_shift_to_the_driving_landmarks():
    T = LandmarkTransformer(**W)
    src, drv = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    assert torch.allclose(T(src, drv), drv + T.shift(src, drv))
    last = T.d1.net[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
    assert torch.equal(T(src, drv), drv)
    # E1 sees the source: changing it changes the output once the decoder is live again
    torch.nn.init.normal_(last.weight)
    assert not torch.allclose(T(src, drv), T(torch.rand_like(src), drv))


def test_expression_code_steers_the_generator():
    G = ExpressionGenerator(res_blocks=1, style_dim=5, **W)
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    a, b = G(img, img, torch.zeros(1, 1, 16, 16)), G(img, img, torch.rand(1, 1, 16, 16))
    assert not torch.allclose(a, b)


def test_adain_sets_channel_statistics():
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    scale, bias = torch.tensor([[0.5, 0.0, -0.5]] * 2), torch.tensor([[1.0, -2.0, 0.0]] * 2)
    y = adain(x, scale, bias)
    assert torch.allclose(y.mean((2, 3)), bias, atol=1e-5)
    assert torch.allclose(y.std((2, 3), unbiased=False), 1 + scale, atol=1e-3)


def test_loss_terms_have_known_values():
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert l1(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mismatched"):
        l1(a, b[:1])
    keep_driving = lambda src, drv: drv  # noqa: E731  (a T that never moves the landmarks)
    assert reconstruction_loss(keep_driving, a, b) == 0
    add_source = lambda src, drv: drv + src  # noqa: E731
    assert reconstruction_loss(add_source, b, a) == pytest.approx(0.5)
    # Eq. 3: T(L_dp, L_hat) vs L_dq; with T(src, drv) = drv + src: |L_hat + L_dp - L_dq|
    assert cycle_loss(add_source, transformed=b, driving=a, driving_at_source_motion=b) == pytest.approx(1.0)
    assert cycle_loss(keep_driving, transformed=b, driving=a, driving_at_source_motion=a) == pytest.approx(0.5)
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert identity_classification_loss(logits, torch.tensor([0, 1])) < 1e-6
    assert identity_classification_loss(logits, torch.tensor([1, 0])) == pytest.approx(20.0, rel=1e-4)
    assert identity_feature_loss(torch.ones(2, 3), torch.zeros(2, 3)) == pytest.approx(1.0)
    zero, big = torch.zeros(3), torch.full((3,), 30.0)
    assert bce_discriminator(zero, zero) == pytest.approx(2 * math.log(2))
    assert bce_discriminator(big, -big) < 1e-6 and bce_discriminator(-big, big) == pytest.approx(60.0, rel=1e-4)
    assert bce_generator(zero) == pytest.approx(math.log(2)) and bce_generator(big) < 1e-6
    assert lsgan_discriminator(torch.ones(3), torch.zeros(3)) == 0
    assert lsgan_discriminator(torch.zeros(3), torch.ones(3)) == pytest.approx(2.0)
    assert lsgan_generator(torch.ones(3)) == 0 and lsgan_generator(torch.full((3,), 3.0)) == pytest.approx(4.0)
    p = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    assert pose_loss(p, torch.zeros(2, 3)) == pytest.approx((0.01 + 0.04 + 0.09) / 2)
    with pytest.raises(ValueError, match="shape"):
        pose_loss(p, torch.zeros(2, 2))


def test_perceptual_loss_sums_the_vgg_and_identity_terms():
    fake, real = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5)
    lm = torch.zeros(2, 68, 2)
    vgg = lambda a, b: (a - b).abs().mean() * 3  # noqa: E731
    ident = lambda img, landmarks: img.mean((2, 3)) * 2  # noqa: E731  (|0 - 1| per channel)
    assert perceptual_loss(fake, real, vgg) == pytest.approx(1.5)
    assert perceptual_loss(fake, real, None, ident, lm) == pytest.approx(1.0)
    assert perceptual_loss(fake, real, vgg, ident, lm, identity_weight=0.5) == pytest.approx(2.0)
    fake.requires_grad_(True)
    perceptual_loss(fake, real, None, ident, lm).backward()
    assert fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="landmarks"):
        perceptual_loss(fake, real, None, ident)
    with pytest.raises(ValueError, match="lambda_per=0"):
        perceptual_loss(fake, real)


def test_bad_config_is_a_one_line_error():
    with pytest.raises(ValueError, match="stages"):
        LinetConfig(stages=("rotate",))
    assert LinetConfig().stages == ("transformer", "rotation", "generator")
    assert LinetConfig(stages=("pix2pix",)).stages == ("pix2pix",)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*levels"):
        LinetConfig(image_size=36, levels=3)
    with pytest.raises(ValueError, match="lambda_cycle"):
        LinetConfig(lambda_cycle=-1)
    with pytest.raises(ValueError, match="generator_input"):
        LinetConfig(generator_input="x")
