"""PAS training through the shared loop on tiny same-identity pose pairs, the editor and the ``gan-bridge pas`` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gan_bridge.cli import main
from gan_bridge.face.photos import save_image
from gan_bridge.face.world import FaceWorld, WorldConfig
from gan_bridge.pas.config import PasConfig
from gan_bridge.pas.edit import PasEditor
from gan_bridge.pas.method import PasMethod
from gan_bridge.pas.networks import landmark_code
from morph3d.ops import pixel_sample
from gan_bridge.train import train
from gan_bridge.train.registry import resolve_method

torch.set_num_threads(1)
S = 32
TINY = dict(image_size=S, batch_size=2, pas_base=4, pas_levels=3, feature_dim=32, sampler_hidden=(32,), gen_base=4,
            gen_levels=3, disc_base=4, disc_levels=3, max_channels=16, identity_hidden=4, device="cpu",
            progress=False, tensorboard=False, resume="never", log_every=1)


class TinyIdentity(nn.Module):
    """A frozen random conv net standing in for the identity network: (images, landmarks) -> (B, 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 5, 2).requires_grad_(False)

    def forward(self, images, landmarks):
        return self.conv(images).mean((2, 3))


def perceptual(a, b):
    return (F.avg_pool2d(a, 4) - F.avg_pool2d(b, 4)).abs().mean()


@pytest.fixture(scope="module")
def world():
    return FaceWorld(WorldConfig(image_size=S, hair_probability=0.0, clothing_probability=0.0))


def make(world, **overrides):
    config = PasConfig(**{**TINY, "steps": 4, "pretrain_steps": 1, "run_dir": "unused", **overrides})
    identity = TinyIdentity() if config.identity_net == "dlib" else None
    return PasMethod(config, identity=identity, identity_dim=8 if identity else None, perceptual=perceptual,
                     world=world)


def ready(method):
    """Build the method as the training loop does (single process)."""
    modules, opts = method.build(method.config, torch.device("cpu"))
    method.raw_modules, method.modules, method.optimizers = dict(modules), dict(modules), opts
    return method


