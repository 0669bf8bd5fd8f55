"""dlib's 128-d face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in torch, and CSIM.

The weights are read at load from the ``.dat`` file of the ``face-recognition-models`` package
(:mod:`gan_bridge.networks.dlib_weights`); nothing is downloaded or cached. Parameters have
``requires_grad`` False, gradients flow to the input chips, so the module works as a training loss.

Architecture (dlib's ``dnn_face_recognition_ex.cpp``), for a 150 x 150 aligned chip:
``con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2``, then residual stages of
(32 x 3), (64 x 4), (128 x 3), (256 x 3), (256 x 1) blocks, the first block of every stage but the
first downsampling, then a global average pool and a 128 x 256 linear map without bias.
dlib's own conventions that matter for bit-level agreement:
- a stride-2 convolution or pool has no padding (stride-1 3x3 convolutions pad by 1);
- a downsampling block adds ``avg_pool 2x2/2`` of its input to its branch; when the channel counts or
  sizes differ the smaller tensor is zero-extended (at the end of each axis), so 3 x 3 + 4 x 4 -> 4 x 4;
- the input layer maps RGB in [0, 255] to ``(x - mean_rgb) / 256``, ``mean_rgb = (122.782, 117.001,
  104.298)``; ``affine`` layers are frozen batch norms ``gamma * x + beta``.

The descriptor is not normalised (its norm is about 1.5 on real faces); dlib's verification rule
is ``|a - b| < 0.6``. CSIM, as used by face-reenactment papers, is the cosine between two descriptors.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .dlib_weights import DlibLayer, read_dlib_net

CHIP_SIZE = 150
EMBEDDING_DIM = 128
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# (channels, blocks, downsample first block) for each stage, from the input up
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def dlib_architecture() -> List[str]:
    """The network's layer kinds from the input up, as :func:`read_dlib_net` walks them."""
    kinds = ["input", "con", "affine", "relu", "max_pool"]
    for _, blocks, down in STAGES:
        for b in range(blocks):
            branch = ["tag", "con", "affine", "relu", "con", "affine"]
            kinds += branch + (["tag", "skip", "avg_pool"] if down and b == 0 else []) + ["add_prev", "relu"]
    return kinds + ["avg_pool", "fc"]


def default_model_path() -> Path:
    """The ``.dat`` file shipped in the ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib's face-recognition network comes from the face-recognition-models "
                                "package, which is not installed: run `pip install -e .[detect]`")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE


def add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: a + b for (B, C, H, W) tensors, the smaller zero-extended on each axis."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(x):
        return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))
    return grow(a) + grow(b)


class Affine(nn.Module):
    """Frozen batch norm: ``gamma * x + beta`` per channel. x: (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    """``relu(shortcut(x) + affine(conv(relu(affine(conv(x))))))``; a downsampling block uses stride 2
    (no padding) in its first convolution and ``avg_pool 2x2/2`` as its shortcut."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.bn1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = Affine(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_zero_extended(shortcut, y))


class IdentityNet(nn.Module):
    """chips: (B, 3, 150, 150) float RGB in [0, 255], aligned as dlib's ``get_face_chip_details``
    (see :mod:`gan_bridge.face.align`) -> descriptors (B, 128)."""

    def __init__(self, mean_rgb=(122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn1 = Affine(32)
        blocks, c_in = [], 32
        for c_out, n, down in STAGES:
            for b in range(n):
                blocks.append(ResBlock(c_in, c_out, down and b == 0))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, EMBEDDING_DIM, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"chips must be (B, 3, {CHIP_SIZE}, {CHIP_SIZE}) RGB in [0, 255], "
                             f"got {tuple(chips.shape)}; align faces with gan_bridge.face.align first")
        x = (chips - self.mean_rgb) / 256.0
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dlib(cls, path: Optional[str | Path] = None) -> "IdentityNet":
        """The network with dlib's trained weights (from ``path`` or face-recognition-models), in eval
        mode with frozen parameters. A fresh module each call; the file is parsed once per process."""
        net = cls()
        net.load_dlib_layers(_read_layers(str(path or default_model_path())))
        return net.eval().requires_grad_(False)

    def load_dlib_layers(self, layers: List[DlibLayer]) -> None:
        """Copy parsed dlib layers (from the input up) into this module, checking every shape."""
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        affines = [m for m in self.modules() if isinstance(m, Affine)]
        got = {k: [l for l in layers if l.kind == k] for k in ("input", "con", "affine", "fc")}
        if (len(got["con"]), len(got["affine"]), len(got["fc"])) != (len(convs), len(affines), 1):
            raise ValueError("the dlib file does not hold the face-recognition ResNet's layers")
        self.mean_rgb.copy_(torch.tensor(got["input"][0].config["mean_rgb"]).view(1, 3, 1, 1))
        with torch.no_grad():
            for conv, layer in zip(convs, got["con"]):
                stride, pad = layer.config["stride"], layer.config["padding"]
                if (stride, pad) != (conv.stride, conv.padding):
                    raise ValueError(f"dlib conv stride/padding {stride}/{pad} differ from {conv}")
                conv.weight.copy_(torch.from_numpy(layer.params["weight"]).view_as(conv.weight))
                conv.bias.copy_(torch.from_numpy(layer.params["bias"]))
            for aff, layer in zip(affines, got["affine"]):
                aff.gamma.copy_(torch.from_numpy(layer.params["gamma"]))
                aff.beta.copy_(torch.from_numpy(layer.params["beta"]))
            fc = got["fc"][0]
            if fc.config["has_bias"] or fc.params["weight"].shape != (self.fc.in_features, EMBEDDING_DIM):
                raise ValueError("the dlib file's last layer is not a 256 -> 128 map without bias")
            self.fc.weight.copy_(torch.from_numpy(fc.params["weight"]).t())


@lru_cache(maxsize=2)
def _read_layers(path: str) -> List[DlibLayer]:
    return read_dlib_net(path, dlib_architecture())


def csim(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CSIM: cosine similarity of identity descriptors. a, b: (B, D) (broadcastable) -> (B,) in [-1, 1]."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"descriptors differ in size: {a.shape[-1]} vs {b.shape[-1]}")
    return F.cosine_similarity(a, b, dim=-1, eps=eps)
