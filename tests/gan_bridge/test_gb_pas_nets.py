"""PAS networks and losses: the sampler's identity map, the fused sampling of image and segmentation, the generator
and projection discriminator shapes, and the loss formulas (Eqs. 1-3, 7, 11, 12, 14)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gan_bridge.pas.networks as nets
from gan_bridge.pas.losses import (dice_loss, discriminator_hinge, displacement_tv, generator_hinge, identity_loss, l1,
                                   occlude, pas_pixel_loss, total_variation)
from gan_bridge.pas.networks import (ConditionalInstanceNorm, InpaintGenerator, PixelAttentionSampling,
                                     ProjectionDiscriminator, SelfAttention, identity_grid, landmark_code)

torch.set_num_threads(1)
S = 32


def tiny_pas():
    return PixelAttentionSampling(S, base=4, levels=3, feature_dim=32, sampler_hidden=(32,), max_channels=16)


def inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, S, S, generator=g) * 2 - 1
    seg = F.one_hot(torch.randint(10, (b, S, S), generator=g), 10).permute(0, 3, 1, 2).float()
    lm = torch.rand(b, 68, 3, generator=g) * S
    return image, seg, lm


def test_untrained_sampler_is_the_identity_map_through_pixel_sample():
    image, seg, lm = inputs()
    out, seg_out, grid = tiny_pas()(image, seg, lm)
    torch.testing.assert_close(grid, identity_grid(2, (S, S)), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)
    torch.testing.assert_close(seg_out, seg, atol=1e-5, rtol=0)
    assert grid.abs().max() < 1


def test_sampling_map_moves_pixels():
    """A map shifted by one pixel (2 / W in x) reads the right neighbour of every pixel."""
    image, seg, _ = inputs()
    grid = identity_grid(2, (S, S)).clone()
    grid[..., 0] += 2.0 / S
    out, seg_out = nets.sample_pair(image, seg, grid)
    torch.testing.assert_close(out[..., :-1], image[..., 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(seg_out[..., :-1], seg[..., 1:], atol=1e-5, rtol=0)
    assert out[..., -1].abs().max() < 0.6  # half of the last column reads the zero padding


def test_pas_samples_image_and_segmentation_in_one_fused_call(monkeypatch):
    calls = []
    real = nets.pixel_sample

    def spy(inputs, grid, *args, **kwargs):
        calls.append([tuple(x.shape) for x in inputs] if isinstance(inputs, (list, tuple)) else [tuple(inputs.shape)])
        return real(inputs, grid, *args, **kwargs)

    monkeypatch.setattr(nets, "pixel_sample", spy)
    image, seg, lm = inputs()
    tiny_pas()(image, seg, lm)
    assert calls == [[(2, 3, S, S), (2, 10, S, S)]]


def test_fused_gradients_reach_the_map_through_image_and_segmentation_alike():
    """d/dgrid and d/dinputs of the fused call equal grid_sample's, for the image and the segmentation map."""
    image, seg, _ = inputs()
    image.requires_grad_(True)
    seg.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    grid = (identity_grid(2, (S, S)) + 0.05 * torch.randn(2, S, S, 2, generator=g)).requires_grad_(True)
    wi, ws = torch.randn(2, 3, S, S, generator=g), torch.randn(2, 10, S, S, generator=g)
    for which in ("image", "seg"):
        out_i, out_s = nets.sample_pair(image, seg, grid)
        loss = (out_i * wi).sum() if which == "image" else (out_s * ws).sum()
        got = torch.autograd.grad(loss, [grid, image, seg], allow_unused=True)
        ref_in = image if which == "image" else seg
        ref_out = F.grid_sample(ref_in, grid, align_corners=False)
        ref = torch.autograd.grad((ref_out * (wi if which == "image" else ws)).sum(), [grid, ref_in])
        torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[1 if which == "image" else 2], ref[1], atol=1e-5, rtol=1e-5)
        assert got[0].abs().sum() > 0


