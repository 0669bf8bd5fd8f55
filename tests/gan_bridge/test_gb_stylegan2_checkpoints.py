"""Checkpoint loaders: golden parity with the reference implementations, layouts, safety, errors.

Fixtures in tests/gan_bridge/data/stylegan2/ (see its README.md) were produced by the reference code
(NVlabs/stylegan2-ada-pytorch, rosinality/stylegan2-pytorch) run on CPU outside this project.
"""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_bridge.networks.stylegan2 import (CheckpointError, Discriminator, Generator, load_discriminator,
                                           load_generator, save_networks)
from gan_bridge.networks.stylegan2.safe_pickle import UnsafePickleError, restricted_load
from gb_stylegan2_pickles import write_malicious_pickle, write_nvidia_snapshot

DATA = Path(__file__).parent / "data" / "stylegan2"
ADA_PKL = DATA / "network-snapshot-000000.pkl"
ROS_PT = DATA / "rosinality_000000.pt"


def _gold(name):
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / f"{name}_golden.npz").items()}


def test_nvidia_pickle_reproduces_reference_images():
    gold = _gold("ada")
    G = load_generator(ADA_PKL)
    assert G.config["channels"] == {4: 16, 8: 16, 16: 8, 32: 4} and G.config["conv_clamp"] == 256
    assert not G.training
    with torch.no_grad():
        ws = G.mapping(gold["z"])
        assert torch.allclose(ws, gold["ws"], atol=1e-5)
        assert torch.allclose(G(gold["z"], noise_mode="const"), gold["img_const"], atol=1e-4)
        assert torch.allclose(G(gold["z"], truncation_psi=0.7, noise_mode="const"), gold["img_trunc07"], atol=1e-4)
        assert torch.allclose(G.synthesis(ws, noise_mode="none"), gold["img_nonoise"], atol=1e-4)
        D = load_discriminator(ADA_PKL)
        assert torch.allclose(D(gold["img_const"]), gold["d_logits"], atol=1e-4)


def test_rosinality_checkpoint_reproduces_reference_images():
    gold = _gold("rosinality")
    G = load_generator(ROS_PT)
    assert G.config["channels"] == {4: 16, 8: 16, 16: 8, 32: 4} and G.config["n_mlp"] == 3
    ckpt = torch.load(ROS_PT, weights_only=False)
    assert torch.equal(G.w_avg, ckpt["latent_avg"])
    with torch.no_grad():
        assert torch.allclose(G(gold["z"], noise_mode="const"), gold["img_const"], atol=1e-4)
        assert torch.allclose(G(gold["z"], truncation_psi=0.7, noise_mode="const"), gold["img_trunc07"], atol=1e-4)
        D = load_discriminator(ROS_PT)
        assert torch.allclose(D(gold["img_const"]), gold["d_logits"], atol=1e-4)


def test_raw_and_ema_generators_differ():
    for path in (ADA_PKL, ROS_PT):
        ema, raw = load_generator(path), load_generator(path, ema=False)
        assert not torch.equal(ema.synthesis.b4.const, raw.synthesis.b4.const)


def test_rosinality_without_latent_avg_estimates_w_avg(tmp_path):
    ckpt = torch.load(ROS_PT, weights_only=False)
    del ckpt["latent_avg"]
    torch.save(ckpt, tmp_path / "000100.pt")
    G = load_generator(tmp_path / "000100.pt")
    with torch.no_grad():
        w = G.mapping(torch.randn(4096, G.z_dim), update_w_avg=False)[:, 0].mean(0)
    assert torch.count_nonzero(G.w_avg) > 0 and torch.allclose(G.w_avg, w, atol=0.1 * w.abs().max().item())


def _tiny(resolution=64):
    torch.manual_seed(0)
    G = Generator(resolution, z_dim=8, w_dim=8, channel_base=256, channel_max=8, n_mlp=3, conv_clamp=256).eval()
    D = Discriminator(resolution, channel_base=256, channel_max=8)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.3)
    return G, D


