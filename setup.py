"""Build morph3d and its C++ extension ``morph3d._C``.

C++ sources in ``csrc/*.cpp`` are always compiled (with OpenMP). CUDA sources in
``csrc/cuda/*.cu`` are compiled as well when the installed torch is a CUDA build
and a CUDA toolkit is found; set ``MORPH3D_FORCE_CUDA=0`` to skip them.
Ops register themselves with ``TORCH_LIBRARY_FRAGMENT(morph3d, ...)``, so each
kernel file is self-contained and reached as ``torch.ops.morph3d.<op>``.
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    force = os.environ.get("MORPH3D_FORCE_CUDA")
    if force is not None:
        return force == "1"
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-DNDEBUG"]
    if _want_cuda():
        cu = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        return CUDAExtension(
            "morph3d._C",
            cpp + cu,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": cxx + ["-DMORPH3D_WITH_CUDA"], "nvcc": ["-O3", "-DMORPH3D_WITH_CUDA"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "morph3d._C",
        cpp,
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )


setup(
    packages=find_packages(include=["morph3d", "morph3d.*", "gan_bridge", "gan_bridge.*"]) + ["morph3d.assets"],
    # The top-level assets/ folder ships inside the package as morph3d.assets.
    package_dir={"morph3d.assets": "assets"},
    package_data={"morph3d.assets": ["*.npz", "*.json", "NOTICE*", "*.md"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