def test_pas_parameters_learn_from_the_segmentation_loss_alone():
    pas = tiny_pas()
    with torch.no_grad():
        pas.sampler.out.weight.normal_(0, 0.01)
    image, seg, lm = inputs()
    _, seg_out, _ = pas(image, seg, lm)
    dice_loss(seg.roll(1, -1), seg_out).backward()
    assert pas.sampler.out.weight.grad.abs().sum() > 0
    assert pas.embedder.stem.conv.weight.grad.abs().sum() > 0


def test_target_landmarks_change_the_sampling_map():
    pas = tiny_pas()
    with torch.no_grad():
        pas.sampler.out.weight.normal_(0, 0.05)
        for m in pas.modules():
            if isinstance(m, ConditionalInstanceNorm):
                m.affine.weight.normal_(0, 0.1)
    image, seg, lm = inputs()
    a = pas.sampling_map(image, lm)
    b = pas.sampling_map(image, lm.flip(1))
    assert (a - b).abs().max() > 1e-4


def test_landmark_code_maps_pixel_centres_to_unit_range():
    lm = torch.tensor([[[0.0, 0.0, 0.0]] * 34 + [[S - 1.0, S - 1.0, S / 2]] * 34])
    code = landmark_code(lm, (S, S)).view(1, 68, 3)
    torch.testing.assert_close(code[0, 0], torch.tensor([1 / S - 1, 1 / S - 1, 0.0]))
    torch.testing.assert_close(code[0, -1], torch.tensor([1 - 1 / S, 1 - 1 / S, 1.0]))
    with pytest.raises(ValueError, match="68, 3"):
        landmark_code(torch.zeros(1, 68, 2), (S, S))


def test_self_attention_starts_as_identity_and_mixes_positions():
    att = SelfAttention(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(att(x), x)
    with torch.no_grad():
        att.gain.fill_(1.0)
    y = att(x)
    x2 = x.clone()
    x2[:, :, 0, 0] += 5
    assert (att(x2) - y)[:, :, 3, 3].abs().max() > 0  # a far position changes too


def test_generator_and_discriminator_shapes_and_conditioning():
    G = InpaintGenerator(S, base=4, levels=3, max_channels=16, identity_dim=8, identity_hidden=4)
    D = ProjectionDiscriminator(S, base=4, levels=3, max_channels=16).eval()  # no power iteration per call
    image, _, lm = inputs()
    ident = torch.randn(2, 8)
    out = G(image, lm, ident)
    assert out.shape == (2, 3, S, S) and out.abs().max() <= 1
    torch.testing.assert_close(out, image.clamp(-0.999, 0.999), atol=1e-5, rtol=0)  # residual: starts as identity
    with torch.no_grad():
        G.out.weight.normal_(0, 0.3)
        for m in G.modules():
            if isinstance(m, ConditionalInstanceNorm):
                m.affine.weight.normal_(0, 0.3)
    assert (G(image, lm, ident) - G(image, lm, -ident)).abs().max() > 1e-4
    assert (G(image, lm, ident) - G(image, lm * 0.5, ident)).abs().max() > 1e-4
    scores = D(image, lm)
    assert scores.shape == (2,)
    assert (D(image, lm) - D(image, lm * 0.5)).abs().max() > 0  # the projection term sees the pose
    with pytest.raises(ValueError, match="identity features"):
        G(image, lm, None)
    with pytest.raises(ValueError, match="32 px"):
        G(image[..., :16, :16], lm, ident)


def test_sampler_starts_from_the_given_map():
    pas = PixelAttentionSampling(S, base=4, levels=3, feature_dim=16, sampler_hidden=(16,), max_channels=16,
                                 attention_levels=(2,))
    image, seg, lm = inputs()
    start = identity_grid(2, (S, S)) * 0.5 + 0.1  # a zoom and shift
    _, _, grid = pas(image, seg, lm, start)
    torch.testing.assert_close(grid, start)
    torch.testing.assert_close(pas(image, seg, lm)[2], identity_grid(2, (S, S)))
    with pytest.raises(ValueError, match="start map"):
        pas(image, seg, lm, start[:, :8])


def test_residual_generator_keeps_each_images_colour_and_the_direct_one_writes_its_own():
    """The residual output reaches a far-off input colour through no normalisation; the paper's direct output must
    rebuild it through instance-normalised decoder levels."""
    torch.manual_seed(0)
    image, _, lm = inputs()
    image = image.clamp(-0.9, 0.9)
    for residual in (True, False):
        G = InpaintGenerator(S, base=4, levels=3, max_channels=16, identity_dim=0, residual=residual)
        with torch.no_grad():
            G.out.weight.normal_(0, 0.01)
        shifted = (image + 0.05).clamp(-1, 1)
        change = (G(shifted, lm) - G(image, lm)).mean().item()
        if residual:
            assert change == pytest.approx(0.05, abs=0.01)  # the input's brightness passes straight through
        else:
            assert abs(change) < 0.01  # instance norm removes the input's mean shift


# ---- losses ------------------------------------------------------------------------------------


def test_pixel_loss_weights_reconstruction_by_a_tenth():
    a = torch.zeros(2, 3, 4, 4)
    assert l1(a, a + 0.5).item() == pytest.approx(0.5)
    assert pas_pixel_loss(a, a, a, a + 1).item() == pytest.approx(0.1)
    assert pas_pixel_loss(a, a + 1, a, a).item() == pytest.approx(1.0)


def test_dice_loss_values():
    seg = F.one_hot(torch.tensor([[[0, 1], [2, 2]]]), 3).permute(0, 3, 1, 2).float()
    assert dice_loss(seg, seg).item() == pytest.approx(0.0, abs=1e-5)
    other = F.one_hot(torch.tensor([[[1, 2], [0, 0]]]), 3).permute(0, 3, 1, 2).float()
    assert dice_loss(seg, other).item() == pytest.approx(3.0, abs=1e-5)  # every class disjoint: sum of 1s
    half = F.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).permute(0, 3, 1, 2).float()
    # class 0: 2*1/(1+2); class 1: 1; class 2: 2*1/(2+1)
    assert dice_loss(seg, half).item() == pytest.approx((1 - 2 / 3) + 0 + (1 - 2 / 3), abs=1e-5)


