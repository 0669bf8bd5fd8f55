"""Every CUDA source in csrc/cuda compiles with nvcc against the installed torch headers.

The CUDA kernels cannot run without a GPU; compiling them with the flags setup.py's CUDA build
uses keeps them from silently breaking. Skipped when no nvcc is found (PATH, $CUDA_HOME/bin,
/usr/local/cuda/bin). The registration unit's CUDA part (csrc/glue/register.cpp with
MORPH3D_WITH_CUDA) is checked with the host compiler, which needs no CUDA toolkit.
"""
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "csrc" / "cuda").glob("*.cu"))


def find_nvcc():
    candidates = [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    if os.environ.get("CUDA_HOME"):
        candidates.insert(1, os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


NVCC = find_nvcc()


def nvcc_command(source: Path, obj: Path) -> list:
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        NVCC, "-c", str(source), "-o", str(obj), "-std=c++17", "-O3",
        "-DMORPH3D_WITH_CUDA", "-DTORCH_EXTENSION_NAME=_C", "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *getattr(cpp_extension, "COMMON_NVCC_FLAGS", []),
        "--compiler-options", "-fPIC",
        f"-I{REPO / 'csrc'}", *[f"-I{p}" for p in cpp_extension.include_paths()],
        f"-I{sysconfig.get_paths()['include']}",
    ]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_cuda_source_compiles(source, tmp_path):
    obj = tmp_path / (source.stem + ".o")
    result = subprocess.run(nvcc_command(source, obj), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"nvcc failed on {source.name}:\n{result.stderr[-6000:]}"
    assert obj.stat().st_size > 0


def test_cuda_registration_compiles(tmp_path):
    """register.cpp, as the CUDA build compiles it, agrees with the CUDA entry points' declarations."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [compiler, "-fsyntax-only", "-std=c++17", "-DMORPH3D_WITH_CUDA", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
           f"-I{REPO / 'csrc'}", *[f"-I{p}" for p in cpp_extension.include_paths()],
           f"-I{sysconfig.get_paths()['include']}", str(REPO / "csrc" / "glue" / "register.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"register.cpp (CUDA build) does not compile:\n{result.stderr[-6000:]}"
