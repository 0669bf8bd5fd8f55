"""Build morph3d and its C++ extension ``morph3d._C``.

``csrc/kernels/*.cpp`` are the CPU kernels, plain C++ on raw pointers (OpenMP, no torch
headers); ``csrc/glue/*.cpp`` wrap them for torch, and ``csrc/glue/register.cpp`` registers
every op as ``torch.ops.morph3d.<op>``. CUDA sources in ``csrc/cuda/*.cu`` are compiled as
well when the installed torch is a CUDA build and a CUDA toolkit is found; set
``MORPH3D_FORCE_CUDA=0`` to skip them (``=1`` to force them).

Object files are kept in ``build/`` even for editable installs, so installing again (another
extra, a changed source) recompiles only what changed.
"""
import glob
import os
import sys
import sysconfig

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    force = os.environ.get("MORPH3D_FORCE_CUDA")
    if force is not None:
        return force == "1"
    return torch.version.cuda is not None and CUDA_HOME is not None


def _sources(pattern: str) -> list:
    return sorted(glob.glob(os.path.join("csrc", pattern)))


def _extension():
    # The longest compile (kernels/pixel_sample.cpp) goes first, so parallel jobs end together.
    cpp = _sources("kernels/*.cpp") + _sources("glue/*.cpp")
    cpp.sort(key=lambda path: not path.endswith(os.path.join("kernels", "pixel_sample.cpp")))
    # -g0: Python's own CFLAGS carry -g, and debug info for the torch templates costs about 40%
    # of the compile time; it does not change the generated code.
    cxx = ["-O3", "-std=c++17", "-fopenmp", "-DNDEBUG", "-g0"]
    if _want_cuda():
        return CUDAExtension(
            "morph3d._C",
            cpp + _sources("cuda/*.cu"),
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


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """torch's ninja build, with the objects in a fixed folder under build/.

    An editable install (``pip install -e``) builds in a new temporary folder every time, which
    made a second install (for another extra) recompile everything; ninja now finds the objects
    of the previous build and recompiles only changed sources.
    """

    def finalize_options(self):
        super().finalize_options()
        tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
        self.build_temp = os.path.join(HERE, "build", f"temp.{tag}")


setup(
    packages=find_packages(include=["morph3d", "morph3d.*", "gan_bridge", "gan_bridge.*"]) + ["morph3d.assets"],
    # The top-level assets/ folder ships inside the package as morph3d.assets.
    package_dir={"morph3d.assets": "assets"},
    package_data={"morph3d.assets": ["*.npz", "*.json", "*.pt", "NOTICE*", "*.md"],
                  "gan_bridge.assets": ["*.pt", "*.md", "world_rignets_32/*.pt"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExt},
)
