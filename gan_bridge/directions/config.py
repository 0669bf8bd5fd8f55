"""Configuration of the latent-directions method (Bounareli et al., Sec. 3)."""
from __future__ import annotations

from dataclasses import dataclass

from gan_bridge.face.shape import CENTRAL_BOX, REFRAMES
from gan_bridge.train import TrainConfig


@dataclass
class DirectionsConfig(TrainConfig):
    """Learn A in ``w_r = w_s + A (p_t - p_s)`` for a frozen StyleGAN2 (fields beyond ``TrainConfig``).

    generator: StyleGAN2 checkpoint (anything ``load_generator`` reads). encoder: image -> 3DMM regressor
    weights ('' = morph3d's bundled ones); encoder_box: the (left, top, side) first-pass face box in image
    fractions; encoder_reframe: times the face is read again from a crop framed by the previous pass's
    landmarks (the defaults, StyleRig's, halve the pose error of a whole-image first pass on world images).
    shape_model: the morphable model ('open' or a model file).
    num_layers: L, the W+ layers A shifts (paper 8; capped at the generator's num_ws).
    expression_dims: m_e, leading expression coefficients in p (paper 12; 0 = all of the model's).
    shift_scale: a, every element of p is rescaled to [-a, a] (authors' code: 6).
    stats_samples: generated images whose p fix the rescaling range (paper 10K); stats_batch: per pass.
    single_attribute_prob: fraction of samples whose Delta p changes one attribute only (paper 0.5).
    truncation_psi: of the sampled source/target latents.
    lambda_*: loss weights (Eqs. 3-4, 7). The paper gives none; these are the authors' code defaults
    (shape, eye, mouth 1; identity, perceptual 10; pixel 1, paired only).
    shape_unit_mm: L_sh, L_eye and L_mouth measure shapes in units of this many mm (the authors' DECA
    shapes have their own scale; 10 mm keeps the three shape terms and 10 x L_id / L_per comparable).
    identity_net: 'dlib' (dlib's face-recognition ResNet, aligned by the encoder's landmarks).
    real_latents: optional .pt of inverted W+ codes {'ws': (N, num_ws, w_dim)} for mixed training
    (Sec. 3.2); real_fraction: share of each batch drawn from them (paper 0.5).
    paired: optional .pt {'ws': (N, V, num_ws, w_dim), 'images': (N, V, 3, R, R) uint8} of same-identity
    sets (Sec. 3.3); when set, every step uses pairs of one set and adds L_pix, and L_id / L_per compare
    with the target image.
    init_directions: optional A.pt to start from (A and its pose range), e.g. the mixed-training A that
    paired fine-tuning refines; its L and m_e override num_layers and expression_dims.
    """

    run_dir: str = "runs/directions"
    steps: int = 20000
    batch_size: int = 12
    lr: float = 1e-4
    sample_every: int = 1000
    num_samples: int = 8
    generator: str = ""
    encoder: str = ""
    encoder_box: tuple[float, float, float] = CENTRAL_BOX
    encoder_reframe: int = REFRAMES
    shape_model: str = "open"
    num_layers: int = 8
    expression_dims: int = 12
    shift_scale: float = 6.0
    stats_samples: int = 10000
    stats_batch: int = 64
    single_attribute_prob: float = 0.5
    truncation_psi: float = 1.0
    lambda_shape: float = 1.0
    lambda_eye: float = 1.0
    lambda_mouth: float = 1.0
    lambda_id: float = 10.0
    lambda_per: float = 10.0
    lambda_pix: float = 1.0
    shape_unit_mm: float = 10.0
    identity_net: str = "dlib"
    real_latents: str = ""
    real_fraction: float = 0.5
    paired: str = ""
    init_directions: str = ""

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.expression_dims < 0:
            raise ValueError(f"expression_dims must be >= 0 (0 = all), got {self.expression_dims}")
        if not self.shift_scale > 0:
            raise ValueError(f"shift_scale must be > 0, got {self.shift_scale}")
        if not self.shape_unit_mm > 0:
            raise ValueError(f"shape_unit_mm must be > 0, got {self.shape_unit_mm}")
        if self.stats_samples < 2:
            raise ValueError(f"stats_samples must be >= 2, got {self.stats_samples}")
        for name in ("single_attribute_prob", "real_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.identity_net != "dlib":
            raise ValueError(f"unknown identity_net {self.identity_net!r}; use 'dlib' (or lambda_id=0)")


__all__ = ["DirectionsConfig"]
