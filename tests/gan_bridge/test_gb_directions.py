"""Latent directions for reenactment (Bounareli et al.): A, rescaling of p, losses, the training method."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gb_directions_stubs import LinearEncoder, LinearGenerator, PoolIdentity  # noqa: E402

from gan_bridge.directions import (Directions, DirectionsConfig, load_directions, pose_range, pose_vector,
                                   save_directions)
from gan_bridge.directions.losses import (EYE_PAIRS, MOUTH_PAIRS, identity_loss, pair_distance_loss, pair_distances,
                                          pixel_loss, shape_loss, weighted_total)
from gan_bridge.directions.method import (DirectionsMethod, ground_truth_coefficients, sample_pose_vectors,
                                          single_attribute_changes)
from gan_bridge.face.shape import FaceCoefficients, ShapeModel
from gan_bridge.networks.stylegan2 import Generator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shape_model():
    return ShapeModel("open")


def tiny_generator():
    torch.manual_seed(0)
    return Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()


# ---- the directions matrix ----------------------------------------------------------------------
def test_shapes_and_only_first_layers_move():
    G = tiny_generator()
    d = Directions(G.num_ws, G.w_dim, num_layers=3, expression_dims=5)
    assert d.A.shape == (3 * 32, 8) and d.pose_dim == 8
    with torch.no_grad():
        d.A.normal_()
    ws = G.mapping(torch.randn(4, 32))
    dp = torch.randn(4, 8)
    out = d(ws, dp)
    assert out.shape == ws.shape
    assert torch.equal(out[:, 3:], ws[:, 3:])
    assert torch.allclose(out[:, :3] - ws[:, :3], (dp @ d.A.T).view(4, 3, 32), atol=1e-6)
    assert (out[:, :3] - ws[:, :3]).abs().min(dim=-1).values.gt(0).all()
    assert torch.equal(d(ws, torch.zeros(4, 8)), ws)  # zero change, identical codes
    with pytest.raises(ValueError, match="pose vectors must be"):
        d(ws, torch.zeros(4, 7))
    with pytest.raises(ValueError, match="num_layers"):
        Directions(G.num_ws, G.w_dim, num_layers=G.num_ws + 1)


def test_pose_vector_and_rescaling():
    rot, expr = torch.randn(6, 3), torch.randn(6, 10)
    p = pose_vector(rot, expr, 4)
    assert torch.equal(p, torch.cat([rot, expr[:, :4]], 1))
    assert pose_vector(rot, expr, 0).shape == (6, 13)
    p = torch.tensor([[0.0, -1.0, 2.0, 5.0], [1.0, 1.0, 4.0, 5.0], [0.5, 0.0, 3.0, 5.0]])
    lo, hi = pose_range(p)
    assert torch.equal(lo, torch.tensor([0.0, -1.0, 2.0, 5.0])) and torch.equal(hi, torch.tensor([1.0, 1.0, 4.0, 5.0]))
    d = Directions(8, 4, num_layers=2, expression_dims=1, shift_scale=6.0)
    d.set_range(lo, hi)
    q = d.rescale(p)
    assert torch.allclose(q[:, :3], torch.tensor([[-6.0, -6.0, -6.0], [6.0, 6.0, 6.0], [0.0, 0.0, 0.0]]))
    assert torch.isfinite(q).all()  # the constant element does not divide by zero
    assert torch.allclose(d.unscale(q), p, atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        pose_range(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def test_rescaling_statistics_from_generated_images():
    G, enc = LinearGenerator(), LinearEncoder()
    p = sample_pose_vectors(G, enc, 50, 16, expression_dims=4, seed=3)
    assert p.shape == (50, 7)
    again = sample_pose_vectors(G, enc, 50, 7, expression_dims=4, seed=3)
    assert torch.allclose(p, again, atol=1e-5)  # batch size does not change the samples
    d = Directions(G.num_ws, G.w_dim, 4, 4, shift_scale=2.0)
    d.set_range(*pose_range(p))
    q = d.rescale(p)
    assert torch.allclose(q.amin(0), torch.full((7,), -2.0), atol=1e-5)
    assert torch.allclose(q.amax(0), torch.full((7,), 2.0), atol=1e-5)


def test_save_load_and_generator_check(tmp_path):
    d = Directions(8, 32, 4, 3)
    with torch.no_grad():
        d.A.normal_()
    d.set_range(torch.zeros(6), torch.arange(1.0, 7.0))
    save_directions(d, tmp_path / "A.pt", recipe="test")
    e = load_directions(tmp_path / "A.pt")
    assert torch.equal(e.A, d.A) and torch.equal(e.p_hi, d.p_hi) and e.config() == d.config()
    e.check_generator(tiny_generator())
    with pytest.raises(ValueError, match="learned for a generator"):
        e.check_generator(LinearGenerator(w_dim=16))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_directions(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a directions file"):
        load_directions(tmp_path / "other.pt")


# ---- losses against hand-computed cases ----------------------------------------------------------
def test_shape_loss_hand_computed():
    a = torch.zeros(1, 2, 3)
    b = torch.tensor([[[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]])
    assert shape_loss(a, b).item() == pytest.approx(6.0 / 6)


def test_pair_distance_losses_hand_computed():
    lm_gt = torch.zeros(2, 68, 3)
    lm_r = torch.zeros(2, 68, 3)
    # eyelid 37 above 41 by 2 mm in the ground truth; the reenacted eye is closed (0 mm)
    lm_gt[:, 37, 1] = 2.0
    # and 38-40 are 1 mm apart in x and 1 mm in y: L1 distance 2; reenacted 3 mm in y
    lm_gt[:, 38, :2] = torch.tensor([1.0, 1.0])
    lm_r[:, 38, 1] = 3.0
    d = pair_distances(lm_gt, EYE_PAIRS)
    assert d[0].tolist() == [2.0, 2.0, 0.0, 0.0]
    assert pair_distance_loss(lm_r, lm_gt, EYE_PAIRS).item() == pytest.approx(2.0 + 1.0)
    # the mouth loss ignores the eyes, and sees a mouth opened by 4 mm on the inner middle pair
    assert pair_distance_loss(lm_r, lm_gt, MOUTH_PAIRS).item() == 0.0
    lm_r[0, 66, 1] = -4.0
    assert pair_distance_loss(lm_r, lm_gt, MOUTH_PAIRS).item() == pytest.approx(4.0 / 2)


def test_landmark_pairs_face_each_other(shape_model):
    """Each upper eyelid / lip point is paired with the lower point straight below it on the model's face."""
    lm = shape_model.landmarks(shape_model.posed_shape(torch.zeros(1, 40), torch.zeros(1, 30), torch.zeros(1, 3)))[0]
    lower = {37: (40, 41), 38: (40, 41), 43: (46, 47), 44: (46, 47), 61: (65, 66, 67), 62: (65, 66, 67),
             63: (65, 66, 67), 50: (56, 57, 58), 51: (56, 57, 58), 52: (56, 57, 58)}
    pairs = dict(EYE_PAIRS + MOUTH_PAIRS)
    for upper, candidates in lower.items():
        nearest = min(candidates, key=lambda j: abs(lm[j, 0] - lm[upper, 0]).item())
        assert pairs[upper] == nearest, (upper, pairs[upper], nearest)
        assert lm[upper, 1] > lm[nearest, 1]  # y up: the paired point is below
    assert pairs[48] == 54 and pairs[60] == 64  # mouth corners: the width


