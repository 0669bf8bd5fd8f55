"""A renderer module: :func:`render_face` with its settings fixed, for networks and training loops."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..model.params import FaceParams
from .backends import BACKENDS
from .renderer import DEFAULT_OUTPUTS, OUTPUTS, RenderOutput, render_face


@dataclass(frozen=True)
class RenderSettings:
    """How :class:`FaceRenderer` renders.

    image_size: (height, width) px to render at, or None for each camera's own size; cameras of
        another size are rescaled to it (:meth:`~morph3d.model.Camera.resized`, same aspect ratio for
        perspective cameras).
    outputs: any of :data:`~morph3d.render.OUTPUTS` (``"image", "mask", "depth", "normals", "albedo",
        "landmarks"``).
    backend: rasterizer backend (None: the default for the tensors' device; see ``backends.py``).
    antialias: antialias image and mask silhouettes (their gradients w.r.t. geometry need it).
    background: constant linear RGB behind the face (3 floats), or None for black.
    near, far: clip planes, mm in front of the camera (None: from the posed mesh).
    """

    image_size: tuple[int, int] | None = None
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    backend: str | None = None
    antialias: bool = True
    background: tuple[float, float, float] | None = None
    near: float | None = None
    far: float | None = None

    def __post_init__(self):
        outputs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown or not outputs:
            raise ValueError(f"render outputs must be a non-empty selection of {list(OUTPUTS)}, got {list(outputs)}")
        object.__setattr__(self, "outputs", outputs)
        if self.image_size is not None:
            h, w = (int(s) for s in self.image_size)
            if h <= 0 or w <= 0:
                raise ValueError(f"image_size must be positive (height, width), got {self.image_size}")
            object.__setattr__(self, "image_size", (h, w))
        if self.background is not None and len(self.background) != 3:
            raise ValueError(f"background must be 3 linear RGB values, got {self.background}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"unknown rasterization backend {self.backend!r}; choose one of {BACKENDS} or None")


class FaceRenderer(nn.Module):
    """``FaceRenderer(model, settings)(params, background=None, texture=None) -> RenderOutput``.

    params: :class:`~morph3d.model.FaceParams` of B faces; background: optional (B, 3, H, W) or (3, H, W)
    linear RGB (overrides ``settings.background``); texture: optional (B, 3, Ht, Wt) albedo map (see
    :func:`render_face`). Differentiable w.r.t. every parameter, like :func:`render_face`.

    The model is shared, not owned: ``.to()`` moves it with the renderer, but its buffers stay out of
    the renderer's ``state_dict`` (a network holding a renderer does not checkpoint the 3DMM).
    """

    def __init__(self, model, settings: RenderSettings | None = None):
        super().__init__()
        object.__setattr__(self, "model", model)  # not a registered submodule: see the class docstring
        self.settings = settings or RenderSettings()

    def _apply(self, fn, *args, **kwargs):
        self.model._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def camera_params(self, params: FaceParams) -> FaceParams:
        """``params`` with the camera rescaled to ``settings.image_size`` (unchanged when None or equal)."""
        size = self.settings.image_size
        if size is None or tuple(params.camera.image_size) == size:
            return params
        return replace(params, camera=params.camera.resized(size))

    def forward(self, params: FaceParams, background: torch.Tensor | None = None,
                texture: torch.Tensor | None = None) -> RenderOutput:
        if not isinstance(params, FaceParams):
            raise TypeError(f"FaceRenderer renders FaceParams, got {type(params).__name__}")
        s = self.settings
        params = self.camera_params(params)
        if background is None and s.background is not None:
            h, w = params.camera.image_size
            ref = params.lighting
            background = torch.tensor(s.background, device=ref.device, dtype=ref.dtype)[:, None, None].expand(3, h, w)
        return render_face(self.model, params, outputs=s.outputs, background=background, backend=s.backend,
                           antialias=s.antialias, near=s.near, far=s.far, texture=texture)

    def extra_repr(self) -> str:
        return f"model={getattr(self.model, 'name', '?')!r}, settings={self.settings}"


__all__ = ["FaceRenderer", "RenderSettings"]
