import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from morph3d import cli
from morph3d.model import canonical
from render_fixtures import sphere_canonical, sphere_model

PANELS = ("image + landmarks", "mask", "depth", "normals", "regions", "flow")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "sphere.npz"
    canonical.save(sphere_canonical(n_lat=16, n_lon=32), path)
    return path


def run(monkeypatch, argv):
    if "render" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ("render",))
    return cli.main(["render"] + [str(a) for a in argv])


def test_writes_a_contact_sheet_with_six_panels(monkeypatch, tmp_path, model_file, capsys):
    out = tmp_path / "sheet.png"
    rc = run(monkeypatch, ["--model", model_file, "--size", 64, "--yaw", 25, "--expression", "puff=0.5",
                           "--flow-to-expression", "jaw_open=1", "--out", out])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    img = Image.open(out)
    img.load()
    assert img.format == "PNG" and img.mode == "RGB"
    panels = json.loads(img.text["panels"])
    assert len(panels) == 6
    for want, got in zip(PANELS, panels):
        assert got["label"].startswith(want)
    assert "jaw_open=1" in panels[5]["label"]
    pix = np.asarray(img).astype(int)
    crops = []
    for p in panels:
        left, top, right, bottom = p["box"]
        assert right - left == 64 and bottom - top == 64 and right <= img.width and bottom <= img.height
        crops.append(pix[top:bottom, left:right])
    boxes = [p["box"] for p in panels]
    for i in range(6):  # no two panels overlap
        for j in range(i + 1, 6):
            a, b = boxes[i], boxes[j]
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    image, mask, depth, normals, regions, flow = crops
    assert image.std() > 10  # a face on a background
    assert (mask[..., 0] == mask[..., 1]).all() and mask.max() == 255 and mask.min() == 0
    assert (depth.max(-1) - depth.min(-1)).max() > 50  # colour-mapped, not grey
    centre = normals[28:36, 28:36].reshape(-1, 3)  # the sphere faces the camera there: blue-ish (n_z ~ 1)
    assert (centre[:, 2] > 200).all()
    assert len(np.unique(regions.reshape(-1, 3), axis=0)) >= 3  # background + at least two regions
    assert len(np.unique(flow.reshape(-1, 3), axis=0)) > 20  # a colour-wheel coded field (and its legend)
    # the panel images are the renders: the mask panel is bright exactly where the face is
    seen = mask[..., 0] > 128
    assert 0.1 < seen.mean() < 0.9


def test_params_file_is_rendered(monkeypatch, tmp_path, model_file):
    model = sphere_model(n_lat=16, n_lon=32)
    p = model.default_params(1, (40, 60))
    p.rotation[0, 0] = 0.3
    params = p.save(tmp_path / "face.json")
    out = tmp_path / "sheet.png"
    assert run(monkeypatch, ["--model", model_file, "--params", params, "--out", out]) == 0
    boxes = [q["box"] for q in json.loads(Image.open(out).text["panels"])]
    assert boxes[0][2] - boxes[0][0] == 60 and boxes[0][3] - boxes[0][1] == 40
    assert run(monkeypatch, ["--model", model_file, "--params", params, "--size", 90, "--out", out]) == 0
    boxes = [q["box"] for q in json.loads(Image.open(out).text["panels"])]
    assert boxes[0][2] - boxes[0][0] == 90 and boxes[0][3] - boxes[0][1] == 60
    npz = p.save(tmp_path / "face.npz")
    assert run(monkeypatch, ["--model", model_file, "--params", npz, "--out", tmp_path / "b.png"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--size", 8], "--size must be between 16 and 4096"),
    (["--size", 5000], "--size must be between 16 and 4096"),
    (["--expression", "wink=1"], "no expression named 'wink'"),
    (["--expression", "jaw_open"], "NAME=WEIGHT"),
    (["--flow-to-expression", "jaw_open=abc"], "NAME=WEIGHT"),
    (["--flow-to-expression", "smile=1"], "no expression named 'smile'"),
    (["--params", "{dir}/bad.json"], "not a readable FaceParams file"),
    (["--params", "{dir}/partial.json"], "missing"),
    (["--params", "{dir}/other_model.json"], "identity coefficients"),
    (["--params", "{dir}/absent.json"], "not found"),
    (["--params", "{dir}/face.txt"], ".json or .npz"),
    (["--model", "{dir}/no_model.npz"], "no_model.npz"),
    (["--lighting", "params"], "needs --params"),
])
def test_bad_input_fails_cleanly(monkeypatch, tmp_path, model_file, capsys, args, message):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "partial.json").write_text(json.dumps({"identity": [[0.0]]}))
    (tmp_path / "face.txt").write_text("")
    other = sphere_model(n_lat=8, n_lon=8).default_params(1, (32, 32))
    other.identity = torch.zeros(1, 5)
    other.save(tmp_path / "other_model.json")
    args = [a.format(dir=tmp_path) if isinstance(a, str) else a for a in args]
    if "--model" not in args:
        args = ["--model", model_file] + args
    out = tmp_path / "out.png"
    rc = run(monkeypatch, args + ["--out", out])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("morph3d render: error:")
    assert not out.exists() and not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob(".*partial"))


def test_bad_output_path(monkeypatch, tmp_path, model_file, capsys):
    assert run(monkeypatch, ["--model", model_file, "--out", tmp_path / "sheet.jpg"]) == 2
    assert ".png" in capsys.readouterr().err
    assert run(monkeypatch, ["--model", model_file, "--out", tmp_path / "missing" / "sheet.png"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_exit_status_of_the_command(tmp_path, model_file):
    out = tmp_path / "sheet.png"
    proc = subprocess.run([sys.executable, "-m", "morph3d", "render", "--model", str(model_file), "--size", "3",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--size must be between" in proc.stderr and not out.exists()