def params(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_registered_as_pas():
    assert resolve_method("pas") is PasMethod


def test_pretraining_leaves_pas_alone_then_joint_training_moves_everything(world):
    torch.manual_seed(0)
    m = ready(make(world, pretrain_steps=1))
    batches = m.data(0)
    before = {n: params(mod) for n, mod in m.raw_modules.items()}
    out = m.train_step(next(batches), 0)
    assert out["pretrain"] == 1.0 and "pas_pix" not in out and "gen_pix" in out and "disc" in out
    after = {n: params(mod) for n, mod in m.raw_modules.items()}
    assert torch.equal(before["pas"], after["pas"])
    assert not torch.equal(before["gen"], after["gen"]) and not torch.equal(before["disc"], after["disc"])
    out = m.train_step(next(batches), 1)
    assert out["pretrain"] == 0.0
    assert {"pas_pix", "pas_seg", "pas_tv", "pas_per", "gen_pix", "gen_per", "gen_tv", "gen_id", "gen_adv",
            "disc", "loss"} <= set(out)
    assert not torch.equal(after["pas"], params(m.raw_modules["pas"]))
    weights = {"pix": 1, "seg": 1, "per": 1, "tv": 1, "id": 1, "adv": 1}
    assert out["loss"] == pytest.approx(sum(v * weights[k.split("_", 1)[1]] for k, v in out.items()
                                            if k.startswith(("pas_", "gen_"))), rel=1e-5)


def test_joint_step_feeds_pas_the_preprocessed_pair_and_backpropagates_inpainting(world):
    """PAS's embedder sees I_tf with ldmk_J, and I with ldmk_I; G's loss on J_fake reaches PAS through J_hat_fake
    (PAS's own losses and G's reconstruction term switched off)."""
    from gan_bridge.face.pas_prep import preprocess
    torch.manual_seed(0)
    m = ready(make(world, pretrain_steps=0, lambda_seg=0, lambda_tv=0, lambda_per=0, recon_weight=0,
                   inpaint_recon_weight=0))
    pas = m.raw_modules["pas"]
    with torch.no_grad():
        pas.sampler.out.weight.normal_(0, 0.01)
    seen = []
    pas.embedder.register_forward_hook(lambda mod, args, out: seen.append(args))
    d = m.pairs(next(m.data(0)))
    terms, _ = m.losses(d, torch.Generator().manual_seed(0), pretrain=False)
    prep = preprocess(d["I"], d["lm_I"], d["lm_J"])
    assert len(seen) == 2
    for got, want in zip(seen, [(prep.image_tf, landmark_code(d["lm_J"], (S, S))),
                                (d["I"], landmark_code(d["lm_I"], (S, S)))]):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    grad = torch.autograd.grad(terms["gen_pix"], pas.sampler.out.weight)[0]
    assert grad.abs().sum() > 0


def test_pas_learns_a_fixed_pose_pair(world):
    """A few steps on one same-identity pair lower the PAS pixel loss (PAS alone, ablation b)."""
    torch.manual_seed(0)
    m = ready(make(world, variant="pas_only", lr=2e-3, lambda_per=0, lambda_tv=0.1, identity_net="none"))
    assert set(m.raw_modules) == {"pas"}
    batch = next(m.data(0))
    losses = [m.train_step(batch, s)["pas_pix"] for s in range(25)]
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("variant, modules", [("inpaint_only", {"gen", "disc"}), ("full", {"pas", "gen", "disc"})])
def test_variants(world, variant, modules):
    torch.manual_seed(0)
    m = ready(make(world, variant=variant, pretrain_steps=0))
    assert set(m.raw_modules) == modules
    out = m.train_step(next(m.data(0)), 0)
    assert ("pas_pix" in out) == ("pas" in modules) and np.isfinite(out["loss"])


def test_bad_config_is_a_one_line_error():
    with pytest.raises(ValueError, match="variant"):
        PasConfig(variant="nope")
    with pytest.raises(ValueError, match="multiple of 2"):
        PasConfig(image_size=40)
    with pytest.raises(ValueError, match="pretrain_steps"):
        PasConfig(steps=5, pretrain_steps=6)


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    """A 3-step run of the shared loop (1 pre-training step, 2 joint) without identity network."""
    root = tmp_path_factory.mktemp("pas")
    torch.manual_seed(0)
    config = PasConfig(**{**TINY, "steps": 3, "pretrain_steps": 1, "run_dir": str(root / "run"),
                          "identity_net": "none", "sample_every": 3, "num_samples": 2})
    result = train(PasMethod(config, perceptual=perceptual, world=world))
    return root, result


def test_shared_loop_writes_checkpoint_samples_and_logs(run):
    root, result = run
    assert result.step == 3
    ckpt = torch.load(root / "run" / "checkpoints" / "ckpt-00000003.pt", weights_only=False)
    assert set(ckpt["modules"]) == {"pas", "gen", "disc"}
    assert (root / "run" / "samples" / "step-00000003.png").is_file()
    logs = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["pretrain"] for r in logs] == [1.0, 0.0, 0.0]


def test_editor_reproduces_the_trained_pipeline(run, world):
    root, _ = run
    editor = PasEditor.load(root / "run")
    pair = world.heldout().identity_sets([0], 2, ("pose",))
    from gan_bridge.face.pas_prep import landmarks_3d
    lm = landmarks_3d(world.model, pair.params)
    r = editor.edit(pair.image[:1], lm[:1], lm[1:])
    assert r.final.shape == (1, 3, S, S) and r.sampled.shape == (1, 3, S, S) and r.grid.shape == (1, S, S, 2)
    with torch.no_grad():
        grid = editor.pas.sampling_map(r.inputs.image_tf, lm[1:], r.inputs.unaligned_grid())  # pas_start='source'
        sampled = pixel_sample(pair.image[:1], r.inputs.source_grid(grid))  # I sampled once, zeros outside
        expect = editor.gen(sampled, lm[1:], None)
    torch.testing.assert_close(r.grid, grid)
    torch.testing.assert_close(r.final, expect.clamp(-1, 1))
    with pytest.raises(ValueError, match="crop them to 32 px"):
        editor.edit(torch.zeros(1, 3, 16, 16), lm[:1], lm[1:])


