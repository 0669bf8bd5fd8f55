"""Configuration of StyleRig training (RigNet per control mode) and of PIE's embedding energy."""
from __future__ import annotations

from dataclasses import dataclass

from gan_bridge.face.rig import check_mode
from gan_bridge.face.shape import CENTRAL_BOX, REFRAMES
from gan_bridge.train import TrainConfig
from gan_bridge.train.config import check_nonnegative


@dataclass
class StyleRigConfig(TrainConfig):
    """Train one RigNet for a frozen StyleGAN2 (fields beyond ``TrainConfig``).

    mode: the control mode, 'pose', 'expression' or 'lighting' (one RigNet per mode).
    generator: StyleGAN2 checkpoint; encoder: image -> 3DMM regressor weights ('' = morph3d's bundled);
    encoder_box / encoder_reframe: as :func:`gan_bridge.face.shape.load_encoder` (first-pass box, then
    this many passes framed by the previous landmarks; on held-out world photos at 128 px the bundled
    regressor's mean pose error is 24.9 deg after the whole-image pass and 19.9 after one reframe, but
    14.5 / 8.3 / 5.8 / 4.5 deg after 0 / 1 / 2 / 3 reframes from the central 70 % box; 3.3 deg from
    crops framed by the true landmarks); shape_model: its model.
    latent_dim: l_k per W+ layer (StyleRig 32); hidden: the decoder's hidden width (0 = w_dim).
    truncation_psi: of the sampled codes v and w.
    photometric_weight / landmark_weight: of l(I', theta) (:func:`gan_bridge.face.rig.render_loss`; PIE's
    lambda_ph 0.001 and lambda_lm 0.2).
    lambda_rec: StyleRig's reconstruction loss ||rignet(v, theta_v^tau) - v||^2 (mean over W+ entries);
    lambda_edit / lambda_consist: the editing and consistency losses of w_hat = rignet(v, theta_w^tau);
    lambda_cycle: the cycle back, rignet(w_hat, theta_v^tau), must show v's face again (both the
    editing and the consistency loss of the return edit).
    """

    run_dir: str = "runs/stylerig"
    steps: int = 20000
    batch_size: int = 8
    lr: float = 1e-4
    sample_every: int = 1000
    num_samples: int = 4
    mode: str = "pose"
    generator: str = ""
    encoder: str = ""
    encoder_box: tuple[float, float, float] = CENTRAL_BOX
    encoder_reframe: int = REFRAMES
    shape_model: str = "open"
    latent_dim: int = 32
    hidden: int = 0
    truncation_psi: float = 0.7
    photometric_weight: float = 1e-3
    landmark_weight: float = 0.2
    lambda_rec: float = 1.0
    lambda_edit: float = 1.0
    lambda_consist: float = 1.0
    lambda_cycle: float = 1.0

    def __post_init__(self):
        check_mode(self.mode)
        if self.latent_dim < 1 or self.hidden < 0:
            raise ValueError(f"latent_dim must be >= 1 and hidden >= 0, got {self.latent_dim}, {self.hidden}")
        check_nonnegative(self, ("photometric_weight", "landmark_weight", "lambda_rec", "lambda_edit",
                                 "lambda_consist", "lambda_cycle"))


@dataclass
class PIEConfig:
    """PIE's energy (Sec. 4, weights of Sec. 5) on top of an inversion schedule.

    preset / steps_scale: the schedule of :mod:`gan_bridge.inversion` ('pie': 2000 W + 1000 W+ steps,
    ADADELTA from 50 / 10, x0.1 every 2000 steps) with its step counts scaled by ``steps_scale``.
    hierarchical: False replaces the W then W+ stages by one W+ stage of all their steps at the W+ step
    size (the paper's "direct W+" ablation).
    modification: use E_id, E_edit and E_inv; recognition: use E_recog (the paper's ablations).
    lambda_*: Eqs. 8, 11, 13, 15 (lambda_id 1, lambda_e 10, lambda_inv 10, lambda_rw 0.1, lambda_rv 0.1);
    photometric / landmark: l's weights (lambda_ph 0.001, lambda_lm 0.2).
    samples: codes v drawn per iteration for the expectations; truncation_psi: their truncation.
    """

    preset: str = "pie"
    steps_scale: float = 1.0
    hierarchical: bool = True
    modification: bool = True
    recognition: bool = True
    lambda_id: float = 1.0
    lambda_e: float = 10.0
    lambda_inv: float = 10.0
    lambda_rw: float = 0.1
    lambda_rv: float = 0.1
    photometric: float = 1e-3
    landmark: float = 0.2
    samples: int = 1
    truncation_psi: float = 0.7
    seed: int = 0

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not self.steps_scale > 0:
            raise ValueError(f"steps_scale must be > 0, got {self.steps_scale}")


__all__ = ["PIEConfig", "StyleRigConfig"]
