"""3DMM glue for DiscoFaceGAN: lambda <-> FaceParams, the rendered counterpart x_hat, the regressor's
estimates of generated images, identity features, the 3DMM-induced flow and the mouth mask.

lambda = [alpha = (shape, texture), beta = expression, gamma = lighting (27 SH), theta = rotation (radians)]
in the model's own units. Faces are rendered in an aligned camera (no translation: the paper aligns its
images), ``distance_mm`` in front of a camera of focal ``focal`` image sides.
"""
from __future__ import annotations

import torch

from morph3d.model import Camera, FaceParams, model_dims
from morph3d.render import LANDMARK_CLASSES, landmark_segmentation, render_flow

from .identity import identity_embedding
from .rig import RigFace
from .shape import load_encoder

MOUTH_CLASSES = ("upper_lip", "lower_lip", "inner_mouth")


def params_to_lambda(params: FaceParams) -> torch.Tensor:
    """FaceParams (B faces) -> lambda (B, Ki + Ka + Ke + 27 + 3) = [identity, texture, expression, lighting, rotation]."""
    return torch.cat([params.identity, params.texture, params.expression, params.lighting, params.rotation], 1)


def lambda_to_params(lam: torch.Tensor, model, image_size: int, distance_mm: float = 600.0,
                     focal: float = 1.8) -> FaceParams:
    """lambda (B, D) -> FaceParams in the aligned camera of ``image_size`` px (see the module docstring)."""
    dims = model_dims(model)
    sizes = [dims["identity"], dims["texture"], dims["expression"], dims["lighting"], dims["rotation"]]
    if lam.ndim != 2 or lam.shape[1] != sum(sizes):
        raise ValueError(f"lambda must be (B, {sum(sizes)}) for this model, got {tuple(lam.shape)}")
    ident, tex, expr, light, rot = lam.split(sizes, 1)
    b = lam.shape[0]
    camera = Camera.create(b, (image_size, image_size), focal=focal * image_size, device=lam.device, dtype=lam.dtype)
    translation = lam.new_tensor([0.0, 0.0, -float(distance_mm)]).expand(b, 3)
    art = lam.new_zeros(b, model.num_joints, 3) if model.num_joints else None
    return FaceParams(identity=ident, expression=expr, texture=tex, rotation=rot, translation=translation,
                      lighting=light, camera=camera, articulation=art)


def world_lambda(world, count: int) -> torch.Tensor:
    """The exact lambda (count, D) of the world's samples [0, count), without rendering them."""
    from .world import VIEW_FACTORS, _View  # the world's own parameter draw, shared instead of re-derived
    views = [_View(world.identity_of(i), i, 0, {f: ("sample", i) for f in VIEW_FACTORS}) for i in range(int(count))]
    params, _, _ = world._params(views)
    return params_to_lambda(params).float()


class DiscoFace:
    """The 3DMM side of the losses: ``render``, ``estimate``, ``identity``, ``flow``, ``mouth``.

    encoder: a :func:`gan_bridge.face.shape.load_encoder` (default: the bundled regressor, reading the
    central ``box``, reframed ``reframe`` times); identity_net: an ``IdentityNet`` (default dlib's).
    """

    def __init__(self, model: str = "open", encoder=None, identity_net=None, distance_mm: float = 600.0,
                 focal: float = 1.8, box=(0.15, 0.15, 0.7), reframe: int = 1, encoder_weights: str = ""):
        self.encoder = encoder or load_encoder(encoder_weights or None, model, box, reframe)
        self.rig = RigFace(self.encoder)
        self.model = self.rig.model
        self.identity_net = identity_net
        self.distance_mm, self.focal = float(distance_mm), float(focal)

    def to(self, device) -> "DiscoFace":
        """Move the encoder, model and renderer (and a given identity network) to ``device``."""
        self.rig.to(device)
        if self.identity_net is not None:
            self.identity_net.to(device)
        return self

    def params(self, lam: torch.Tensor, image_size: int) -> FaceParams:
        return lambda_to_params(lam, self.model, image_size, self.distance_mm, self.focal)

    def render(self, lam: torch.Tensor, image_size: int):
        """lambda (B, D) -> x_hat (B, 3, S, S) in [-1, 1], face mask (B, 1, S, S) in [0, 1], landmarks (B, 68, 2) px."""
        return self.rig.render(self.params(lam, image_size))

    def estimate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) in [-1, 1] -> landmarks p(x) (B, 68, 2) px, SH gamma(x) (B, 27), lambda (B, D)."""
        c = self.rig.estimate(images)
        return c.landmarks, c.params.lighting, params_to_lambda(c.params)

    def identity(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """f_id: (B, 3, S, S) in [-1, 1] with landmarks (B, 68, 2) px -> (B, 128) descriptors."""
        return identity_embedding(images, landmarks, self.identity_net)

    def flow(self, lam_target: torch.Tensor, lam_source: torch.Tensor, image_size: int):
        """3DMM-induced flow that warps an image of ``lam_source`` onto ``lam_target``: (B, 2, S, S) px, valid (B, 1, S, S)."""
        return render_flow(self.model, self.params(lam_target, image_size), self.params(lam_source, image_size))

    @staticmethod
    def mouth(landmarks: torch.Tensor, image_size: int) -> torch.Tensor:
        """(B, 1, S, S) float: 1 on the lips and the inner mouth drawn from landmarks (B, 68, 2) px."""
        labels, _ = landmark_segmentation(landmarks, (image_size, image_size))
        ids = torch.tensor([LANDMARK_CLASSES.index(n) for n in MOUTH_CLASSES], device=labels.device)
        return torch.isin(labels, ids).float()


__all__ = ["DiscoFace", "MOUTH_CLASSES", "lambda_to_params", "params_to_lambda", "world_lambda"]
