"""An installed morph3d (a wheel, not the source tree) finds its data files.

Fast checks: no package module reaches files through the source tree (``Path(__file__).parents[N]``
out of its top-level package), every data file inside the packages and in ``assets/`` is covered by
setup.py's package data, and the assets resolve through the ``morph3d.assets`` package. The slow test
builds the wheel (reusing the compiled objects in ``build/``), installs it into a fresh virtual
environment and runs it from another folder.
"""
import ast
import fnmatch
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("morph3d", "gan_bridge")


def package_modules():
    for top in PACKAGES:
        yield from sorted((REPO / top).rglob("*.py"))


def parents_index(node):
    """k when node is ``<expr involving __file__>.parents[k]`` with a literal k, else None."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents" and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)):
        return None
    uses_file = any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node.value))
    return node.slice.value if uses_file else None


def test_no_module_reaches_outside_its_package():
    offenders = []
    for path in package_modules():
        rel = path.relative_to(REPO)
        depth = len(rel.parts) - 1  # parents[depth - 1] is the top-level package folder
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
        for node in ast.walk(tree):
            k = parents_index(node)
            if k is not None and k >= depth:
                offenders.append(f"{rel}:{node.lineno}: Path(__file__).parents[{k}]")
    assert not offenders, ("these modules find files through the source tree, which an installed wheel "
                           "does not have; use morph3d.assets.path(name) (or package data):\n"
                           + "\n".join(offenders))


def setup_config():
    """setup.py's packages, package_dir and package_data, read without building anything."""
    import setuptools  # noqa: F401  (makes distutils setuptools' own copy)
    from distutils.core import run_setup

    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        dist = run_setup("setup.py", stop_after="config")
    finally:
        os.chdir(cwd)
    return dist.packages, dist.package_dir or {}, dist.package_data or {}


def shipped(rel_file: str, patterns) -> bool:
    return rel_file.endswith(".py") or any(fnmatch.fnmatch(rel_file, p) for p in patterns)


def test_package_data_ships_every_data_file():
    packages, package_dir, package_data = setup_config()
    assert "morph3d.assets" in packages and package_dir.get("morph3d.assets") == "assets"
    missing = []
    for package in packages:
        folder = REPO / package_dir.get(package, package.replace(".", "/"))
        patterns = package_data.get(package, []) + package_data.get("", [])
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix not in (".pyc", ".so") and not shipped(f.name, patterns):
                missing.append(str(f.relative_to(REPO)))
    assert not missing, ("these files sit in a package folder but setup.py's package_data does not ship "
                         "them, so an installed wheel would lack them:\n" + "\n".join(missing))


def test_assets_resolve_through_the_package():
    from morph3d import assets
    from morph3d.fitting import detect
    from morph3d.model import loaders

    for name in ("open_face_model.npz", "mediapipe_ibug68.json", "NOTICE"):
        assert assets.path(name).is_file(), name
    assert loaders.open_model_path() == assets.path("open_face_model.npz")
    assert detect.MEDIAPIPE_MAP == assets.path("mediapipe_ibug68.json")
    assert not assets.path("no_such_file.npz").is_file()


def includes(path: Path) -> list:
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(encoding="utf-8"), re.M)


def test_extension_sources_keep_torch_out_of_the_kernels():
    """The build stays fast: kernels compile without torch headers, one unit registers the ops,
    nothing includes torch/extension.h (pybind11 and all of libtorch's API)."""
    csrc = REPO / "csrc"
    kernels = sorted((csrc / "kernels").glob("*.[ch]*"))
    assert kernels
    for path in kernels:
        torch_headers = [h for h in includes(path) if h.split("/")[0] in ("torch", "ATen", "c10", "pybind11", "glue")]
        assert not torch_headers, f"{path.relative_to(REPO)} includes {torch_headers}: keep kernels plain C++"
    sources = sorted(csrc.rglob("*.cpp")) + sorted(csrc.rglob("*.cu")) + sorted(csrc.rglob("*.h"))
    registering = [p.relative_to(REPO).as_posix() for p in sources if "torch/library.h" in includes(p)]
    assert registering == ["csrc/glue/register.cpp"]
    assert not [p for p in sources if "torch/extension.h" in includes(p)]
    assert not [p for p in sources if "TORCH_LIBRARY" in p.read_text(encoding="utf-8")
                and p.name != "register.cpp"]


# Run by the slow test inside the installed environment, from an empty folder.
INSTALLED_CHECK = textwrap.dedent("""
    import pathlib, sys
    import torch
    import morph3d
    from morph3d import assets
    from morph3d.fitting import detect
    from morph3d.model import loaders
    from morph3d.render import rasterize
    root = pathlib.Path(morph3d.__file__).parent
    assert root.is_relative_to(sys.prefix), root  # the venv's copy, not the source tree
    assert loaders.open_model_path().is_relative_to(root)
    ids, weights = detect.mediapipe_mapping()
    assert ids.shape == (68, 3)
    model = loaders.load_canonical("open")
    pos = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]]])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]], dtype=torch.int32), (8, 8))
    assert rast[..., 3].max() == 1
    print("installed ok", root)
""")


@pytest.mark.slow
def test_wheel_installs_and_runs_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(wheels),
         str(REPO)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-4000:]
    (wheel,) = wheels.glob("morph3d-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-4000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -I: ignore PYTHONPATH and the user site, so the source tree (and its editable install) stay out.
    run = subprocess.run([str(py), "-I", "-c", INSTALLED_CHECK], cwd=elsewhere, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "installed ok" in run.stdout
