"""``morph3d fit`` over folder trees in shards, crash recovery, and ``morph3d fit-table`` consolidation
(photos rendered from the embedded ``open`` model, with their exact landmarks)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import morph3d.cli as cli
from conftest import REPO
from morph3d.fitting.shards import Shard, list_image_tree, resolve_shard
from morph3d.model import load_model
from morph3d.render import SyntheticFaces, linear_to_srgb

N_PHOTOS = 8


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A photo tree (top level and two levels of sub-folders) and a mirrored tree of .npy landmarks."""
    root = tmp_path_factory.mktemp("tree")
    model = load_model("open")
    batch = SyntheticFaces(model, image_size=96, batch_size=N_PHOTOS, seed=5,
                           pose_range_deg=(25.0, 10.0, 10.0)).batch(0)
    ids = []
    for i in range(N_PHOTOS):
        rel = f"f{i}.png" if i < 2 else f"set{i % 2}/sub{i % 3}/f{i}.png"
        for folder in ("photos", "marks"):
            (root / folder / rel).parent.mkdir(parents=True, exist_ok=True)
        rgb = (linear_to_srgb(batch.image[i]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "photos" / rel)
        np.save((root / "marks" / rel).with_suffix(".npy"), batch.landmarks_2d[i].numpy().astype(np.float64))
        ids.append(rel)
    (root / "photos" / ".hidden").mkdir()
    Image.fromarray(rgb).save(root / "photos" / ".hidden" / "skip.png")
    return {"photos": root / "photos", "marks": root / "marks", "ids": sorted(ids),
            "landmarks": {rel: batch.landmarks_2d[i].numpy() for i, rel in enumerate(ids)}}


def fit(tree, out, *args):
    return cli.main(["fit", str(tree["photos"]), "--out", str(out), "--landmarks", str(tree["marks"]), "-r",
                     "--threads", "1", *map(str, args)])


def table(out, path, *args):
    return cli.main(["fit-table", str(out), "-o", str(path), *map(str, args)])


def test_shards_are_disjoint_deterministic_and_complete(monkeypatch):
    ids = [f"d{k % 7}/img{k}.jpg" for k in range(300)]
    for n in (1, 2, 3, 5):
        owners = [[s for s in range(n) if Shard(s, n).owns(i)] for i in ids]
        assert all(len(o) == 1 for o in owners)  # each image in exactly one shard
        counts = np.bincount([o[0] for o in owners], minlength=n)
        assert counts.min() > 0.6 * len(ids) / n  # roughly balanced
    assert Shard.parse(" 2/5 ") == Shard(2, 5)
    for bad in ("5/5", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(bad)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_shard(None) == Shard(1, 3)
    assert resolve_shard("1/3") == Shard(1, 3)
    with pytest.raises(ValueError, match="contradicts RANK/WORLD_SIZE"):
        resolve_shard("0/2")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="not within WORLD_SIZE"):
        resolve_shard(None)


def test_tree_listing_skips_hidden_and_output_folders(tree, tmp_path):
    listed = [p.relative_to(tree["photos"]).as_posix() for p in list_image_tree(tree["photos"])]
    assert listed == tree["ids"]
    inner = tree["photos"] / "set0" / "results"
    inner.mkdir()
    (inner / "x.png").write_bytes(b"not listed")
    try:
        assert len(list_image_tree(tree["photos"], exclude=inner)) == N_PHOTOS
        assert len(list_image_tree(tree["photos"])) == N_PHOTOS + 1
    finally:
        shutil.rmtree(inner)


CRASH_SCRIPT = """
import os, signal, sys
import morph3d.fitting.batch as batch
from morph3d.io import partial_path
real, calls = batch.atomic_write, []
def crash_on_second_json(path, data):
    if str(path).endswith('.json'):
        calls.append(path)
        if len(calls) == 2:  # die half-way through writing the second result
            partial_path(path).write_text('{"landmarks68": [')
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)
batch.atomic_write = crash_on_second_json
from morph3d.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sharded_fit_survives_a_crash_and_gathers_each_image_once(tree, tmp_path, monkeypatch, capsys):
    out, npz = tmp_path / "out", tmp_path / "params.npz"
    owned = {s: [i for i in tree["ids"] if Shard(s, 2).owns(i)] for s in (0, 1)}
    crash = max(owned, key=lambda s: len(owned[s]))  # the shard with at least 2 images crashes
    other = 1 - crash
    assert len(owned[crash]) >= 2
    # the crashing shard, as its own process (SIGKILL: no clean-up at all)
    cmd = [sys.executable, "-c", CRASH_SCRIPT, "fit", str(tree["photos"]), "--out", str(out), "-r",
           "--landmarks", str(tree["marks"]), "--threads", "1", "--outputs", "json", "--shard", f"{crash}/2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr
    # the other shard, as torchrun would start it (RANK / WORLD_SIZE)
    monkeypatch.setenv("RANK", str(other))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert fit(tree, out, "--outputs", "json") == 0
    assert f"shard {other}/2 ({len(owned[other])} of {N_PHOTOS} images): fitted {len(owned[other])}" \
        in capsys.readouterr().out
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    # the crashed shard left one result and a partial file; gathering now names what is missing
    assert len(list(out.rglob("*.partial.json"))) == 1
    assert table(out, npz) == 1
    err = capsys.readouterr().err
    assert f"no report from shard {crash}/2" in err
    assert f"{len(owned[crash]) - 1} image(s) have no result" in err and not npz.exists()
    # rerun the crashed shard: it skips its finished image and fits the rest
    assert fit(tree, out, "--outputs", "json", "--shard", f"{crash}/2") == 0
    assert f"fitted {len(owned[crash]) - 1}, skipped 1 already done" in capsys.readouterr().out
    assert table(out, npz) == 0
    z = np.load(npz)
    assert list(z["ids"]) == tree["ids"]  # every image exactly once, in id order
    assert np.all(z["face"] == 0)
    for k, rel in enumerate(z["ids"]):
        np.testing.assert_allclose(z["landmarks_input"][k], tree["landmarks"][rel], atol=1e-3)
    assert np.all(z["nme"] < 0.05) and np.all(z["rms_px"] < 2.0)  # the model fits its own renders
    assert z["params"].shape == (N_PHOTOS, json.loads(str(z["meta"]))["layout"]["dim"])
    assert np.all(z["image_size"] == 96)


def test_json_only_outputs_then_full_outputs(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit(tree, out, "--outputs", "json") == 0
    assert len([p for p in out.rglob("*.json") if ".morph3d-fit" not in p.parts]) == N_PHOTOS
    assert not list(out.rglob("*.obj")) and not list(out.rglob("*.png"))
    rec = json.loads((out / "set0" / "sub1" / "f4.json").read_text())
    assert rec["id"] == "set0/sub1/f4.png" and rec["mesh"] is None and rec["overlay"] is None
    assert fit(tree, out, "--outputs", "json") == 0
    assert f"skipped {N_PHOTOS} already done" in capsys.readouterr().out
    # asking for meshes refits (the outputs are missing), and a json-only run then skips
    assert fit(tree, out, "--outputs", "mesh") == 0
    assert f"fitted {N_PHOTOS}" in capsys.readouterr().out
    assert len(list(out.rglob("*.obj"))) == N_PHOTOS and not list(out.rglob("*_overlay.png"))
    assert fit(tree, out, "--outputs", "json") == 0
    assert f"skipped {N_PHOTOS}" in capsys.readouterr().out


def test_table_option_and_consolidation_problems(tree, tmp_path, capsys):
    out, npz = tmp_path / "out", tmp_path / "t.npz"
    assert fit(tree, out, "--outputs", "json", "--table", npz) == 0
    assert f"table: {N_PHOTOS} face(s) of {N_PHOTOS} image(s)" in capsys.readouterr().out
    assert list(np.load(npz)["ids"]) == tree["ids"]
    # an --all-faces result gives one row per face
    rec = json.loads((out / "f0.json").read_text())
    face = {k: rec[k] for k in ("landmarks68", "landmarks_input", "pose", "params", "face_box", "fit")}
    (out / "f0.json").write_text(json.dumps({**rec, "faces": [face, face]}))
    assert table(out, tmp_path / "faces.npz") == 0
    z = np.load(tmp_path / "faces.npz")
    assert list(z["ids"][:2]) == ["f0.png", "f0.png"] and list(z["face"][:3]) == [0, 1, 0]
    (out / "f0.json").write_text(json.dumps(rec))
    # a report of a run with another shard count
    stale = out / ".morph3d-fit" / "shard-00002-of-00003.json"
    report = json.loads((out / ".morph3d-fit" / "shard-00000-of-00001.json").read_text())
    stale.write_text(json.dumps({**report, "shard": 2, "count": 3, "done": []}))
    assert table(out, tmp_path / "mixed.npz") == 1
    assert "runs with [1, 3] shards" in capsys.readouterr().err
    stale.unlink()
    # a copied result claims an image twice
    shutil.copy(out / "f0.json", out / "set0" / "copy.json")
    assert table(out, tmp_path / "dup.npz") == 1
    assert "f0.png: two results" in capsys.readouterr().err
    (out / "set0" / "copy.json").unlink()
    # a lost result is named; --allow-missing writes the rest but still fails
    (out / "set1" / "sub0" / "f3.json").unlink()
    assert table(out, tmp_path / "part.npz", "--allow-missing") == 1
    assert "1 image(s) have no result and no recorded failure: set1/sub0/f3.png" in capsys.readouterr().err
    assert len(np.load(tmp_path / "part.npz")["ids"]) == N_PHOTOS - 1
    # a damaged result
    (out / "f1.json").write_text('{"params": {}, "complete": tr')
    assert table(out, tmp_path / "bad.npz") == 1
    assert "f1.json: unreadable result" in capsys.readouterr().err


def test_argument_errors(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit(tree, out, "--shard", "1/2", "--table", tmp_path / "t.npz") == 2
    assert "morph3d fit-table" in capsys.readouterr().err
    assert fit(tree, out, "--shard", "2/2") == 2
    assert "expected I/N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fit(tree, out, "--outputs", "json,video")
    assert "unknown output video" in capsys.readouterr().err
    assert table(tmp_path / "nowhere", tmp_path / "t.npz") == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert table(tmp_path / "empty", tmp_path / "t.npz") == 2
    assert "no morph3d fit results" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_torchrun_two_processes(tree, tmp_path):
    """The documented command: two ranks under torchrun, then one table of every image."""
    out, npz = tmp_path / "out", tmp_path / "t.npz"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "morph3d",
           "fit", str(tree["photos"]), "--out", str(out), "-r", "--landmarks", str(tree["marks"]),
           "--outputs", "json", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for s in (0, 1):
        assert f"shard {s}/2 ({sum(Shard(s, 2).owns(i) for i in tree['ids'])} of {N_PHOTOS} images)" in proc.stdout
    assert table(out, npz) == 0
    assert list(np.load(npz)["ids"]) == tree["ids"]
