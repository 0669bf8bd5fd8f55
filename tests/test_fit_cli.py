"""``morph3d fit``: outputs, skipping, interruption and every error path (on a tiny synthetic model)."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import morph3d.cli as cli
from conftest import REPO, tiny_canonical
from morph3d.model import MorphableModel, canonical, load_model
from morph3d.render import linear_to_srgb, render_face


@pytest.fixture(autouse=True)
def _fit_command(monkeypatch):
    if "fit" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ("fit",))


@pytest.fixture
def scene(tmp_path):
    """A tiny model file, a rendered photo of it and the photo's landmarks (.npy)."""
    data = tiny_canonical()
    model_path = canonical.save(data, tmp_path / "tiny.npz")
    model = MorphableModel(data)
    p = model.default_params(1, image_size=(80, 96))
    p.rotation[0] = torch.tensor([0.2, -0.1, 0.05])
    with torch.no_grad():
        out = render_face(model, p, outputs=("image", "landmarks"))
    photos, marks = tmp_path / "photos", tmp_path / "marks"
    photos.mkdir()
    marks.mkdir()
    rgb = (linear_to_srgb(out.image[0]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(rgb).save(photos / "face.png")
    np.save(marks / "face.npy", out.landmarks_2d[0].numpy().astype(np.float64))
    return {"model": str(model_path), "photos": photos, "marks": marks, "out": tmp_path / "out",
            "landmarks": out.landmarks_2d[0].numpy(), "pose": np.degrees(p.rotation[0].numpy())}


def fit(*args):
    """``morph3d fit ARGS --threads 1`` (one thread: much faster on a busy machine)."""
    return cli.main(["fit", *map(str, args), "--threads", "1"])


def test_fit_writes_outputs_then_skips(scene, capsys):
    s = scene
    assert fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"]) == 0
    rec = json.loads((s["out"] / "face.json").read_text())
    for key in ("landmarks68", "pose", "params", "time_s", "model", "landmarks_source", "landmarks_input"):
        assert key in rec
    assert rec["complete"] is True and rec["landmarks_source"].startswith("file:")
    # the model fits its own rendered landmarks: small residual, pose recovered
    fitted = np.array(rec["landmarks68"], dtype=float)
    assert np.abs(fitted - s["landmarks"]).max() < 1.0
    np.testing.assert_allclose(rec["pose"], s["pose"], atol=1.5)
    assert (s["out"] / "face.obj").stat().st_size > 0
    assert Image.open(s["out"] / "face_overlay.png").size == (96, 80)
    assert not list(s["out"].glob("*.partial*"))
    before = (s["out"] / "face.json").stat().st_mtime_ns
    assert fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert (s["out"] / "face.json").stat().st_mtime_ns == before


def test_incomplete_json_is_redone(scene):
    s = scene
    s["out"].mkdir()
    (s["out"] / "face.json").write_text('{"landmarks68": []')  # a broken earlier run
    assert fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"]) == 0
    assert json.loads((s["out"] / "face.json").read_text())["complete"] is True


def test_batch_goes_on_and_reports_failures(scene, capsys):
    s = scene
    (s["photos"] / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    np.save(s["marks"] / "broken.npy", s["landmarks"])
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(s["photos"] / "count.png")
    np.save(s["marks"] / "count.npy", np.ones((67, 2)))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(s["photos"] / "nan.png")
    bad = s["landmarks"].copy()
    bad[3, 0] = np.nan
    np.save(s["marks"] / "nan.npy", bad)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(s["photos"] / "nomarks.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(s["photos"] / "garbled.png")
    (s["marks"] / "garbled.pts").write_text("version: 1\n{\n1 2\n")
    code = fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"])
    err = capsys.readouterr().err
    assert code == 1
    assert (s["out"] / "face.json").exists()  # the good image was still fitted
    assert "broken.jpg: not an image file PIL can read" in err
    assert "count.npy: 67 landmarks" in err
    assert "are NaN" in err
    assert "no landmark file nomarks" in err
    assert "garbled.pts" in err
    for stem in ("broken", "count", "nan", "nomarks", "garbled"):
        assert not (s["out"] / f"{stem}.json").exists()


def test_no_face_found(tmp_path, scene, capsys):
    pytest.importorskip("dlib")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(blank)
    assert fit(blank, "--out", tmp_path / "o", "--model", scene["model"]) == 1
    assert "no face found" in capsys.readouterr().err


def test_landmarks_file_for_one_image(scene, tmp_path):
    s = scene
    pts = s["landmarks"] + 1.0
    lines = "\n".join(f"{x} {y}" for x, y in pts)
    (tmp_path / "face.pts").write_text(f"version: 1\nn_points: 68\n{{\n{lines}\n}}\n")
    assert fit(s["photos"] / "face.png", "--out", s["out"], "--model", s["model"],
               "--landmarks", tmp_path / "face.pts") == 0
    rec = json.loads((s["out"] / "face.json").read_text())
    np.testing.assert_allclose(rec["landmarks_input"], s["landmarks"], atol=1e-4)  # 1-based read as 0-based


def test_interrupted_image_leaves_nothing(scene, monkeypatch):
    import morph3d.fitting.batch as batch

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "draw_overlay", interrupt)
    s = scene
    assert fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"]) == 130
    assert list(s["out"].iterdir()) == []


@pytest.mark.parametrize("case,message", [
    ("missing", "no such image or folder"),
    ("empty", "no images found"),
    ("model", "cannot load model"),
    ("landmarks_missing", "no such landmark file or folder"),
    ("landmarks_file_for_dir", "one landmark file"),
    ("out_is_input", "--out is the input folder"),
])
def test_argument_errors_exit_2(scene, tmp_path, capsys, case, message):
    s = scene
    args = [s["photos"], "--out", tmp_path / "o", "--model", s["model"], "--landmarks", s["marks"]]
    if case == "missing":
        args[0] = tmp_path / "nothing"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args[0] = tmp_path / "empty"
    elif case == "model":
        (tmp_path / "bad.npz").write_bytes(b"not a model")
        args[4] = tmp_path / "bad.npz"
    elif case == "landmarks_missing":
        args[6] = tmp_path / "nowhere"
    elif case == "out_is_input":
        args[2] = s["photos"]
    else:
        args[6] = s["marks"] / "face.npy"
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(s["photos"] / "second.png")
    assert fit(*args) == 2
    assert message in capsys.readouterr().err


def test_missing_detector_package_exit_2(scene, tmp_path, capsys, monkeypatch):
    import sys

    from morph3d.fitting import detect
    detect._dlib_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    assert fit(scene["photos"], "--out", tmp_path / "o", "--model", scene["model"]) == 2
    assert "pip install -e .[detect]" in capsys.readouterr().err
    detect._dlib_models.cache_clear()


def test_all_faces_on_a_group_photo(tmp_path):
    pytest.importorskip("dlib")
    from conftest import shared_path
    photo = shared_path("data", "faces", "images", "dlib_pascal", "2008_002506.jpg")  # three people
    model = shared_path("models", "sfm", "sfm_shape_3448.bin")
    out = tmp_path / "o"
    assert fit(photo, "--out", out, "--model", model, "--all-faces") == 0
    rec = json.loads((out / "2008_002506.json").read_text())
    assert len(rec["faces"]) == 3 and rec["landmarks68"] == rec["faces"][0]["landmarks68"]
    assert [f["mesh"] for f in rec["faces"]] == ["2008_002506.obj", "2008_002506_face1.obj", "2008_002506_face2.obj"]
    assert all((out / f["mesh"]).is_file() for f in rec["faces"])
    areas = [(f["face_box"][2] - f["face_box"][0]) * (f["face_box"][3] - f["face_box"][1]) for f in rec["faces"]]
    assert areas == sorted(areas, reverse=True)


# ---- what a new user hit (issue 8) --------------------------------------------------------------

def _photo_of(model_path, rotation, size=(80, 96)):
    """(photo uint8 (H, W, 3), landmarks (68, 2)) of the tiny model at ``rotation`` [yaw, pitch, roll] rad."""
    model = MorphableModel(canonical.load(model_path))
    p = model.default_params(1, image_size=size)
    p.rotation[0] = torch.tensor(rotation)
    with torch.no_grad():
        out = render_face(model, p, outputs=("image", "landmarks"))
    rgb = (linear_to_srgb(out.image[0]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return rgb, out.landmarks_2d[0].numpy().astype(np.float64)


def test_a_different_photo_under_the_same_name_is_fitted_again(scene, capsys):
    s = scene
    args = (s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"])
    assert fit(*args) == 0
    first = json.loads((s["out"] / "face.json").read_text())
    assert len(first["input"]["image_sha256"]) == 64 and len(first["input"]["landmarks_sha256"]) == 64
    rgb, marks = _photo_of(s["model"], [-0.3, 0.15, -0.1])  # another photo, same file name
    Image.fromarray(rgb).save(s["photos"] / "face.png")
    np.save(s["marks"] / "face.npy", marks)
    capsys.readouterr()
    assert fit(*args) == 0
    assert "fitted 1, skipped 0" in capsys.readouterr().out
    second = json.loads((s["out"] / "face.json").read_text())
    assert second["input"]["image_sha256"] != first["input"]["image_sha256"]
    np.testing.assert_allclose(second["pose"], np.degrees([-0.3, 0.15, -0.1]), atol=1.5)
    # only the landmark file changes: fitted again too
    np.save(s["marks"] / "face.npy", marks + 0.5)
    assert fit(*args) == 0
    assert "fitted 1, skipped 0" in capsys.readouterr().out
    # nothing changes: skipped
    assert fit(*args) == 0
    assert "fitted 0, skipped 1" in capsys.readouterr().out


MIRROR = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
          + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
          + [64, 63, 62, 61, 60, 67, 66, 65])  # iBUG-68 left/right partners


def test_mirrored_landmarks_fail_instead_of_a_head_facing_away(tmp_path, capsys):
    model = load_model("open")
    p = model.default_params(1, image_size=(120, 100))
    p.rotation[0] = torch.tensor([0.3, 0.1, 0.0])
    with torch.no_grad():
        out = render_face(model, p, outputs=("image", "landmarks"))
    Image.fromarray((linear_to_srgb(out.image[0]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        tmp_path / "swapped.png")
    np.save(tmp_path / "swapped.npy", out.landmarks_2d[0].numpy()[MIRROR].astype(np.float64))
    assert fit(tmp_path / "swapped.png", "--out", tmp_path / "o", "--landmarks", tmp_path / "swapped.npy") == 1
    err = capsys.readouterr().err
    assert "faces away from the camera" in err and "mirrored" in err
    assert not (tmp_path / "o" / "swapped.json").exists() and not (tmp_path / "o" / "swapped.obj").exists()


def test_pose_problems():
    from morph3d.fitting.batch import pose_problems
    rad = np.radians
    failures, warnings = pose_problems(torch.tensor(rad([[20.0, 10.0, 5.0], [29.0, 176.0, -177.0],
                                                         [0.0, 0.0, 170.0]]), dtype=torch.float32))
    assert len(failures) == 1 and failures[0].startswith("face 1: the fitted head faces away")
    assert "pitch 176" in failures[0] and "roll -177" in failures[0]
    assert len(warnings) == 1 and warnings[0].startswith("face 2: the fitted head is upside down")
    assert pose_problems(torch.tensor(rad([[80.0, -30.0, 20.0]]), dtype=torch.float32)) == ([], [])


def test_failure_lines_name_the_path_once(scene, capsys):
    s = scene
    (s["photos"] / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    np.save(s["marks"] / "broken.npy", s["landmarks"])
    assert fit(s["photos"], "--out", s["out"], "--model", s["model"], "--landmarks", s["marks"]) == 1
    line = next(x for x in capsys.readouterr().err.splitlines() if "FAILED" in x)
    assert line.count("broken.jpg") == 1, line


def test_threads_are_left_alone_unless_asked(scene, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    s = scene
    args = ["fit", str(s["photos"]), "--model", s["model"], "--landmarks", str(s["marks"]), "--out"]
    assert cli.main(args + [str(s["out"])]) == 0
    assert calls == []
    wanted = torch.get_num_threads() + 1
    assert cli.main(args + [str(s["out"] / "again"), "--threads", str(wanted)]) == 0
    assert calls == [wanted, torch.get_num_threads()]  # set for the fit, then restored


def test_sigterm_mid_image_leaves_no_partial_outputs(scene):
    """SIGTERM while an image is half written (mesh done, overlay not): exit 143 and nothing left over."""
    s = scene
    script = (
        "import sys, time\n"
        "import morph3d.fitting.batch as batch\n"
        "def slow_overlay(*a, **k):\n"
        "    print('overlay', flush=True)\n"
        "    time.sleep(60)\n"
        "batch.draw_overlay = slow_overlay\n"
        "from morph3d.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-c", script, "fit", str(s["photos"]), "--out", str(s["out"]), "--model", s["model"],
           "--landmarks", str(s["marks"]), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "overlay", proc.stderr.read()
        assert list(s["out"].glob("*.obj")) or list(s["out"].glob("*partial*"))  # the mesh was written
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert list(s["out"].iterdir()) == []


def test_all_faces_skips_the_astronauts_mission_patch(tmp_path):
    pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    assert fit(photo, "--out", tmp_path / "o", "--all-faces") == 0
    rec = json.loads((tmp_path / "o" / "astronaut.json").read_text())
    assert len(rec["faces"]) == 1  # the patch (HOG score ~0.12) is not a face
    assert rec["detector_score"] == rec["faces"][0]["detector_score"] > 1.0
