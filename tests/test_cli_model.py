"""`morph3d info` and `morph3d convert`, through the real entry point."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_path, tiny_canonical
from morph3d.cli import main
from morph3d.model import canonical


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "morph3d", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_info_json_on_real_sfm():
    path = shared_path("models", "sfm", "sfm_shape_3448.bin")
    r = run_cli("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["num_vertices"] == 3448 and info["identity_dim"] == 63 and info["format"] == "sfm"
    assert info["expression_dim"] == 6 and info["landmarks"] == 50 and info["albedo_dim"] == 0


def test_info_and_convert_canonical(tmp_path, capsys):
    src = canonical.save(tiny_canonical(), tmp_path / "tiny.npz")
    assert main(["info", str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("name", "num_vertices", "num_triangles", "identity_dim", "expression_dim", "albedo_dim",
                "landmarks", "format"):
        assert key in info
    assert (info["num_vertices"], info["num_triangles"], info["identity_dim"], info["landmarks"]) == (81, 128, 3, 68)
    dst = tmp_path / "copy.npz"
    assert main(["convert", str(src), str(dst)]) == 0
    np.testing.assert_array_equal(canonical.load(dst)["identity_basis"], canonical.load(src)["identity_basis"])


def test_convert_real_sfm(tmp_path):
    path = shared_path("models", "sfm", "sfm_shape_3448.bin")
    dst = tmp_path / "sfm.npz"
    assert main(["convert", str(path), str(dst)]) == 0
    m = canonical.load(dst)
    assert m["vertices_mean"].shape == (3448, 3) and m["identity_basis"].shape[2] == 63


@pytest.mark.parametrize("args, message", [
    (["info", "/no/such/model.mat"], "no such model file"),
    (["convert", "/no/such/model.mat", "out.npz"], "no such model file"),
])
def test_errors_exit_non_zero_with_message(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_corrupt_and_wrong_outputs(tmp_path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00garbage" * 10)
    assert main(["info", str(bad)]) == 2
    assert "bad.bin" in capsys.readouterr().err
    src = canonical.save(tiny_canonical(), tmp_path / "tiny.npz")
    assert main(["convert", str(src), str(tmp_path / "out.obj")]) == 2
    assert ".npz" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "missing_dir" / "out.npz")]) == 2
    assert not (tmp_path / "out.obj").exists()
