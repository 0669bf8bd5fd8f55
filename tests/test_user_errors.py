"""What a new user hit (issue 8): unwritable outputs, --version, absurd parameters, detection scores,
the one atomic-write helper and torch's thread count."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import morph3d
import morph3d.io as mio
from conftest import REPO, tiny_canonical
from morph3d.cli import main
from morph3d.model import canonical


# ---- the atomic-write helper -------------------------------------------------------------------

def test_atomic_write_bytes_text_and_writer(tmp_path):
    mio.atomic_write(tmp_path / "a.bin", b"\x00\x01")
    mio.atomic_write(tmp_path / "a.txt", "héllo")
    mio.atomic_write(tmp_path / "a.npz", lambda p: np.savez(p, x=np.arange(3)))  # np.savez keeps the name
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.npz", "a.txt"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_atomic_write_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    target = tmp_path / "out.json"
    target.write_text("old")

    def half_then_fail(path):
        path.write_text("half")
        raise error

    with pytest.raises(type(error)):
        mio.atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_onto_a_folder_leaves_no_partial_file(tmp_path):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(OSError):
        mio.atomic_write(tmp_path / "d.npz", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def test_no_other_copies_of_the_atomic_write_pattern():
    offenders = []
    for path in (REPO / "morph3d").rglob("*.py"):
        text = path.read_text()
        if path.name != "io.py" and (".partial" in text or "os.replace(" in text or "mkstemp" in text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"write files with morph3d.io.atomic_write instead: {offenders}"


# ---- destination checks (unit: os.access monkeypatched) ---------------------------------------

def _read_only(monkeypatch, *folders):
    real = os.access
    blocked = {os.path.realpath(f) for f in folders}
    monkeypatch.setattr(mio.os, "access", lambda p, mode: False if os.path.realpath(p) in blocked else real(p, mode))


def test_output_checks(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "file").write_text("x")
    assert mio.check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checks only
    with pytest.raises(mio.OutputPathError, match="exists and is not a folder"):
        mio.check_output_dir(tmp_path / "file")
    with pytest.raises(mio.OutputPathError, match="is a file"):
        mio.check_output_dir(tmp_path / "file" / "sub")
    with pytest.raises(mio.OutputPathError, match="is a folder; give a file name"):
        mio.check_output_file(ro, "DST")
    with pytest.raises(mio.OutputPathError, match="does not exist"):
        mio.check_output_file(tmp_path / "nowhere" / "x.npz")
    _read_only(monkeypatch, ro)
    with pytest.raises(mio.OutputPathError, match="not writable"):
        mio.check_output_dir(ro)
    with pytest.raises(mio.OutputPathError, match=r"cannot be created: .*ro is not writable"):
        mio.check_output_dir(ro / "sub")
    with pytest.raises(mio.OutputPathError, match="not writable"):
        mio.check_output_file(ro / "x.png", "--out")


def test_fit_refuses_a_read_only_out_before_loading_anything(tmp_path, monkeypatch, capsys):
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "ro").mkdir()
    _read_only(monkeypatch, tmp_path / "ro")

    def no_work(*a, **k):
        raise AssertionError("work was started before the output folder was checked")

    monkeypatch.setattr(morph3d.model, "load_model", no_work)
    for out in (tmp_path / "ro", tmp_path / "ro" / "fits"):
        assert main(["fit", str(tmp_path / "img.png"), "--out", str(out)]) == 2
        assert "not writable" in capsys.readouterr().err


def test_convert_onto_a_folder_is_one_line_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "d.npz").mkdir()
    assert main(["convert", "open", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"] and not any((tmp_path / "d.npz").iterdir())


# ---- real read-only folders, through the installed entry point ---------------------------------

_SCRIPT = """
import contextlib, io, json, sys
from morph3d.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def _run_with_read_only(folder, argvs):
    """Run ``morph3d`` argument lists in one process that sees ``folder`` read-only: as root through a
    read-only bind mount in a private mount namespace (root ignores file modes), else with mode 0555."""
    cmd = [sys.executable, "-c", _SCRIPT, json.dumps(argvs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", mount, str(folder)] + cmd
    else:
        folder.chmod(0o555)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    finally:
        folder.chmod(0o755)
    if r.returncode != 0 and "mount" in r.stderr:
        pytest.skip(f"cannot mount a read-only folder here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_unwritable_outputs_are_one_line_errors(tmp_path):
    from PIL import Image
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "fits").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    model = canonical.save(tiny_canonical(), tmp_path / "tiny.npz")
    results = _run_with_read_only(ro, [
        ["fit", str(tmp_path / "img.png"), "--out", str(ro / "new"), "--model", str(model)],
        ["fit", str(tmp_path / "img.png"), "--out", str(ro / "fits"), "--model", str(model)],
        ["convert", str(model), str(ro / "x.npz")],
        ["render", "--model", str(model), "--size", "32", "--out", str(ro / "s.png")],
    ])
    for (rc, err), what in zip(results, ("fit into a new folder", "fit into an existing folder", "convert",
                                         "render")):
        assert rc == 2, (what, err)
        assert err.count("\n") == 1 and "not writable" in err and "Traceback" not in err, (what, err)
    assert [p.name for p in ro.iterdir()] == ["fits"] and not any((ro / "fits").iterdir())


# ---- --version, absurd render parameters -------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"morph3d {morph3d.__version__}"


def test_render_refuses_coefficients_that_blow_the_face_apart(tmp_path, capsys):
    model = canonical.save(tiny_canonical(), tmp_path / "tiny.npz")
    out = tmp_path / "s.png"
    assert main(["render", "--model", str(model), "--size", "32", "--expression", "jaw_open=1e6",
                 "--out", str(out)]) == 2
    assert "move vertices" in capsys.readouterr().err and not out.exists()
    assert main(["render", "--model", str(model), "--size", "32", "--flow-to-expression", "smile_left=1e6",
                 "--out", str(out)]) == 2
    assert "move vertices" in capsys.readouterr().err and not out.exists()
    assert main(["render", "--model", str(model), "--size", "32", "--expression", "jaw_open=1",
                 "--out", str(out)]) == 0
    assert out.is_file()


# ---- detection scores --------------------------------------------------------------------------

def test_weak_hog_boxes_are_dropped_but_the_best_is_kept():
    from morph3d.fitting.detect import DLIB_MIN_SCORE, confident_boxes
    assert 0.12 < DLIB_MIN_SCORE < 0.22
    assert confident_boxes(["face", "patch"], [1.16, 0.12], DLIB_MIN_SCORE) == [("face", 1.16)]
    assert confident_boxes(["blurry"], [0.07], DLIB_MIN_SCORE) == [("blurry", 0.07)]
    assert confident_boxes([], [], DLIB_MIN_SCORE) == []


def test_astronaut_has_one_face_with_its_score():
    pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    from morph3d.fitting import detect_faces
    faces = detect_faces(skimage_data.astronaut(), "dlib", all_faces=True)
    assert len(faces) == 1 and faces[0].score > 1.0


# ---- torch's thread count -----------------------------------------------------------------------

def test_library_fits_leave_torch_threads_alone(monkeypatch):
    from morph3d.fitting import LandmarkFitter
    from morph3d.model import MorphableModel
    from morph3d.render import render_face
    model = MorphableModel(tiny_canonical())
    p = model.default_params(1, image_size=(64, 64))
    with torch.no_grad():
        lm = render_face(model, p, outputs=("landmarks",)).landmarks_2d.numpy().astype(np.float64)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    LandmarkFitter(model).fit(lm, (64, 64))
    assert calls == []


def test_a_blank_render_sees_no_landmarks():
    """jaw_open=1e6 tears the `open` mesh apart: nothing is drawn, so no landmark may count as visible."""
    from morph3d.model import load_model
    from morph3d.render import render_face
    model = load_model("open")
    p = model.default_params(1, image_size=(64, 64))
    p.expression = model.expression_from_names({"jaw_open": 1e6})
    with torch.no_grad():
        r = render_face(model, p, outputs=("mask", "landmarks"))
    assert float(r.mask.sum()) == 0.0
    assert int(r.landmark_visible.sum()) == 0
    p.expression = model.expression_from_names({"jaw_open": 0.5})
    with torch.no_grad():
        assert int(render_face(model, p, outputs=("landmarks",)).landmark_visible.sum()) > 40
