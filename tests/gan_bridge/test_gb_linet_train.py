"""LI-Net training through the shared loop (stages trained separately), loading for inference and the
``gan-bridge linet reenact`` CLI, on tiny grids of the synthetic world."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from gan_bridge.cli import main
from gan_bridge.face.photos import save_image
from gan_bridge.face.world import FaceWorld, WorldConfig
from gan_bridge.linet.config import LinetConfig
from gan_bridge.linet.method import LinetMethod
from gan_bridge.linet.reenact import Reenactor
from gan_bridge.train import train
from gan_bridge.train.registry import resolve_method

torch.set_num_threads(1)
S = 32
TINY = dict(image_size=S, batch_size=2, base=4, levels=2, max_channels=16, res_blocks=1, style_dim=8, identities=6,
            expressions=3, poses=3, device="cpu", progress=False, tensorboard=False, resume="never", log_every=1,
            num_samples=2, lr=2e-3)


def identity(images, landmarks):
    """A stand-in identity network: 8x8-pooled pixels (B, 48)."""
    return F.avg_pool2d(images, 8).flatten(1)


def perceptual(a, b):
    return (F.avg_pool2d(a, 4) - F.avg_pool2d(b, 4)).abs().mean()


@pytest.fixture(scope="module")
def world():
    return FaceWorld(WorldConfig(image_size=S, train_identities=6, heldout_identities=3, hair_probability=0.0,
                                 clothing_probability=0.0))


def make(world, **overrides):
    config = LinetConfig(**{**TINY, "steps": 2, "run_dir": "unused", **overrides})
    method = LinetMethod(config, perceptual=perceptual, identity=identity, world=world)
    modules, opts = method.build(method.config, torch.device("cpu"))
    method.raw_modules, method.modules, method.optimizers = dict(modules), dict(modules), opts
    return method


def params(method, name):
    return torch.cat([p.detach().flatten() for p in method.module(name).parameters()]).clone()


def test_registered_as_linet():
    assert resolve_method("linet") is LinetMethod


def test_draws_and_examples_follow_the_grid(world):
    m = make(world)
    draws = m.draws(20, torch.Generator().manual_seed(0), 6)
    for d in draws:
        assert d["s"] != d["d"] and d["e1"] != d["e2"] and d["e3"] != d["e1"] and d["p1"] != d["p2"]
        assert all(0 <= d[k] < 3 for k in ("e1", "e2", "e3", "p1", "p2")) and 0 <= d["s"] < 6
    x = m.examples(world, draws[:2])
    assert x["I_sp"].shape == (2, 3, S, S) and x["L_sp"].shape == (2, 1, S, S) and x["lm_sq"].shape == (2, 68, 2)
    # I_R and the augmentation landmarks take the driving pose (yaw, pitch) with the source identity
    for r in ("rot", "aug", "dq"):
        assert torch.allclose(x[f"pose_{r}"][:, :2], x["pose_sq"][:, :2])
    assert torch.allclose(x["pose_dp"][:, :2], x["pose_sp"][:, :2])
    assert not torch.allclose(x["pose_sp"][:, :2], x["pose_sq"][:, :2])
    assert not torch.allclose(x["lm_rot"], x["lm_sq"])  # other expression
    assert torch.equal(x["s"], torch.tensor([draws[0]["s"], draws[1]["s"]]))


@pytest.mark.parametrize("stage, trained, untouched", [
    ("transformer", ("T", "C_id", "D_r"), ("R", "G", "D", "D_p", "D_G", "P")),
    ("rotation", ("R", "D", "D_p"), ("T", "G", "C_id", "D_G", "P", "D_P")),
    ("generator", ("G", "D_G"), ("T", "R", "D", "D_p", "P", "D_P")),
    ("pix2pix", ("P", "D_P"), ("T", "R", "G", "C_id", "D_G"))])
def test_each_stage_trains_only_its_networks_with_its_weighted_losses(world, stage, trained, untouched):
    distinct = dict(lambda_l1=1.0, lambda_rec=2.0, lambda_cycle=3.0, lambda_id=4.0, lambda_d=5.0, lambda_diff=6.0,
                    lambda_gan=7.0, lambda_pose=8.0, lambda_pix=9.0, lambda_per=10.0, lambda_adv=11.0,
                    lambda_p2p_l1=12.0, lambda_p2p_gan=13.0)
    m = make(world, stages=(stage,), **distinct)
    before = {n: params(m, n) for n in m.raw_modules}
    out = m.train_step(m.draws(2, torch.Generator().manual_seed(1), 6), 0)
    for n in trained:
        assert not torch.equal(params(m, n), before[n]), n
    for n in untouched:
        assert torch.equal(params(m, n), before[n]), n
    c = m.config
    if stage == "transformer":
        expect = (c.lambda_l1 * out["t_l1"] + c.lambda_rec * out["t_rec"] + c.lambda_cycle * out["t_cycle"]
                  + c.lambda_id * out["t_id"] + c.lambda_d * out["t_adv"])
        total = out["t_loss"]
    elif stage == "rotation":
        expect = c.lambda_diff * out["r_diff"] + c.lambda_gan * out["r_gan"] + c.lambda_pose * out["r_pose"]
        total = out["r_loss"]
    elif stage == "generator":
        expect = c.lambda_pix * out["g_pix"] + c.lambda_per * out["g_per"] + c.lambda_adv * out["g_adv"]
        total = out["g_loss"]
    else:
        expect = c.lambda_p2p_l1 * out["p_l1"] + c.lambda_p2p_gan * out["p_gan"]
        total = out["p_loss"]
    assert total == pytest.approx(expect, rel=1e-5)


def test_stage_terms_match_the_paper_definitions(world):
    m = make(world)
    x = m.examples(world, m.draws(2, torch.Generator().manual_seed(2), 6))
    T, R, G = m.module("T"), m.module("R"), m.module("G")
    with torch.no_grad():
        t, L_hat = m.transformer_terms(x)
        assert torch.allclose(L_hat, T(x["L_sp"], x["L_dq"]))
        assert t["t_l1"] == pytest.approx(float((L_hat - x["L_sq"]).abs().mean()), rel=1e-5)
        assert t["t_rec"] == pytest.approx(float((T(x["L_sp"], x["L_sq"]) - x["L_sq"]).abs().mean()), rel=1e-5)
        assert t["t_cycle"] == pytest.approx(float((T(x["L_dp"], L_hat) - x["L_dq"]).abs().mean()), rel=1e-5)
        C = m.module("C_id")
        assert t["t_id"] == pytest.approx(float((C.features(x["L_sp"]) - C.features(L_hat)).abs().mean()), rel=1e-5)
        r, rot = m.rotation_terms(x)
        assert torch.allclose(rot, R(x["I_sp"], x["L_aug"]))
        assert r["r_diff"] == pytest.approx(float((rot - x["I_rot"]).abs().mean()), rel=1e-5)
        assert r["r_gan"] == pytest.approx(float((m.module("D")(rot) - 1).pow(2).mean()), rel=1e-5)
        assert r["r_pose"] == pytest.approx(float((m.module("D_p")(rot) - x["pose_rot"]).pow(2).sum(1).mean()),
                                            rel=1e-5)
        g, fake = m.generator_terms(x, x["I_rot"])
        assert torch.allclose(fake, G(x["I_rot"], x["I_sp"], x["L_sq"]))
        per = perceptual(fake, x["I_sq"]) + (identity(fake, None) - identity(x["I_sq"], None)).abs().mean()
        assert g["g_per"] == pytest.approx(float(per), rel=1e-5)
        assert g["g_pix"] == pytest.approx(float((fake - x["I_sq"]).abs().mean()), rel=1e-5)
        p, base = m.pix2pix_terms(x)
        assert torch.allclose(base, m.module("P")(x["I_sp"], x["L_dq"]))
        assert p["p_l1"] == pytest.approx(float((base - x["I_sq"]).abs().mean()), rel=1e-5)
        scores = m.module("D_P")(torch.cat([x["I_sp"], x["L_dq"], base], 1))
        assert p["p_gan"] == pytest.approx(float(F.softplus(-scores).mean()), rel=1e-5)


def test_modules_learn_a_fixed_example(world):
    m = make(world, lambda_d=0.0, lambda_gan=0.0, lambda_adv=0.0, lambda_pose=0.0, lambda_id=0.0, lambda_p2p_gan=0.0,
             stages=("transformer", "rotation", "generator", "pix2pix"))
    draws = m.draws(2, torch.Generator().manual_seed(3), 6)
    x = m.examples(world, draws)
    m.examples = lambda w, d: x
    first = m.train_step(draws, 0)
    for step in range(1, 30):
        last = m.train_step(draws, step)
    assert last["t_l1"] < 0.5 * first["t_l1"] and last["t_cycle"] < 0.5 * first["t_cycle"]
    assert last["r_diff"] < 0.7 * first["r_diff"] and last["g_pix"] < 0.7 * first["g_pix"]
    assert last["p_l1"] < 0.7 * first["p_l1"]


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("linet")
    config = LinetConfig(**{**TINY, "steps": 2, "run_dir": str(root / "run"), "sample_every": 2,
                            "checkpoint_every": 2})
    train(LinetMethod(config, perceptual=perceptual, identity=identity, world=world))
    return root


def test_shared_loop_writes_checkpoint_samples_and_logs(run):
    r = run / "run"
    assert list((r / "checkpoints").glob("ckpt-*.pt")) and list((r / "samples").glob("*.png"))
    assert "t_cycle" in (r / "log.jsonl").read_text() and "g_per" in (r / "log.jsonl").read_text()
    with Image.open(sorted((r / "samples").glob("*.png"))[-1]) as grid:  # one example (6 panels) per row
        assert grid.size == (6 * (S + 2) + 2, TINY["num_samples"] * (S + 2) + 2)


def test_init_from_starts_a_later_stage_from_an_earlier_run(run, world):
    m = make(world, stages=("generator",), init_from=str(run / "run"))
    loaded = Reenactor.load(run / "run")
    for name in ("T", "R", "G"):
        assert torch.equal(params(m, name), torch.cat([p.flatten() for p in loaded.networks[name].parameters()]))
    assert set(m.optimizers) == {"G", "D_G"}
    with pytest.raises(ValueError, match="init_from"):
        make(world, init_from=str(run / "nothing"))


def test_reenactor_runs_t_then_r_then_g(run, world):
    model = Reenactor.load(run / "run")
    b = world.heldout().identity_sets([0], 2)
    src, lm_s, lm_d = b.image[:1], b.landmarks_2d[:1], b.landmarks_2d[1:]
    r = model(src, lm_s, lm_d)
    n = model.networks
    L_s, L_d = model.landmark_image(lm_s), model.landmark_image(lm_d)
    with torch.no_grad():
        L_hat = n["T"](L_s, L_d).clamp(0, 1)
        assert torch.allclose(r.landmarks, L_hat)
        assert torch.allclose(r.rotated, n["R"](src, L_hat)) and torch.allclose(r.final, n["G"](r.rotated, src, L_hat))
    assert torch.allclose(model(src, lm_s, lm_d, use_transformer=False).landmarks, L_d)
    assert torch.allclose(model.baseline(src, lm_d), n["P"](src, L_d))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(src[:, :, :16], lm_s, lm_d)


def test_export_keeps_the_inference_networks_in_half_precision(run, world, tmp_path):
    from gan_bridge.linet.reenact import export
    out = export(run / "run", tmp_path / "linet.pt")
    state = torch.load(out, weights_only=False)
    # the run trained T, R, G but not the pix2pix stage, so P is left out
    assert set(state["modules"]) == {"T", "R", "G"} and "image_size" in state["recipe"]
    assert all(v.dtype == torch.float16 for m in state["modules"].values() for v in m.values()
               if v.is_floating_point())
    full, small = Reenactor.load(run / "run"), Reenactor.load(out)
    b = world.heldout().identity_sets([0], 2)
    src, lm_s, lm_d = b.image[:1], b.landmarks_2d[:1], b.landmarks_2d[1:]
    assert (full(src, lm_s, lm_d).final - small(src, lm_s, lm_d).final).abs().max() < 2e-2
    with pytest.raises(ValueError, match="no pix2pix"):
        small.baseline(src, lm_d)
    del state["modules"]["R"]
    torch.save(state, tmp_path / "no_r.pt")
    with pytest.raises(ValueError, match="not an LI-Net checkpoint"):
        Reenactor.load(tmp_path / "no_r.pt")


def _write_face(batch, i, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_image(batch.image[i], folder / f"{name}.png")
    np.save(folder / f"{name}.npy", batch.landmarks_2d[i].double().numpy())
    return folder / f"{name}.png"


def test_cli_reenacts_a_folder_of_frames(run, world, tmp_path, capsys):
    b = world.heldout().identity_sets([0, 1], 2)
    source = _write_face(b, 0, tmp_path / "src", "me")
    for i, name in ((2, "f0"), (3, "f1")):
        _write_face(b, i, tmp_path / "frames", name)
    out = tmp_path / "out"
    assert main(["linet", "reenact", str(source), str(tmp_path / "frames"), "--weights", str(run / "run"),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["f0.png", "f1.png"]
    assert (out / "rotated" / "f1.png").is_file() and (out / "sheet.png").is_file()
    record = json.loads((out / "linet.json").read_text())
    assert record["transformer"] is True and len(record["driving"]) == 2
    single = tmp_path / "single"
    assert main(["linet", "reenact", str(source), str(tmp_path / "frames" / "f0.png"), "--weights", str(run / "run"),
                 "--out", str(single), "--no-transformer"]) == 0
    assert json.loads((single / "linet.json").read_text())["transformer"] is False
    bundled = tmp_path / "bundled"  # without --weights: the bundled world model
    assert main(["linet", "reenact", str(source), str(tmp_path / "frames" / "f0.png"), "--out", str(bundled)]) == 0
    assert json.loads((bundled / "linet.json").read_text())["weights"].endswith("world_linet_32.pt")
    _write_face(b, 1, tmp_path / "src", "you")
    grid = tmp_path / "grid"
    assert main(["linet", "reenact", str(tmp_path / "src"), str(tmp_path / "frames"), "--weights", str(run / "run"),
                 "--out", str(grid)]) == 0
    assert sorted(p.name for p in (grid / "frames" / "you").iterdir()) == ["f0.png", "f1.png"]
    assert (grid / "rotated" / "me" / "f0.png").is_file()
    assert len(json.loads((grid / "linet.json").read_text())["source"]) == 2
    with Image.open(grid / "sheet.png") as sheet:
        labels = [p["label"] for p in json.loads(sheet.info["panels"])]
    assert labels == ["driving:", "f0", "f1", "me", "reenacted", "reenacted", "you", "reenacted", "reenacted"]


def test_cli_errors(run, tmp_path, capsys):
    w = str(run / "run")
    assert main(["linet", "reenact", str(tmp_path / "nope.png"), str(tmp_path), "--weights", w,
                 "--out", str(tmp_path / "o")]) == 2
    assert "source" in capsys.readouterr().err
    (tmp_path / "s.png").write_bytes(b"not a png")
    (tmp_path / "empty").mkdir()
    assert main(["linet", "reenact", str(tmp_path / "s.png"), str(tmp_path / "empty"), "--weights", w,
                 "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["linet", "reenact", str(tmp_path / "s.png"), str(tmp_path / "s.png"), "--weights",
                 str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "train linet" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"step": 1, "config": {"nope": 1}, "modules": {}}, bad)
    assert main(["linet", "reenact", str(tmp_path / "s.png"), str(tmp_path / "s.png"), "--weights", str(bad),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not an LI-Net checkpoint" in capsys.readouterr().err


@pytest.mark.shared
def test_cli_on_a_real_photo(run, tmp_path):
    faces = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
    if not (faces / "manifest.json").is_file():
        pytest.skip("../shared/data/faces is not available")
    entries = json.loads((faces / "manifest.json").read_text())["entries"]
    if len(entries) < 2:
        pytest.skip("need two faces in ../shared/data/faces")
    images = []
    for i, name in ((0, "source"), (1, "driving")):
        folder = tmp_path / name
        folder.mkdir()
        images.append(folder / f"{name}{Path(entries[i]['file']).suffix}")
        images[-1].symlink_to(faces / entries[i]["file"])
        np.save(folder / f"{name}.npy", np.asarray(entries[i]["landmarks68"], dtype=np.float64))
    out = tmp_path / "out"
    assert main(["linet", "reenact", str(images[0]), str(tmp_path / "driving"),
                 "--weights", str(run / "run"), "--out", str(out)]) == 0
    assert (out / "sheet.png").is_file()


def test_evaluation_scores_the_truth_perfectly_and_the_source_worse(world, tmp_path):
    from types import SimpleNamespace

    from gan_bridge.linet.evaluate import evaluate, nme, table
    sampler = LinetMethod(LinetConfig(**{**TINY, "identities": 3}), world=world)
    seen = []  # (images, landmarks, poses) the stand-in methods returned

    def encoder(images):  # reads back the true landmarks and pose of images it has seen returned
        lm, pose = next((lm, pose) for img, lm, pose in seen if torch.equal(img, images))
        return SimpleNamespace(landmarks=lm, rotation=pose)

    def perfect(x):
        seen.append((x["I_sq"], x["lm_dq"], x["pose_dq"]))
        return x["I_sq"]

    def source(x):
        seen.append((x["I_sp"], x["lm_sp"], x["pose_sp"]))
        return x["I_sp"]

    feats = lambda img: F.avg_pool2d(img, 8).flatten(1)  # noqa: E731
    csim = lambda a, la, b, lb: F.cosine_similarity(feats(a), feats(b))  # noqa: E731
    r = evaluate({"perfect": perfect, "source": source}, sampler, 4, 2, feats, encoder, csim)
    assert r["perfect"]["ssim"] == pytest.approx(1.0, abs=1e-4) and r["perfect"]["fd"] == pytest.approx(0, abs=1e-3)
    assert r["perfect"]["nme"] == 0 and r["perfect"]["pose_deg"] == 0
    assert r["source"]["ssim"] < 0.95 and r["source"]["fd"] > 1e-3 and r["source"]["pose_deg"] > 1
    assert r["source"]["csim"] == pytest.approx(1.0)
    assert "| perfect |" in table(r)
    from gan_bridge.linet.evaluate import comparison_sheet
    sheet = comparison_sheet({"perfect": perfect, "source": source}, sampler, tmp_path / "s.png", examples=2)
    with Image.open(sheet) as im:
        labels = [p["label"] for p in json.loads(im.info["panels"])]
    assert labels == ["source", "driving", "truth", "perfect", "source"] * 2
    lm = torch.zeros(1, 68, 2)
    lm[0, 45, 0] = 10.0
    assert nme(lm + torch.tensor([3.0, 4.0]), lm) == pytest.approx(0.5)


def test_evaluate_command_scores_extra_runs_and_writes_json(run, tmp_path, capsys):
    import json
    from gan_bridge.linet.evaluate import main
    weights = str(run / "run")
    with pytest.raises(SystemExit, match="use LABEL=RUN"):
        main(["--weights", weights, "--no-csim", "--also", weights])
    out = tmp_path / "results.json"
    assert main(["--weights", weights, "--no-csim", "--examples", "2", "--batch", "2",
                 "--also", f"again={weights}", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert {"LI-Net", "LI-Net (again)", "truth (ceiling)"} <= set(results)
    assert results["LI-Net (again)"] == results["LI-Net"]
    assert "LI-Net (again)" in capsys.readouterr().out


def test_shipped_world_linet_moves_held_out_faces_to_the_driving_landmarks():
    """The committed export (scripts/train_linet.sh) loads in float32 and moves held-out faces toward the driving
    landmarks, closer than the pix2pix baseline trained beside it (the README's table, on fewer faces)."""
    from gan_bridge.assets import asset_path
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.linet.evaluate import baseline_method, evaluate, reenactor_method
    from gan_bridge.linet.reenact import Reenactor
    model = Reenactor.load(asset_path("world_linet_32.pt"))
    assert set(model.networks) == {"T", "R", "G", "P"} and model.size == 32
    assert all(p.dtype == torch.float32 for net in model.networks.values() for p in net.parameters())
    c = model.config
    world = FaceWorld(WorldConfig(image_size=32, seed=c.world_seed, model=c.world_model,
                                  train_identities=c.identities))
    sampler = LinetMethod(c, world=world)
    methods = {"LI-Net": reenactor_method(model), "pix2pix": baseline_method(model), "source": lambda x: x["I_sp"]}
    r = evaluate(methods, sampler, 32, 16, encoder=load_encoder(None, c.world_model))
    assert r["LI-Net"]["nme"] < 0.9 * r["pix2pix"]["nme"] and r["LI-Net"]["nme"] < 0.9 * r["source"]["nme"]