def test_identity_pixel_and_total_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    assert identity_loss(a, b).item() == pytest.approx((1.0 + 0.0) / 2)
    assert pixel_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)).item() == pytest.approx(0.5)
    terms = {"shape": torch.tensor(2.0), "id": torch.tensor(0.5), "pix": torch.tensor(9.0)}
    assert weighted_total(terms, {"shape": 1.0, "id": 10.0}).item() == pytest.approx(7.0)
    with pytest.raises(ValueError, match="zero"):
        weighted_total(terms, {})


def test_ground_truth_uses_source_identity_and_target_pose(shape_model):
    src = FaceCoefficients(torch.randn(2, 40) * 0.3, torch.rand(2, 30) * 0.3, torch.zeros(2, 3))
    target_pose = torch.cat([torch.tensor([[0.3, 0.0, 0.0]] * 2), torch.full((2, 4), 0.7)], 1)
    ident, expr, rot = ground_truth_coefficients(src, target_pose)
    assert torch.equal(ident, src.identity) and torch.equal(rot, target_pose[:, :3])
    assert torch.equal(expr[:, :4], target_pose[:, 3:]) and torch.equal(expr[:, 4:], src.expression[:, 4:])
    posed = shape_model.posed_shape(ident, expr, rot)
    flat = shape_model.posed_shape(ident, expr, torch.zeros(2, 3))
    assert torch.allclose(posed.norm(dim=-1), flat.norm(dim=-1), atol=1e-3)  # a rotation keeps lengths
    assert not torch.allclose(posed, flat, atol=1e-2)