def test_displacement_tv_is_zero_for_identity_and_translation_and_grows_with_noise():
    grid = identity_grid(2, (8, 8))
    assert displacement_tv(grid).item() == 0
    assert displacement_tv(grid + 0.3).item() == pytest.approx(0, abs=1e-12)
    assert total_variation(grid.permute(0, 3, 1, 2)).item() > 0  # the plain TV of the map is not
    noisy = grid + 0.05 * torch.randn(grid.shape, generator=torch.Generator().manual_seed(0))
    assert displacement_tv(noisy).item() > 10 * displacement_tv(grid * 1.01).item()


def test_total_variation_is_eq7_per_element():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 3, 4) * 2  # horizontal steps of 2, none vertical
    assert total_variation(x).item() == pytest.approx(3 * 3 * 4 / 12)
    assert total_variation(x.transpose(2, 3)).item() == pytest.approx(3 * 3 * 4 / 12)
    assert total_variation(torch.ones(2, 3, 5, 5)).item() == 0


def test_hinge_and_identity_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert discriminator_hinge(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert generator_hinge(fake).item() == pytest.approx(1.0)
    assert identity_loss(torch.ones(2, 4), torch.zeros(2, 4)).item() == pytest.approx(1.0)


def test_occlusion_boxes():
    g = torch.Generator().manual_seed(0)
    images = torch.ones(8, 3, 20, 20)
    out, mask = occlude(images, g, 0.2, 0.4)
    frac = mask.mean((1, 2, 3))
    assert (frac >= 0.2 * 0.2 - 1e-6).all() and (frac <= 0.4 * 0.4 + 1e-6).all()
    torch.testing.assert_close(out, images * (1 - mask))
