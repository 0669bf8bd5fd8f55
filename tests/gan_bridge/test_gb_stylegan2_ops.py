"""StyleGAN2 ops against direct numpy / plain-conv references, and float64 gradchecks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gan_bridge.networks.stylegan2.layers import minibatch_stddev
from gan_bridge.networks.stylegan2.ops import (bias_act, conv2d_resample, downsample2d, fused_leaky_relu,
                                               modulated_conv2d, setup_filter, upfirdn2d, upsample2d)


def upfirdn2d_numpy(x, f, up, down, pad):
    """Direct definition: zero-insert, pad/crop, true 2-D convolution by explicit sums, decimate."""
    x0, x1, y0, y1 = pad
    b, c, h, w = x.shape
    u = np.zeros((b, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0): u.shape[2] - max(-y1, 0), max(-x0, 0): u.shape[3] - max(-x1, 0)]
    fh, fw = f.shape
    oh, ow = u.shape[2] - fh + 1, u.shape[3] - fw + 1
    out = np.zeros((b, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(fh):
                for bb in range(fw):  # convolution: filter index reversed
                    out[:, :, i, j] += u[:, :, i + a, j + bb] * f[fh - 1 - a, fw - 1 - bb]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2, 0, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (0, 0, 1, 0)), (1, 1, (-1, 2, 1, -1)), (3, 1, (1, 1, 2, 2))])
def test_upfirdn2d_matches_numpy_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    f = rng.standard_normal((3, 4))  # asymmetric, so a flip error would show
    got = upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=pad).numpy()
    np.testing.assert_allclose(got, upfirdn2d_numpy(x, f, up, down, pad), atol=1e-10)


def test_flip_filter_is_correlation():
    x, f = torch.randn(1, 1, 6, 6, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    np.testing.assert_allclose(upfirdn2d(x, f, flip_filter=True).numpy(),
                               F.conv2d(x, f[None, None]).numpy(), atol=1e-12)


def test_resampling_shapes_and_dc_gain():
    f = setup_filter([1, 3, 3, 1])
    assert torch.isclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 8, 8), 3.0)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # A constant image stays constant away from the zero-padded border.
    assert torch.allclose(up[..., 3:-3, 3:-3], torch.tensor(3.0)) and torch.allclose(down[..., 1:-1, 1:-1],
                                                                                      torch.tensor(3.0))


def _upsample_conv_reference(x, w, f):
    """Zero-insert by 2, true convolution with w (padding k-1), then the FIR filter x4, cropped to 2H."""
    k = w.shape[-1]
    z = upfirdn2d(x, torch.ones(1, 1, dtype=x.dtype), up=2, padding=(0, -1, 0, -1))  # (2H - 1) samples
    y = F.conv2d(z, w.flip([2, 3]), padding=k - 1)  # full convolution: (2H - 1) + k - 1
    return upfirdn2d(y, f, padding=(1, 1, 1, 1), gain=4)


def test_conv2d_resample_up_and_down_match_compositions():
    torch.manual_seed(0)
    f = setup_filter().double()
    x, w = torch.randn(2, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    got = conv2d_resample(x, w, f=f, up=2, padding=1)
    assert got.shape == (2, 4, 10, 10)
    np.testing.assert_allclose(got.numpy(), _upsample_conv_reference(x, w, f).numpy(), atol=1e-10)
    x8 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ref = F.conv2d(upfirdn2d(x8, f, padding=2), w, stride=2)  # blur then strided conv
    np.testing.assert_allclose(conv2d_resample(x8, w, f=f, down=2, padding=1).numpy(), ref.numpy(), atol=1e-10)
    w1 = torch.randn(4, 3, 1, 1, dtype=torch.float64)
    ref1 = F.conv2d(upfirdn2d(x8, f, padding=1), w1)[:, :, ::2, ::2]
    np.testing.assert_allclose(conv2d_resample(x8, w1, f=f, down=2).numpy(), ref1.numpy(), atol=1e-10)


@pytest.mark.parametrize("up,demod", [(1, True), (2, True), (1, False)])
def test_modulated_conv_matches_per_sample_loop(up, demod):
    torch.manual_seed(1)
    f = setup_filter().double()
    x, w = torch.randn(3, 4, 6, 6, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64)
    s = torch.randn(3, 4, dtype=torch.float64)
    got = modulated_conv2d(x, w, s, demodulate=demod, up=up, padding=1, resample_filter=f)
    for i in range(3):
        wi = w * s[i].reshape(1, 4, 1, 1)
        if demod:
            wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        ref = (_upsample_conv_reference(x[i:i + 1], wi, f) if up == 2 else F.conv2d(x[i:i + 1], wi, padding=1))
        np.testing.assert_allclose(got[i:i + 1].numpy(), ref.numpy(), atol=1e-10)


def test_demodulation_gives_unit_variance_outputs():
    torch.manual_seed(2)
    x = torch.randn(2, 64, 16, 16)
    y = modulated_conv2d(x, torch.randn(32, 64, 3, 3), torch.rand(2, 64) * 3 + 0.1, padding=1)
    assert abs(y[:, :, 1:-1, 1:-1].std().item() - 1.0) < 0.1


def test_bias_act_and_fused_leaky_relu():
    x, b = torch.tensor([[-1.0, 2.0]]), torch.tensor([0.5, -3.0])
    expected = torch.tensor([[-0.5 * 0.2, -1.0 * 0.2]]) * 2 ** 0.5
    assert torch.allclose(fused_leaky_relu(x, b), expected)
    assert torch.allclose(bias_act(x, b, act="lrelu", gain=1.0, clamp=0.1), torch.tensor([[-0.1, -0.2]]).clamp(-0.1))
    assert torch.allclose(bias_act(x, b), x + b)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, b, act="gelu")


def test_gradcheck_float64():
    torch.manual_seed(3)
    f = setup_filter().double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=2, down=1, padding=(2, 1, 2, 1), gain=4), (x,))
    assert torch.autograd.gradcheck(lambda t: downsample2d(t, f), (x,))
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    xb = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    bb = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, b: fused_leaky_relu(t, b), (xb, bb))
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, ww, ss: modulated_conv2d(t, ww, ss, up=2, padding=1, resample_filter=f),
                                    (x, w, s), fast_mode=True)
    # Second derivatives (R1 / path length differentiate through gradients).
    assert torch.autograd.gradgradcheck(lambda t, ss: modulated_conv2d(t, w.detach(), ss, padding=1), (x, s),
                                        fast_mode=True)


def test_minibatch_stddev_matches_numpy():
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (8, 5, 3, 3)
    xn = x.numpy()
    for j in range(2):  # group j holds samples j, j + 2, j + 4, j + 6
        members = xn[j::2]
        std = np.sqrt(members.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(out[j::2, 4].numpy(), std, atol=1e-12)
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_stddev(torch.randn(6, 4, 3, 3), group_size=4)
