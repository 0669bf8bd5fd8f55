"""``gan-bridge edit`` round trips: tiny StyleGAN2 (a gan_bridge checkpoint and the NVIDIA .pkl fixture),
a tiny random regressor and random RigNets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_bridge.cli import main
from gan_bridge.face.photos import save_image
from gan_bridge.networks.stylegan2 import Generator, save_networks
from gan_bridge.stylerig import RigNet, save_rignet

torch.set_num_threads(1)
ADA_PKL = Path(__file__).parent / "data" / "stylegan2" / "network-snapshot-000000.pkl"
TAU = {"pose": 3, "lighting": 27, "expression": 30}


def _rignet(mode, num_ws=8, w_dim=32):
    net = RigNet(mode, num_ws, w_dim, TAU[mode], latent_dim=8, hidden=16)
    with torch.no_grad():
        net.decoder2.weight.normal_(0, 0.3)
    return net


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from morph3d.model import load_model
    from morph3d.regress import SmallRegressor, SmallRegressorConfig, target_dim
    from morph3d.regress.small import save_small_regressor
    root = tmp_path_factory.mktemp("edit")
    torch.manual_seed(0)
    G = Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()
    save_networks(root / "G.pt", G=G)
    net = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 8), head=16,
                                              out_dim=target_dim(load_model("open"))))
    with torch.no_grad():
        net.fc[-1].weight.normal_(0, 0.05)
    save_small_regressor(net, root / "reg.pt", "open")
    for mode in TAU:
        save_rignet(_rignet(mode), root / "rigs" / f"{mode}.pt")
    save_rignet(_rignet("pose"), root / "pose_only" / "pose.pt")
    save_rignet(_rignet("pose", w_dim=16), root / "other" / "pose.pt")
    with torch.no_grad():
        save_image(G(torch.randn(1, 32), noise_mode="const").clamp(-1, 1)[0], root / "face.png")
    return root


def _args(files, out, *extra, image="seed:1", generator=None, rigs="rigs"):
    return ["edit", image, "--generator", str(generator or files / "G.pt"), "--rignet", str(files / rigs),
            "--out", str(out), "--encoder", str(files / "reg.pt"), "--align", "none", *extra]


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


def test_sequential_edits_of_a_generated_face(files, tmp_path):
    out = tmp_path / "out"
    assert main(_args(files, out, "--yaw", "20", "--expression", "smile=1", "--light", "2=0.5")) == 0
    record = json.loads((out / "edit.json").read_text())
    assert [s["mode"] for s in record["steps"]] == ["pose", "lighting", "expression"]
    assert record["edits"]["yaw"] == 20 and record["edits"]["expression"] == {"smile": 1.0}
    assert len(record["steps"][0]["target"]) == 3 and len(record["steps"][1]["target"]) == 27
    ws = torch.load(out / "embedding.pt", weights_only=True)["ws"]
    assert ws.shape == (8, 32)
    projection = _png(out / "projection.png")
    edits = [_png(out / f"edit_{k}_{m}.png") for k, m in ((1, "pose"), (2, "lighting"), (3, "expression"))]
    assert projection.shape == (32, 32, 3) and all(np.abs(e - projection).mean() > 0.5 for e in edits)
    sheet = Image.open(out / "sheet.png")
    assert sheet.width > 4 * 32  # projection + 3 edits


def test_pie_embedding_of_a_photo_with_the_nvidia_checkpoint(files, tmp_path):
    config = tmp_path / "edits.json"
    config.write_text(json.dumps({"yaw": -15, "light_scale": 1.2}))
    out = tmp_path / "out"
    assert main(_args(files, out, "--config", str(config), "--pie-steps", "0.003", image=str(files / "face.png"),
                      generator=ADA_PKL)) == 0
    record = json.loads((out / "edit.json").read_text())
    assert record["pie"]["recognition"] and record["pie"]["modification"] and record["pie"]["steps_scale"] == 0.003
    assert record["projection"]["psnr"] > 0
    assert [s["mode"] for s in record["steps"]] == ["pose", "lighting"]
    assert (out / "edit_2_lighting.png").is_file() and not (out / "edit_3_expression.png").exists()


@pytest.mark.parametrize("extra, rigs, message", [
    ((), "rigs", "nothing to edit"),
    (("--light", "2=0.5"), "pose_only", "no lighting.pt"),
    (("--expression", "smile"), "rigs", "bad --expression"),
    (("--yaw", "10"), "other", "train a RigNet for this generator"),
    (("--expression", "grin=1"), "rigs", "no expression 'grin'"),
    (("--yaw", "5", "--encoder-reframe", "-1"), "rigs", "--encoder-reframe >= 0"),
    (("--yaw", "nan"), "rigs", "finite"),
])
def test_edit_errors_are_one_line(files, tmp_path, capsys, extra, rigs, message):
    assert main(_args(files, tmp_path / "out", *extra, rigs=rigs)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_edit_rejects_a_bad_config_and_a_missing_image(files, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{yaw: 1")
    assert main(_args(files, tmp_path / "o1", "--config", str(bad))) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(_args(files, tmp_path / "o2", "--yaw", "5", image=str(tmp_path / "none.png"))) == 2
    assert "does not exist" in capsys.readouterr().err
