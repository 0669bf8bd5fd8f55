"""``gan-bridge reenact`` round trips with a tiny StyleGAN2, a tiny regressor and tiny directions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gan_bridge.cli import main
from gan_bridge.directions import Directions, load_directions, pose_vector, save_directions
from gan_bridge.face.photos import save_image
from gan_bridge.face.shape import load_encoder
from gan_bridge.networks.stylegan2 import Generator, load_generator, save_networks

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from morph3d.model import load_model
    from morph3d.regress import SmallRegressor, SmallRegressorConfig, target_dim
    from morph3d.regress.small import save_small_regressor
    root = tmp_path_factory.mktemp("reenact")
    torch.manual_seed(0)
    G = Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()
    save_networks(root / "G.pt", G=G)
    net = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 8), head=16,
                                              out_dim=target_dim(load_model("open"))))
    with torch.no_grad():
        net.fc[-1].weight.normal_(0, 0.05)  # a random but input-dependent regressor
    save_small_regressor(net, root / "reg.pt", "open")
    d = Directions(G.num_ws, G.w_dim, num_layers=4, expression_dims=6)
    with torch.no_grad():
        d.A.normal_(0, 0.3)
    save_directions(d, root / "A.pt")
    save_directions(Directions(G.num_ws, 16, 4, 6), root / "A_other.pt")
    frames = root / "frames"
    frames.mkdir()
    with torch.no_grad():
        images = G(torch.randn(3, 32), noise_mode="const").clamp(-1, 1)
    for i, img in enumerate(images):
        save_image(img, frames / f"{i:03d}.png")
    save_image(images[0], root / "single.png")
    return root


def _args(files, out, *extra, source="seed:1", targets=None):
    targets = targets or [str(files / "frames"), str(files / "single.png")]
    return ["reenact", source, *targets, "--generator", str(files / "G.pt"), "--directions", str(files / "A.pt"),
            "--out", str(out), "--encoder", str(files / "reg.pt"), "--align", "none", *extra]


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


def test_reenact_round_trip(files, tmp_path):
    out = tmp_path / "out"
    assert main(_args(files, out)) == 0
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in range(4)]
    assert (out / "sheet.png").is_file() and (out / "source.png").is_file()
    record = json.loads((out / "reenact.json").read_text())
    assert len(record["targets"]) == 4 and record["targets"][0].endswith("000.png")

    # frame 1 is G(w_s + A (p_t - p_s)) computed by hand
    G, d = load_generator(files / "G.pt"), load_directions(files / "A.pt")
    enc = load_encoder(files / "reg.pt")
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)), truncation_psi=0.7)
        target = torch.from_numpy(_png(files / "frames" / "001.png")).permute(2, 0, 1)[None].float() / 127.5 - 1

        def q(images):
            c = enc(images)
            return d.rescale(pose_vector(c.rotation, c.expression, 6))
        delta = q(target) - q(G.synthesis(ws, noise_mode="const"))
        expected = G.synthesis(d(ws, delta), noise_mode="const")[0]
    save_image(expected, tmp_path / "expected.png")
    assert np.abs(_png(out / "frame_00001.png") - _png(tmp_path / "expected.png")).max() <= 1
    assert np.abs(_png(out / "frame_00001.png") - _png(out / "frame_00002.png")).max() > 0

    # relative driving: the first frame is the source itself (zero change)
    rel = tmp_path / "rel"
    assert main(_args(files, rel, "--relative")) == 0
    assert np.abs(_png(rel / "frame_00000.png") - _png(rel / "source.png")).max() <= 1


def test_reenact_latent_and_photo_sources(files, tmp_path):
    G = load_generator(files / "G.pt")
    ws = G.mapping(torch.randn(1, G.z_dim)).detach()
    torch.save({"ws": ws[0]}, tmp_path / "src_latent.pt")
    assert main(_args(files, tmp_path / "a", source=str(tmp_path / "src_latent.pt"),
                      targets=[str(files / "single.png")])) == 0
    assert main(_args(files, tmp_path / "b", "--invert-preset", "image2stylegan", "--invert-steps", "0.001",
                      source=str(files / "single.png"), targets=[str(files / "frames")])) == 0
    assert len(list((tmp_path / "b").glob("frame_*.png"))) == 3


def test_reenact_drives_with_a_video(files, tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 32))
    for f in sorted((files / "frames").glob("*.png")):
        writer.write(cv2.imread(str(f)))
    writer.release()
    out = tmp_path / "out"
    assert main(_args(files, out, targets=[str(clip), str(files / "single.png")])) == 0
    record = json.loads((out / "reenact.json").read_text())
    assert record["targets"][:3] == [f"{clip}#{i}" for i in range(3)] and len(record["targets"]) == 4
    assert len(list(out.glob("frame_*.png"))) == 4


def test_reenact_errors(files, tmp_path, capsys):
    def fails(argv, text):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    args = _args(files, tmp_path / "o")
    args[args.index("--generator") + 1] = str(bad)
    fails(args, "bad.pt")
    args = _args(files, tmp_path / "o")
    args[args.index("--directions") + 1] = str(files / "A_other.pt")
    fails(args, "learned for a generator")
    (tmp_path / "file").write_text("x")
    fails(_args(files, tmp_path / "file"), "not a folder")
    fails(_args(files, tmp_path / "o", targets=[str(tmp_path / "clip.mp4")]), "does not exist")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    fails(_args(files, tmp_path / "o", targets=[str(tmp_path / "broken.mp4")]), "no frames could be read")
    fails(_args(files, tmp_path / "o", targets=[str(tmp_path / "missing.png")]), "does not exist")
    fails(_args(files, tmp_path / "o", source="seed:x"), "seed:N")


def test_regressor_encoder_is_differentiable(files):
    enc = load_encoder(files / "reg.pt")
    images = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    c = enc(images)
    assert c.identity.shape == (2, 40) and c.expression.shape == (2, 30) and c.rotation.shape == (2, 3)
    assert c.landmarks.shape == (2, 68, 2) and torch.isfinite(c.landmarks).all()
    (c.rotation.sum() + c.expression.sum()).backward()
    assert images.grad.abs().sum() > 0


def test_train_command_and_export(files, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "directions", f"generator={files / 'G.pt'}", f"encoder={files / 'reg.pt'}",
                 f"run_dir={run}", "steps=2", "batch_size=2", "stats_samples=4", "num_layers=4",
                 "expression_dims=6", "lambda_id=0", "lambda_per=0", "progress=false", "tensorboard=false",
                 "sample_every=2", "num_samples=2", "device=cpu"]) == 0
    from gan_bridge.directions.method import export
    d = load_directions(export(run, tmp_path / "A.pt"))
    assert d.num_layers == 4 and d.A.abs().sum() > 0
    assert "generator" in torch.load(tmp_path / "A.pt", weights_only=True)["recipe"]
    args = _args(files, tmp_path / "out", targets=[str(files / "single.png")])
    args[args.index("--directions") + 1] = str(tmp_path / "A.pt")
    assert main(args) == 0 and (tmp_path / "out" / "frame_00000.png").is_file()


def test_world_pairs_and_real_latents_feed_training(files, tmp_path):
    from gan_bridge.directions.data import main as data_main
    assert data_main(["pairs", str(tmp_path / "pairs.pt"), "--generator", str(files / "G.pt"), "--sets", "2",
                      "--views", "2", "--steps", "0.001"]) == 0
    pairs = torch.load(tmp_path / "pairs.pt", weights_only=True)
    assert pairs["ws"].shape == (2, 2, 8, 32) and pairs["images"].shape == (2, 2, 3, 32, 32)
    assert pairs["rotation"].shape == (2, 2, 3) and pairs["landmarks"].shape == (2, 2, 68, 2)
    assert not torch.equal(pairs["rotation"][:, 0], pairs["rotation"][:, 1])  # views differ in pose
    assert data_main(["pairs", str(tmp_path / "src.pt"), "--generator", str(files / "G.pt"), "--sets", "2",
                      "--sources-only", "--steps", "0.001"]) == 0
    src = torch.load(tmp_path / "src.pt", weights_only=True)
    assert src["ws"].shape == (2, 1, 8, 32) and torch.equal(src["images"], pairs["images"])
    assert data_main(["generated", str(tmp_path / "gen.pt"), "--generator", str(files / "G.pt"), "--sets", "3"]) == 0
    gen = torch.load(tmp_path / "gen.pt", weights_only=True)
    assert gen["ws"].shape == (3, 1, 8, 32) and gen["images"].shape == (3, 2, 3, 32, 32)
    assert gen["rotation"][:, 0].isnan().all() and gen["rotation"][:, 1].isfinite().all()
    assert data_main(["real", str(tmp_path / "real.pt"), str(files / "frames"), "--align", "none",
                      "--generator", str(files / "G.pt"), "--steps", "0.001"]) == 0
    assert torch.load(tmp_path / "real.pt", weights_only=True)["ws"].shape == (3, 8, 32)
    assert data_main(["real", str(tmp_path / "real_world.pt"), "--world", "2", "--generator", str(files / "G.pt"),
                      "--steps", "0.001"]) == 0
    assert torch.load(tmp_path / "real_world.pt", weights_only=True)["ws"].shape == (2, 8, 32)
    for extra in (f"paired={tmp_path / 'pairs.pt'}", f"real_latents={tmp_path / 'real.pt'}"):
        assert main(["train", "directions", f"generator={files / 'G.pt'}", f"encoder={files / 'reg.pt'}",
                     f"run_dir={tmp_path / extra[:4]}", "steps=1", "batch_size=2", "stats_samples=4",
                     "num_layers=4", "expression_dims=6", "lambda_id=0", "lambda_per=0", "progress=false",
                     "tensorboard=false", "device=cpu", extra]) == 0


@pytest.mark.parametrize("name", ["network-snapshot-000000.pkl", "rosinality_000000.pt"])
def test_user_checkpoints_train_and_reenact(files, tmp_path, name):
    """NVIDIA and rosinality checkpoints (the StyleGAN2 fixtures) go through the same two commands."""
    from pathlib import Path

    from gan_bridge.directions.method import export
    ckpt = Path(__file__).resolve().parent / "data" / "stylegan2" / name
    run = tmp_path / "run"
    assert main(["train", "directions", f"generator={ckpt}", f"encoder={files / 'reg.pt'}", f"run_dir={run}",
                 "steps=1", "batch_size=2", "stats_samples=4", "lambda_id=0", "lambda_per=0", "expression_dims=6",
                 "progress=false", "tensorboard=false", "device=cpu"]) == 0
    export(run, tmp_path / "A.pt")
    args = _args(files, tmp_path / "out", targets=[str(files / "single.png")])
    args[args.index("--generator") + 1] = str(ckpt)
    args[args.index("--directions") + 1] = str(tmp_path / "A.pt")
    assert main(args) == 0 and (tmp_path / "out" / "frame_00000.png").is_file()