def test_single_attribute_changes():
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(400, 7) * 10
    out = single_attribute_changes(delta, 0.5, 2.0, gen)
    changed = (out != delta).any(1)
    assert 0.4 < changed.float().mean().item() < 0.6
    assert ((out[changed] != 0).sum(1) <= 1).all() and out[changed].abs().max() <= 2.0
    assert torch.equal(out[~changed], delta[~changed])
    attrs = out[changed].abs().argmax(1)
    assert len(attrs.unique()) == 7  # every attribute gets picked


# ---- the training method -------------------------------------------------------------------------
def _method(tmp_path, **kw):
    fields = dict(run_dir=str(tmp_path / "run"), batch_size=8, stats_samples=64, stats_batch=32, num_layers=4,
                  expression_dims=6, lambda_id=0.0, lambda_per=0.0, device="cpu", log_every=0, sample_every=0,
                  checkpoint_every=0, progress=False, tensorboard=False)
    config = DirectionsConfig(**{**fields, **kw})
    return DirectionsMethod(config, generator=LinearGenerator(), encoder=LinearEncoder(),
                            shape_model=ShapeModel("open"), identity=PoolIdentity())


def _eval_losses(method, n=32):
    """Loss terms on a fixed batch of full (target) pose changes."""
    G, gen = method.G, torch.Generator().manual_seed(5)
    ws_s, ws_t = G.mapping(torch.randn(n, G.z_dim, generator=gen)), G.mapping(torch.randn(n, G.z_dim, generator=gen))
    method.config.single_attribute_prob = 0.0
    with torch.no_grad():
        return {k: v.item() for k, v in method.losses(ws_s, ws_t, gen).items()}


def test_training_through_shared_loop_learns_known_directions(tmp_path):
    """Generator and encoder are linear, so some A reenacts exactly (zero loss); a short run must get
    most of the way there from A = 0."""
    from gan_bridge.train import train
    method = _method(tmp_path, steps=120, lr=0.003, single_attribute_prob=0.5)
    train(method)  # builds, estimates the range and trains
    trained = _eval_losses(method)
    with torch.no_grad():
        method.module("directions").A.zero_()
    untrained = _eval_losses(method)
    assert trained["loss"] < 0.2 * untrained["loss"], (trained, untrained)
    assert trained["shape"] < 0.25 * untrained["shape"], (trained, untrained)
    assert (tmp_path / "run" / "pose_stats.pt").is_file()