def test_nvidia_layout_written_from_our_model_round_trips(tmp_path):
    G, D = _tiny()
    path = tmp_path / "network-snapshot-000200.pkl"
    g_kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3, mapping_kwargs={"num_layers": 3},
                    synthesis_kwargs={"channel_base": 256, "channel_max": 8, "conv_clamp": 256})
    write_nvidia_snapshot(path, G, D, g_kwargs=g_kwargs, d_kwargs=dict(c_dim=0, conv_clamp=256))
    G2, D2 = load_generator(path), load_discriminator(path)
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(G2(z, noise_mode="const"), G(z, noise_mode="const"))
        assert torch.equal(G2(z, truncation_psi=0.5, noise_mode="const"), G(z, truncation_psi=0.5, noise_mode="const"))
        assert torch.equal(D2(torch.ones(4, 3, 64, 64)), D(torch.ones(4, 3, 64, 64)))


def test_conditional_nvidia_model_is_refused(tmp_path):
    G, D = _tiny(32)
    write_nvidia_snapshot(tmp_path / "c.pkl", G, D, g_kwargs=dict(c_dim=10))
    with pytest.raises(CheckpointError, match="conditional"):
        load_generator(tmp_path / "c.pkl")


def test_plain_dict_pickles_and_our_format(tmp_path):
    G, D = _tiny(32)
    z = torch.randn(2, 8)
    with open(tmp_path / "sd.pkl", "wb") as f:
        pickle.dump(G.state_dict(), f)
    with open(tmp_path / "nested.pkl", "wb") as f:
        pickle.dump({"G_ema": G.state_dict(), "D": D.state_dict()}, f)
    save_networks(tmp_path / "ours.pt", G, D)
    for name in ("sd.pkl", "nested.pkl", "ours.pt"):
        G2 = load_generator(tmp_path / name)
        assert torch.equal(G2(z, noise_mode="const"), G(z, noise_mode="const")), name
    assert torch.equal(load_discriminator(tmp_path / "ours.pt").b4.out.weight, D.b4.out.weight)
    assert torch.equal(load_discriminator(tmp_path / "nested.pkl").b4.out.weight, D.b4.out.weight)


@pytest.mark.parametrize("kind", ["os.system", "eval", "exec"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "network-snapshot-evil.pkl"
    write_malicious_pickle(path, kind, marker)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_generator(path)
    assert not marker.exists()


def test_restricted_unpickler_never_imports_nvidia_modules():
    import sys
    with open(ADA_PKL, "rb") as f:
        data = restricted_load(f)
    assert data["G_ema"].class_name == "Generator" and data["augment_pipe"].class_name == "AugmentPipe"
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    with pytest.raises(UnsafePickleError):
        restricted_load(__import__("io").BytesIO(pickle.dumps(Generator)))


def test_clear_errors_for_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_generator(tmp_path / "missing.pkl")
    (tmp_path / "notes.txt").write_text("hello, not a network\n")
    with pytest.raises(CheckpointError, match="not a readable StyleGAN2 checkpoint"):
        load_generator(tmp_path / "notes.txt")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(ADA_PKL.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator(truncated)
    broken_zip = tmp_path / "broken.pt"
    broken_zip.write_bytes(ROS_PT.read_bytes()[: len(ROS_PT.read_bytes()) // 2])
    with pytest.raises(CheckpointError):
        load_generator(broken_zip)
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no generator"):
        load_generator(tmp_path / "other.pt")
    G, _ = _tiny(32)
    sd = G.state_dict()
    sd["synthesis.b8.conv0.weight"] = torch.full_like(sd["synthesis.b8.conv0.weight"], float("nan"))
    torch.save({"g_ema": sd}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_generator(tmp_path / "nan.pt")
    (tmp_path / "tf.pkl").write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.")
    with pytest.raises(CheckpointError, match="TensorFlow"):
        load_generator(tmp_path / "tf.pkl")
    with pytest.raises(CheckpointError, match="not writable"):
        save_networks(tmp_path / "no" / "such" / "dir.pt", G)
