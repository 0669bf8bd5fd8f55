"""GAN inversion: schedules, regulariser, and recovery of a known latent with a tiny generator."""
import numpy as np
import pytest
import torch

from gan_bridge.inversion import InversionConfig, Stage, invert, noise_regularization, preset



@pytest.fixture(autouse=True)
def _needs_vgg_weights():
    from gan_bridge.networks.lpips_weights import checkpoint_path
    try:
        checkpoint_path("vgg")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def tiny_generator(seed=0):
    from gan_bridge.networks.stylegan2 import Generator
    torch.manual_seed(seed)
    return Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()


def test_presets_follow_the_papers():
    pie = preset("pie")
    assert [(s.space, s.steps, s.lr) for s in pie.stages] == [("w", 2000, 50.0), ("w+", 1000, 10.0)]
    assert (pie.optimizer, pie.schedule, pie.decay, pie.decay_every) == ("adadelta", "step", 0.1, 2000)
    assert pie.perceptual_layers == ("conv1_1", "conv1_2", "conv3_2", "conv4_2") and pie.perceptual_downsample == 4
    i2s = preset("image2stylegan")
    assert [(s.space, s.steps, s.lr) for s in i2s.stages] == [("w+", 5000, 0.01)]
    proj = preset("projector")
    assert proj.stages[0].space == "w" and proj.noise_reg_weight == 1e5 and proj.loss == "lpips"
    small = pie.scaled(0.01)
    assert [s.steps for s in small.stages] == [20, 10] and small.decay_every == 20


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="latent space"):
        InversionConfig(stages=(Stage("z", 10, 0.1),))
    with pytest.raises(ValueError, match="hierarchical"):
        InversionConfig(stages=(Stage("w+", 10, 0.1), Stage("w", 10, 0.1)))
    with pytest.raises(ValueError, match="optimizer"):
        InversionConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="preset"):
        preset("nope")


def test_noise_regularization_sees_correlation():
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, 32, 32, generator=gen)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4, generator=gen), size=32, mode="bilinear")]
    smooth = [(s - s.mean()) / s.std() for s in smooth]
    assert noise_regularization(white) < 0.01 < noise_regularization(smooth)


def test_bad_targets_have_clear_errors():
    G = tiny_generator()
    with pytest.raises(ValueError, match="generator makes 32x32"):
        invert(G, torch.zeros(1, 3, 64, 64), progress=False)
    with pytest.raises(ValueError, match="empty batch"):
        invert(G, torch.zeros(0, 3, 32, 32), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        invert(G, torch.full((1, 3, 32, 32), float("nan")), progress=False)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        invert(G, torch.full((1, 3, 32, 32), 200.0), progress=False)


@pytest.mark.parametrize("name", ["projector", "pie"])
def test_inversion_recovers_a_generated_image(name):
    """Targets made by the generator itself: the fit must beat the mean-w image by a wide margin, and
    W+ (the second PIE stage) must not lose what W found. G itself is left untouched."""
    G = tiny_generator()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        target = G(torch.randn(2, 32, generator=torch.Generator().manual_seed(1)), noise_mode="const")
        target = target / target.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1)
        start = G.synthesis(G.mapping(torch.randn(256, 32)).mean(0, keepdim=True).expand(2, -1, -1),
                            noise_mode="const")
    steps = {"projector": 0.03, "pie": 0.01}[name]
    result = invert(G, target, preset(name, w_avg_samples=500).scaled(steps), progress=False)
    start_mse = (start - target).square().mean().item()
    mse = (result.image - target).square().mean().item()
    assert mse < 0.5 * start_mse, (mse, start_mse)
    assert result.ws.shape == (2, G.num_ws, 32)
    assert len(result.metrics["psnr"]) == 2 and all(np.isfinite(result.metrics["lpips"]))
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_invert_cli_writes_latent_reconstruction_and_sheet(tmp_path):
    from PIL import Image

    from gan_bridge.cli import main
    from gan_bridge.networks.stylegan2 import save_networks

    G = tiny_generator()
    ckpt = tmp_path / "g.pt"
    save_networks(ckpt, G=G)
    photo = tmp_path / "face.png"
    with torch.no_grad():
        img = G(torch.randn(1, 32), noise_mode="const")[0].clamp(-1, 1)
    Image.fromarray(((img.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)).save(photo)
    out = tmp_path / "out"
    code = main(["invert", str(photo), "--generator", str(ckpt), "--out", str(out), "--preset", "projector",
                 "--steps", "0.01", "--align", "none"])
    assert code == 0
    latent = torch.load(out / "face_latent.pt")
    assert latent["ws"].shape == (G.num_ws, 32) and np.load(out / "face_latent.npy").shape == (G.num_ws, 32)
    assert {"psnr", "ssim", "lpips"} <= set(latent["metrics"])
    assert Image.open(out / "face_reconstruction.png").size == (32, 32)
    assert Image.open(out / "face_side_by_side.png").width > 64
    assert "face" in (out / "metrics.json").read_text()


def test_invert_cli_errors_are_one_line(tmp_path, capsys):
    from gan_bridge.cli import main

    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    photo = tmp_path / "p.png"
    photo.write_bytes(b"")
    assert main(["invert", str(photo), "--generator", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gan-bridge invert: error:") and "\n" not in err
    assert main(["invert", str(photo), "--generator", str(bad), "--out", str(tmp_path / "o"),
                 "--face-weight", "2"]) == 2
    assert "--face-weight" in capsys.readouterr().err