def test_export_keeps_pas_and_inpainting_in_half_precision(run, world, tmp_path):
    from gan_bridge.face.pas_prep import landmarks_3d
    from gan_bridge.pas.edit import export, main as export_main
    root, _ = run
    out = export(root / "run", tmp_path / "pas.pt")
    record = torch.load(out, weights_only=False)
    assert set(record["modules"]) == {"pas", "gen"} and record["recipe"]
    assert all(v.dtype == torch.float16 for m in record["modules"].values() for v in m.values()
               if v.is_floating_point())
    pair = world.heldout().identity_sets([1], 2, ("pose",))
    lm = landmarks_3d(world.model, pair.params)
    full, half = PasEditor.load(root / "run"), PasEditor.load(out)
    assert half.pas is not None and half.gen is not None
    torch.testing.assert_close(half.edit(pair.image[:1], lm[:1], lm[1:]).final,
                               full.edit(pair.image[:1], lm[:1], lm[1:]).final, atol=0.02, rtol=0)
    assert export_main(["export", str(root / "run"), str(tmp_path / "pas32.pt"), "--float32"]) == 0
    assert torch.load(tmp_path / "pas32.pt", weights_only=False)["modules"]["gen"]["out.weight"].dtype \
        == torch.float32


def test_cli_rotates_a_face(run, tmp_path, capsys):
    root, _ = run
    face = FaceWorld(WorldConfig(image_size=128)).samples([7])
    save_image(face.image[0], tmp_path / "face.png")
    np.save(tmp_path / "face.npy", face.landmarks_2d[0].numpy())
    out = tmp_path / "out"
    rc = main(["pas", "rotate", str(tmp_path / "face.png"), "--weights", str(root / "run"), "--yaw", "25",
               "--landmarks", str(tmp_path / "face.npy"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    names = {p.name for p in (out / "face").iterdir()}
    assert {"input.png", "preprocessed.png", "sampled.png", "final.png", "sheet.png", "pas.json"} <= names
    assert json.loads((out / "face" / "pas.json").read_text())["yaw"] == 25
    folder = tmp_path / "folder"  # a folder of photos: each one's landmark file beside it, no detection
    folder.mkdir()
    (tmp_path / "face.png").rename(folder / "face.png")
    (tmp_path / "face.npy").rename(folder / "face.npy")
    assert main(["pas", "rotate", str(folder), "--weights", str(root / "run"), "--yaw", "25",
                 "--out", str(tmp_path / "out2")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out2" / "face" / "final.png")),
                          np.asarray(Image.open(out / "face" / "final.png")))
    # without --weights: the bundled world model
    assert main(["pas", "rotate", str(folder), "--yaw", "25", "--out", str(tmp_path / "out3")]) == 0
    assert json.loads((tmp_path / "out3" / "face" / "pas.json").read_text())["weights"].endswith("world_pas_32.pt")


def test_cli_errors(run, tmp_path, capsys):
    root, _ = run
    assert main(["pas", "rotate", str(tmp_path / "nope.png"), "--weights", str(root / "run"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    (tmp_path / "f.png").write_bytes(b"")
    assert main(["pas", "rotate", str(tmp_path / "f.png"), "--weights", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "corrupt" in capsys.readouterr().err
    torch.save({"step": 1, "config": {"hidden": 3}, "modules": {}}, bad)  # another method's checkpoint
    assert main(["pas", "rotate", str(tmp_path / "f.png"), "--weights", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a PAS checkpoint" in capsys.readouterr().err
    assert main(["pas", "rotate", str(tmp_path / "f.png"), "--weights", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "train with 'gan-bridge train pas'" in capsys.readouterr().err


def test_sample_grid_shows_each_pair_in_one_row(world):
    torch.manual_seed(0)
    m = ready(make(world, identity_net="none"))
    fixed = m.fixed_inputs(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = m.sample(fixed)
    assert out.shape == (10, 3, S, S)
    torch.testing.assert_close(out[[0, 5]], fixed.image[0::2].clamp(-1, 1))  # I
    torch.testing.assert_close(out[[4, 9]], fixed.image[1::2].clamp(-1, 1))  # J


def test_evaluation_table_and_the_3dmm_warp_baseline(run, world):
    from gan_bridge.pas.evaluate import editor_method, evaluate, table, warp_method
    root, _ = run

    def oracle(w, batch):
        return batch.image[1::2]

    def source(w, batch):
        return batch.image[0::2]

    res = evaluate({"oracle": oracle, "source": source, "warp": warp_method,
                    "full": editor_method(PasEditor.load(root / "run"))}, world, pairs=3, batch_size=2, csim=False)
    assert res["oracle"]["l1"] == pytest.approx(0, abs=1e-6) and res["oracle"]["ssim"] == pytest.approx(1, abs=1e-4)
    assert res["oracle"]["lpips"] == pytest.approx(0, abs=1e-4) and "csim" not in res["oracle"]
    assert res["warp"]["l1"] < res["source"]["l1"]  # the exact 3DMM flow moves the face towards the target
    assert all(np.isfinite(v) for v in res["full"].values())
    assert table(res).splitlines()[0] == "| method | l1 | ssim | lpips |"
    same = evaluate({"warp": warp_method}, world, pairs=2, batch_size=2, vary=(), csim=False)
    assert same["warp"]["l1"] == pytest.approx(0, abs=1e-4)  # identical views: the warp is the identity


def test_evaluate_command_adds_the_source_reference_json_and_sheet(run, tmp_path, capsys):
    from gan_bridge.pas.evaluate import main as evaluate_main
    root, _ = run
    out, sheet = tmp_path / "r.json", tmp_path / "s.png"
    assert evaluate_main(["--full", str(root / "run"), "--pairs", "2", "--batch", "2", "--no-csim",
                          "--out", str(out), "--sheet", str(sheet)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"(a) 3DMM warp", "(d) PAS + inpainting", "source, unchanged (reference)"}
    assert results["(a) 3DMM warp"]["l1"] < results["source, unchanged (reference)"]["l1"]
    with Image.open(sheet) as im:
        labels = [p["label"] for p in json.loads(im.info["panels"])]
    assert labels[:4] == ["source", "target", "(a) 3DMM warp", "(d) PAS + inpainting"] and len(labels) == 24
    assert "| source, unchanged (reference) |" in capsys.readouterr().out


@pytest.mark.shared
def test_cli_on_a_real_photo(run, tmp_path):
    from pathlib import Path
    faces = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
    if not (faces / "manifest.json").is_file():
        pytest.skip("../shared/data/faces is absent")
    entry = json.loads((faces / "manifest.json").read_text())["entries"][0]
    np.save(tmp_path / "lm.npy", np.asarray(entry["landmarks68"], dtype=np.float64))
    root, _ = run
    out = tmp_path / "out"
    assert main(["pas", "rotate", str(faces / entry["file"]), "--weights", str(root / "run"), "--yaw", "-20",
                 "--pitch", "10", "--landmarks", str(tmp_path / "lm.npy"), "--out", str(out)]) == 0
    stem = Path(entry["file"]).stem
    assert (out / stem / "final.png").is_file() and (out / stem / "sheet.png").is_file()


def test_shipped_world_pas_beats_the_3dmm_warp_on_held_out_pairs():
    """The committed export (scripts/train_pas.sh) loads in float32 and, on held-out world pairs, turns faces closer
    to the true target than the exact 3DMM warp and the unchanged source (the README's table, on fewer pairs)."""
    from gan_bridge.assets import asset_path
    from gan_bridge.pas.evaluate import editor_method, evaluate, source_method, warp_method
    editor = PasEditor.load(asset_path("world_pas_32.pt"))
    assert editor.pas is not None and editor.gen is not None and editor.size == 32
    assert all(p.dtype == torch.float32 for net in (editor.pas, editor.gen) for p in net.parameters())
    c = editor.config
    world = FaceWorld(WorldConfig(image_size=32, seed=c.world_seed, model=c.world_model,
                                  train_identities=c.world_identities))
    r = evaluate({"pas": editor_method(editor), "warp": warp_method, "source": source_method}, world, 32,
                 csim=False)
    for baseline in ("warp", "source"):
        assert r["pas"]["l1"] < 0.95 * r[baseline]["l1"] and r["pas"]["lpips"] < 0.95 * r[baseline]["lpips"]
        assert r["pas"]["ssim"] > r[baseline]["ssim"] + 0.03