def test_loss_terms_gradients_and_modes(tmp_path):
    method = _method(tmp_path, steps=1, lambda_id=10.0, lambda_per=10.0)
    method.perceptual = lambda a, b: (a - b).pow(2).mean()
    modules, optimizers = method.build(method.config, torch.device("cpu"))
    method.modules = method.raw_modules = modules
    method.optimizers = optimizers
    G = method.G
    gen = torch.Generator().manual_seed(0)
    ws = G.mapping(torch.randn(4, G.z_dim, generator=gen))
    terms = method.losses(ws, ws.flip(0), gen)
    assert set(terms) == {"shape", "eye", "mouth", "id", "per", "loss"}
    # A = 0: the reenacted image is the source, so L_id and L_per vanish and only the pose terms remain
    assert terms["id"].item() == pytest.approx(0.0, abs=1e-6) and terms["per"].item() == pytest.approx(0.0, abs=1e-9)
    assert terms["shape"].item() > 0
    terms["loss"].backward()
    assert modules["directions"].A.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.parameters())
    # paired mode: the target image enters L_pix / L_id / L_per
    terms = method.losses(ws, ws.flip(0), gen, images_t=G.synthesis(ws.flip(0)))
    assert "pix" in terms and terms["pix"].item() > 0 and terms["per"].item() > 0


