"""DiscoFaceGAN through the shared loop (stub 3DMM side), the real 3DMM flow warp, evaluation and the CLI."""
import json

import pytest
import torch

from gan_bridge.cli import main as cli_main
from gan_bridge.disco.config import DiscoConfig
from gan_bridge.disco.evaluate import (direction_cosines, disentanglement_scores, factor_variances, frechet,
                                       perceptual_path_length)
from gan_bridge.disco.losses import expression_contrastive
from gan_bridge.disco.method import DiscoMethod, load_disco
from gan_bridge.disco.vae import FACTORS
from gan_bridge.metrics.features import callable_space
from gan_bridge.methods.world_cache import cached_world_images
from gan_bridge.train import train
from gan_bridge.train.registry import resolve_method
from gb_disco_stubs import StubFace, tiny_generator


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step tiny disco run (stub face) and its config."""
    root = tmp_path_factory.mktemp("disco")
    cache = root / "train32.pt"
    cached_world_images(cache, 8, 32, "train")
    cfg = DiscoConfig(run_dir=str(root / "run"), steps=3, batch_size=2, seed=1, resolution=32, render_size=32,
                      w_dim=32, n_mlp=2, channel_base=256, channel_max=32, data_count=8, data_cache=str(cache),
                      log_every=1, sample_every=0, checkpoint_every=3, keep_checkpoints=0, device="cpu",
                      progress=False, tensorboard=False, vae_count=64, vae_steps=5, vae_hidden=(16,), noise_dim=8,
                      pl_interval=2, r1_interval=2, contrastive_start=2)
    method = DiscoMethod(cfg, face=StubFace())
    result = train(method)
    return root, cfg, method, result


def test_registered_and_trains_with_every_term(run):
    root, cfg, method, result = run
    assert resolve_method("disco") is DiscoMethod
    assert result.step == 3
    rows = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    assert all({"d_loss", "g_loss", "im_id", "im_lm", "im_sh", "im_cl"} <= set(r) for r in rows)
    # the contrastive terms join at contrastive_start
    assert ["co_ex" in r for r in rows] == [False, False, True]


def test_vaes_stay_fixed_and_checkpoint_round_trips(run):
    root, cfg, method, _ = run
    G = method.module("G")
    loaded, loaded_cfg, step = load_disco(root / "run")
    assert step == 3 and loaded_cfg.noise_dim == 8
    for name, t in G.vaes.state_dict().items():
        assert torch.equal(t, loaded.vaes.state_dict()[name])
    z = loaded.sample_z(2, torch.Generator().manual_seed(0))
    ema = method.module("G_ema")
    assert torch.allclose(loaded(z, noise_mode="const"), ema(z, noise_mode="const"), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_disco(root)


def test_adversarial_only_ablation_has_no_imitation(tmp_path, run):
    root, cfg, _, _ = run
    from dataclasses import replace
    cfg_a = replace(cfg, run_dir=str(tmp_path / "a"), imitative=False, contrastive=False, steps=1)
    train(DiscoMethod(cfg_a, face=StubFace()))
    row = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[0])
    assert "g_loss" in row and not any(k.startswith(("im_", "co_")) for k in row)


def test_cli_sample_grid_varies_one_factor_per_row(run, tmp_path):
    root = run[0]
    out = tmp_path / "grid"
    assert cli_main(["disco", "sample", "--weights", str(root / "run"), "--identity", "4", "--pose", "5,0,0",
                     "--columns", "3", "--out", str(out)]) == 0
    assert (out / "grid.png").is_file() and (out / "pose_2.png").is_file()
    meta = json.loads((out / "grid.json").read_text())
    assert meta["rows"] == list(FACTORS) and meta["step"] == 3
    assert cli_main(["disco", "sample", "--weights", str(root / "run"), "--pose", "a,b", "--out", str(out)]) == 2
    assert cli_main(["disco", "sample", "--weights", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_factor_grid_rows(run):
    from gan_bridge.cli.disco import factor_grid
    G = run[2].module("G_ema")
    rows = factor_grid(G, 0, 3, torch.tensor([0.1, 0.0, 0.0]))
    for factor, images in rows.items():
        assert images.shape == (3, 3, 32, 32)
        assert torch.allclose(images[0], rows["identity"][0], atol=1e-6) or factor == "pose"
        assert not torch.allclose(images[1], images[2], atol=1e-4)


# ---- the real 3DMM flow ------------------------------------------------------------------------------
def test_flow_warps_a_render_onto_its_expression_partner():
    from gan_bridge.face.disco import DiscoFace, world_lambda
    from gan_bridge.face.world import FaceWorld, WorldConfig
    face = DiscoFace()
    lam = world_lambda(FaceWorld(WorldConfig(image_size=64)), 2)
    lam_ex = lam.clone()
    lam_ex[:, 50:80] = lam[[1, 0], 50:80] + 1.5  # another expression: mouth and cheeks move
    lam[:, -3:] = 0.0
    lam_ex[:, -3:] = 0.0
    lam_ex[:, -30:-3] = lam[:, -30:-3]
    x, _, p = face.render(lam, 64)
    x_ex, fg, p_ex = face.render(lam_ex, 64)
    flow, valid = face.flow(lam_ex, lam, 64)
    assert flow.shape == (2, 2, 64, 64) and valid.float().mean() > 0.05
    mouth = torch.maximum(face.mouth(p, 64), face.mouth(p_ex, 64))
    face_only = 1 - fg.gt(0.5).float() + mouth  # compare face pixels only
    warped = expression_contrastive(x, x_ex, flow, valid, fg, face_only.clamp(0, 1))
    unwarped = expression_contrastive(x, x_ex, torch.zeros_like(flow), valid, fg, face_only.clamp(0, 1))
    backwards, _ = face.flow(lam, lam_ex, 64)
    wrong = expression_contrastive(x, x_ex, backwards, valid, fg, face_only.clamp(0, 1))
    assert warped < 0.6 * unwarped and warped < 0.6 * wrong


# ---- evaluation -------------------------------------------------------------------------------------
class LambdaImages:
    """A 'generator' whose images carry its lambda: estimates read it back exactly (optionally entangled)."""

    def __init__(self, G, leak=0.0):
        self.G, self.leak, self.resolution = G, leak, 32
        self.vaes, self.z_dim, self.sample_z, self.swap = G.vaes, G.z_dim, G.sample_z, G.swap

    def __call__(self, z, noise_mode="const"):
        lam = self.G.mapping.lam(z)
        img = torch.zeros(z.shape[0], 3 * 32 * 32)
        img[:, :lam.shape[1]] = lam
        return img.view(-1, 3, 32, 32)

    def estimate(self, images):
        parts = self.vaes.split(images.flatten(1)[:, :self.vaes.lambda_dim])
        parts["expression"] = parts["expression"] + self.leak * parts["lighting"][:, :1]
        return parts


def test_disentanglement_score_rewards_independent_factors():
    G = tiny_generator()
    clean = LambdaImages(G)
    var = factor_variances(clean, clean.estimate, "lighting", groups=4, per_group=5)
    assert var["lighting"] > 1e-4 and all(var[u] == pytest.approx(0.0, abs=1e-10) for u in FACTORS if u != "lighting")
    ref = {u: 1.0 for u in FACTORS}
    leaky = LambdaImages(G, leak=1.0)
    ds_clean = disentanglement_scores(clean, clean.estimate, ref, groups=4, per_group=5)
    ds_leaky = disentanglement_scores(leaky, leaky.estimate, ref, groups=4, per_group=5)
    assert ds_leaky["lighting"] < 1e-3 * ds_clean["lighting"]
    assert ds_leaky["pose"] == pytest.approx(ds_clean["pose"], rel=1e-6)


def test_ds_is_eq9(monkeypatch):
    import gan_bridge.disco.evaluate as ev
    fixed = {"identity": 2.0, "expression": 0.5, "lighting": 4.0, "pose": 1.0}
    monkeypatch.setattr(ev, "factor_variances", lambda *a, **k: dict(fixed))
    ref = {"identity": 1.0, "expression": 1.0, "lighting": 2.0, "pose": 1.0}
    ds = ev.disentanglement_scores(None, None, ref, groups=1, per_group=2)
    # normalised sigma: 2, 0.5, 2, 1 -> DS_identity = (2/0.5)(2/2)(2/1) = 8
    assert ds["identity"] == pytest.approx(8.0)
    assert ds["expression"] == pytest.approx((0.5 / 2) * (0.5 / 2) * (0.5 / 1))


def test_direction_cosines_are_one_for_a_linear_mapping():
    G = tiny_generator()
    with torch.no_grad():  # an affine mapping: Delta w is the same for every other factor
        G.mapping.base.fc1.weight.zero_()
        G.mapping.base.fc1.bias.zero_()
    lin = G.mapping.base
    lin.num_layers = 1
    lin.fc0.activation = "linear"
    mean, std = direction_cosines(G, "expression", pairs=3, others=6)
    assert mean == pytest.approx(1.0, abs=1e-5) and std < 1e-5
    mean2, _ = direction_cosines(G, "pose", pairs=3, others=6, offset=True)
    assert mean2 == pytest.approx(1.0, abs=1e-5)
    nonlinear = tiny_generator()
    assert direction_cosines(nonlinear, "expression", pairs=3, others=6)[0] < 0.999
    with pytest.raises(ValueError, match="unknown factor"):
        direction_cosines(G, "hair", pairs=1, others=2)


def test_ppl_scales_with_image_change_and_fd_is_zero_on_itself():
    G = tiny_generator()
    sq = lambda a, b: (a - b).square().flatten(1).mean(1)  # noqa: E731
    base = perceptual_path_length(G, sq, n=8, eps=1e-2, batch=8)
    doubled = perceptual_path_length(_Scaled(G, 2.0), sq, n=8, eps=1e-2, batch=8)
    assert base > 0 and doubled == pytest.approx(4 * base, rel=1e-3)
    space = callable_space(lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1), "pool2")
    ref = torch.cat([G(z, noise_mode="const") for z in
                     torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(0)).split(16)]).detach()
    assert frechet(G, ref, 16, space=space, seed=0) == pytest.approx(0.0, abs=1e-4)
    assert frechet(G, -ref, 16, space=space, seed=0) > 1e-3


class _Scaled:
    def __init__(self, G, k):
        self.G, self.k, self.mapping, self.sample_z = G, k, G.mapping, G.sample_z

    def synthesis(self, ws, noise_mode="const"):
        return self.k * self.G.synthesis(ws, noise_mode=noise_mode)


# ---- real-image editing ------------------------------------------------------------------------------
def test_delta_w_edit_equals_generating_the_edited_factors():
    from gan_bridge.disco.edit import delta_w, edit_ws
    G = tiny_generator()
    z = G.sample_z(2, torch.Generator().manual_seed(5))
    lam, eps = G.mapping.lam(z), z[:, G.vaes.z_dim:]
    ws = G.mapping.from_lambda(lam, eps, update_w_avg=False)
    target = torch.tensor([[0.3, -0.1, 0.05]])
    edited = edit_ws(G, ws, delta_w(G, lam, eps, "pose", target))
    lam_t = lam.clone()
    lam_t[:, -3:] = target
    assert torch.allclose(edited, G.from_lambda(lam_t, eps).clamp(-1, 1), atol=1e-5)
    assert delta_w(G, lam, eps, "pose", lam[:1, -3:]).abs()[0].max() < 1e-6
    with pytest.raises(ValueError, match="unknown factor"):
        delta_w(G, lam, eps, "hair", target)


def test_cli_edit_writes_the_edits(run, tmp_path):
    from gan_bridge.face.photos import save_image
    from gan_bridge.face.world import FaceWorld, WorldConfig
    photo = tmp_path / "face.png"
    save_image(FaceWorld(WorldConfig(image_size=64)).samples([3]).image[0], photo)
    out = tmp_path / "edit"
    args = ["disco", "edit", str(photo), "--weights", str(run[0] / "run"), "--align", "none", "--steps", "1",
            "--out", str(out)]
    assert cli_main(args + ["--pose", "20,0,0", "--expression-seed", "1"]) == 0
    assert {"input.png", "reconstruction.png", "pose.png", "expression_1.png", "sheet.png"} <= {
        p.name for p in out.iterdir()}
    assert cli_main(args) == 2  # no edit asked for


def test_face_estimator_reads_every_factor():
    from gan_bridge.disco.evaluate import face_estimator
    from gan_bridge.face.disco import DiscoFace
    from gan_bridge.face.world import FaceWorld, WorldConfig
    images = FaceWorld(WorldConfig(image_size=64)).samples([0, 1]).image
    est = face_estimator(DiscoFace())(images)
    assert {k: tuple(v.shape) for k, v in est.items()} == {"expression": (2, 30), "lighting": (2, 27),
                                                          "pose": (2, 3), "identity": (2, 128)}
