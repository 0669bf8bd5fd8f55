"""The regressor training method (gan_bridge.methods.regressor): render caches, framing, losses that vanish at
the truth and grow away from it, a tiny run through the shared loop with resume and export, and the exported
weights loading into morph3d.regress."""
import math

import numpy as np
import pytest
import torch

from gan_bridge.methods.regressor import (CACHE_FORMAT, CacheDataset, Regressor, RegressorConfig, export_weights,
                                          frame_batch, load_cache, model_landmarks, regressor_losses, render_cache,
                                          save_cache)
from gan_bridge.train import train
from morph3d.model import load_model
from morph3d.regress import encode_targets, load_regressor, target_layout

TINY = dict(input_size=32, widths=(4, 8, 8, 16, 16), head=16, stat_samples=8, batch_size=4, log_every=1,
            checkpoint_every=2, progress=False, tensorboard=False, device="cpu")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model("open")


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "train.pt"
    save_cache(render_cache(8, image_size=48, split="train", seed=3), path)
    return path


def test_cache_round_trip_and_refusals(cache_file, tmp_path):
    cache = load_cache(cache_file)
    assert cache["format"] == CACHE_FORMAT and cache["images"].shape == (8, 3, 48, 48)
    assert cache["images"].dtype == torch.uint8 and cache["landmarks"].shape == (8, 68, 2)
    assert cache["params"]["expression"].shape == (8, 30) and cache["world"]["image_size"] == 48
    again = render_cache(2, image_size=48, split="train", seed=3, start=6)  # samples are pure functions of the index
    assert torch.equal(again["params"]["rotation"], cache["params"]["rotation"][6:])
    with pytest.raises(FileNotFoundError, match="render it with"):
        load_cache(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        load_cache(tmp_path / "junk.pt")
    torch.save({"format": "x"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a regressor cache"):
        load_cache(tmp_path / "other.pt")


def test_losses_vanish_at_the_truth_and_grow_away(cache_file, model):
    batch = CacheDataset(load_cache(cache_file)).__getitems__(list(range(8)))
    crops, params, lm = frame_batch(batch, 32, 0.05, 0.08, torch.Generator().manual_seed(0))
    assert crops.shape == (8, 3, 32, 32) and params.camera.image_size == (32, 32)
    # the framed parameters re-project onto the framed landmarks: the camera follows the crop exactly
    assert (model_landmarks(model, params) - lm).norm(dim=-1).max() < 1e-2
    truth = encode_targets(params, model)
    mean, std = truth.mean(0), truth.std(0).clamp_min(1e-3)
    weights = {"identity": 1.0, "expression": 1.0, "texture": 1.0, "rotation": 1.0, "position": 1.0, "lighting": 1.0}
    at = regressor_losses((truth - mean) / std, mean, std, model, params, lm, weights)
    assert at["param"] < 1e-10 and at["landmark_pct"] < 0.05
    lay = target_layout(model)
    off = truth.clone()
    off[:, lay["rotation"]] += torch.tensor([math.radians(10), 0, 0])  # 10 degrees of yaw
    away = regressor_losses((off - mean) / std, mean, std, model, params, lm, weights)
    assert away["mse_rotation"] > 0.01 and away["mse_identity"] < 1e-10 and away["landmark_pct"] > 1.0
    weights["rotation"] = 3.0
    assert regressor_losses((off - mean) / std, mean, std, model, params, lm, weights)["param"] == \
        pytest.approx(3 * away["param"].item(), rel=1e-5)


def test_registered_for_the_train_command():
    from gan_bridge.train.registry import resolve_method
    assert resolve_method("regressor") is Regressor


def test_tiny_run_trains_resumes_and_exports(cache_file, tmp_path, model):
    run = tmp_path / "run"
    cfg = RegressorConfig(run_dir=str(run), cache=str(cache_file), steps=4, lr=3e-3, warmup=1, **TINY)
    result = train(Regressor(cfg))
    assert result.step == 4 and all(np.isfinite(v) for v in result.scalars.values())
    assert {"loss", "param", "landmark_pct", "mse_rotation"} <= set(result.scalars)
    longer = RegressorConfig(run_dir=str(run), cache=str(cache_file), steps=6, lr=3e-3, warmup=1, **TINY)
    assert train(Regressor(longer)).step == 6  # resumed from step 4
    weights = export_weights(run, tmp_path / "w.pt")
    reg = load_regressor(model, weights)
    assert reg.input_size == 32 and reg.info["model"] == "open"
    image = np.full((120, 100, 3), 128, np.uint8)
    lm = load_cache(cache_file)["landmarks"][0].numpy() * 2  # any plausible 68 points
    params = reg.predict(image, lm)
    assert params.batch_size == 1 and params.camera.image_size == (120, 100)
    assert torch.isfinite(params.translation).all() and params.translation[0, 2] < 0
    assert params.expression.min() >= 0 and params.expression.max() <= 1  # blendshape weights clamped


def test_training_lowers_the_loss_on_a_fixed_batch(cache_file, model):
    from morph3d.regress import SmallRegressor, SmallRegressorConfig, target_dim
    torch.manual_seed(0)
    batch = CacheDataset(load_cache(cache_file)).__getitems__(list(range(8)))
    crops, params, lm = frame_batch(batch, 32)
    net = SmallRegressor(SmallRegressorConfig(32, (4, 8, 8, 16, 16), 16, target_dim(model)))
    net.set_target_statistics(encode_targets(params, model))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    w = RegressorConfig().weights
    losses = []
    for _ in range(25):
        out = regressor_losses(net(crops, normalised=True), net.target_mean, net.target_std, model, params, lm, w)
        loss = out["param"] + 0.05 * out["landmark_pct"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