def test_mixed_and_paired_data(tmp_path):
    G = LinearGenerator()
    real = G.mapping(torch.randn(5, G.z_dim)) + 3.0
    torch.save({"ws": real}, tmp_path / "real.pt")
    method = _method(tmp_path, steps=1, real_latents=str(tmp_path / "real.pt"), real_fraction=0.5)
    method.modules, method.optimizers = method.build(method.config, torch.device("cpu"))
    method.raw_modules = method.modules
    ws = method._latents(8, torch.Generator().manual_seed(0))
    from_real = [(w[None] - real).abs().amax((1, 2)).min() < 1e-6 for w in ws]
    assert sum(from_real) == 4 and ws.shape == (8, G.num_ws, G.w_dim)
    out = method.train_step(0, 0)
    assert math.isfinite(out["loss"])

    sets = G.mapping(torch.randn(6, G.z_dim)).view(3, 2, G.num_ws, G.w_dim)
    images = ((G.synthesis(sets.flatten(0, 1)).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).view(3, 2, 3, 16, 16)
    torch.save({"ws": sets, "images": images}, tmp_path / "paired.pt")
    method = _method(tmp_path, steps=1, paired=str(tmp_path / "paired.pt"))
    method.modules, method.optimizers = method.build(method.config, torch.device("cpu"))
    method.raw_modules = method.modules
    ws_s, ws_t, img_t = method._pairs(8, torch.Generator().manual_seed(0))
    assert not any(torch.equal(a, b) for a, b in zip(ws_s, ws_t))  # two different views of each set
    assert "pix" in method.train_step(0, 0)
    torch.save({"ws": torch.zeros(3, 2, 5, 7)}, tmp_path / "wrong.pt")
    method = _method(tmp_path, real_latents=str(tmp_path / "wrong.pt"))
    with pytest.raises(ValueError, match="do not fit this generator"):
        method.build(method.config, torch.device("cpu"))


def test_fine_tuning_starts_from_given_directions(tmp_path):
    G = LinearGenerator()
    d = Directions(G.num_ws, G.w_dim, num_layers=2, expression_dims=3)
    with torch.no_grad():
        d.A.normal_()
    d.set_range(-torch.arange(1.0, 7.0), torch.arange(1.0, 7.0))
    save_directions(d, tmp_path / "A.pt")
    method = _method(tmp_path, init_directions=str(tmp_path / "A.pt"))
    modules, _ = method.build(method.config, torch.device("cpu"))
    e = modules["directions"]
    assert torch.equal(e.A, d.A) and torch.equal(e.p_lo, d.p_lo) and e.num_layers == 2 and e.A.requires_grad
    assert not (tmp_path / "run" / "pose_stats.pt").exists()  # the given range is kept


def test_export_and_registry(tmp_path):
    from gan_bridge.directions.method import export
    from gan_bridge.train import train
    from gan_bridge.train.registry import resolve_method
    assert resolve_method("directions") is DirectionsMethod
    method = _method(tmp_path, steps=2)
    train(method)
    d = load_directions(export(tmp_path / "run", tmp_path / "A.pt"))
    assert torch.equal(d.A, method.module("directions").A.detach())
    assert d.num_layers == 4 and d.expression_dims == 6


# ---- evaluation -----------------------------------------------------------------------------------
def test_least_squares_baseline_recovers_a_linear_map():
    from gan_bridge.directions.evaluate import least_squares_directions, nme
    A = torch.randn(40, 5)
    dp = torch.randn(200, 5)
    assert torch.allclose(least_squares_directions(dp, dp @ A.T), A, atol=1e-4)
    truth = torch.zeros(1, 68, 2)
    truth[0, 45, 0] = 10.0  # eye corners 10 px apart
    assert nme(truth + torch.tensor([3.0, 4.0]), truth).item() == pytest.approx(0.5)


def test_evaluate_measures_on_pairs(tmp_path):
    from gan_bridge.directions.evaluate import MEASURES, evaluate, linear_baseline, markdown_table
    G, enc = LinearGenerator(), LinearEncoder()
    d = Directions(G.num_ws, G.w_dim, 4, 6)
    d.set_range(*pose_range(sample_pose_vectors(G, enc, 64, 32, 6)))
    ws = G.mapping(torch.randn(6, G.z_dim)).view(3, 2, G.num_ws, G.w_dim)
    imgs = G.synthesis(ws.flatten(0, 1)).clamp(-1, 1)
    c = enc(imgs)
    lm = torch.rand(6, 68, 2) * 16
    pairs = {"ws": ws, "images": ((imgs + 1) * 127.5).round().to(torch.uint8).view(3, 2, 3, 16, 16),
             "rotation": c.rotation.view(3, 2, 3), "expression": c.expression.view(3, 2, 30),
             "landmarks": lm.view(3, 2, 68, 2)}
    base = linear_baseline(G, d, enc, 64, seed=1)
    rows = {}
    for name, dd in (("zero", d), ("baseline", base)):
        rows[name] = {m: evaluate(G, dd, enc, pairs, m, PoolIdentity(),
                                  lambda a, b: (a - b).abs().mean((1, 2, 3))) for m in ("self", "cross")}
    # A = 0 reenacts nothing: the source comes back (cross CSIM 1) and the pose error is the source-target gap
    assert rows["zero"]["cross"]["csim"] == pytest.approx(1.0, abs=1e-5)
    assert rows["zero"]["self"]["csim"] < 1.0  # self mode compares with the target, another view
    assert rows["baseline"]["self"]["pose_deg"] < rows["zero"]["self"]["pose_deg"]
    assert set(rows["zero"]["self"]) == set(MEASURES) and math.isnan(rows["zero"]["cross"]["lpips"])
    assert "| baseline |" in markdown_table(rows)
    with pytest.raises(ValueError, match="unknown mode"):
        evaluate(G, d, enc, pairs, "both")
    # generated mode: the source is G(ws) itself, so A = 0 gives CSIM 1 against it
    gen = evaluate(G, d, enc, {**pairs, "ws": ws[:, :1]}, "generated", PoolIdentity())
    assert gen["csim"] == pytest.approx(1.0, abs=1e-5) and math.isnan(gen["lpips"])
    from gan_bridge.directions.evaluate import comparison_sheet
    from PIL import Image
    path = comparison_sheet(G, {"zero": d, "baseline": base}, enc, pairs, tmp_path / "sheet.png", count=2,
                            mode="cross")
    assert Image.open(path).size[0] > 2 * 16


def test_shipped_world_directions_fit_the_world_generator():
    """The committed A is the recipe's paired fine-tuning run: it fits the world StyleGAN2 and carries its recipe."""
    import yaml

    from gan_bridge.assets import asset_path
    from gan_bridge.networks.stylegan2 import load_generator
    G = load_generator(asset_path("world_stylegan2_32.pt"))
    d = load_directions(asset_path("world_directions_32.pt"))
    d.check_generator(G)
    assert (d.num_layers, d.expression_dims) == (8, 3) and d.A.abs().amax() > 0
    recipe = yaml.safe_load(torch.load(asset_path("world_directions_32.pt"), weights_only=True)["recipe"])
    assert recipe["lambda_id"] == 1.0 and recipe["paired"] and recipe["init_directions"] and recipe["steps"] == 200
