"""Configuration of DiscoFaceGAN training (the StyleGAN2 run's fields plus the VAEs and the loss weights)."""
from __future__ import annotations

from dataclasses import dataclass

from gan_bridge.methods.stylegan2 import StyleGAN2TrainConfig
from gan_bridge.train.config import check_nonnegative


@dataclass
class DiscoConfig(StyleGAN2TrainConfig):
    """DiscoFaceGAN on the synthetic world (fields beyond :class:`StyleGAN2TrainConfig`; style mixing is off).

    shape_model: the morphable model of lambda and of the renderer; encoder: image -> 3DMM regressor weights
    ('' = morph3d's bundled), read with ``encoder_box`` / ``encoder_reframe`` (as StyleRig's).
    param_table: a ``morph3d fit-table`` file whose rows train the lambda VAEs ('' = the world's exact
    parameters of ``vae_count`` training samples). vae_steps / vae_lr / vae_batch / vae_hidden: their
    training; noise_dim: epsilon's size (paper 32). render_distance_mm / render_focal: the aligned camera of
    the rendered counterpart x_hat (focal in image sides; lambda has no translation, suppl. footnote 2).
    imitative / contrastive: switch the loss groups (Table 1 ablations: adversarial only, + imitative,
    + contrastive); contrastive_start: G steps before the contrastive losses join (paper: after 15M of 20M
    images). w_*: the suppl.'s weights (identity 3, landmark 500 then 100 with contrastive, SH 10,
    colour 20, expression 10, illumination structure 10, illumination identity 20); tau: Eq. 2's margin;
    omega: Eq. 7's landmark weight.
    """

    run_dir: str = "runs/disco"
    style_mixing_prob: float = 0.0
    shape_model: str = "open"
    encoder: str = ""
    encoder_box: tuple[float, float, float] = (0.15, 0.15, 0.7)
    encoder_reframe: int = 1
    param_table: str = ""
    vae_count: int = 5000
    vae_steps: int = 2000
    vae_lr: float = 1e-3
    vae_batch: int = 256
    vae_hidden: tuple[int, ...] = (512, 256, 128)
    noise_dim: int = 32
    render_distance_mm: float = 600.0
    render_focal: float = 1.8
    imitative: bool = True
    contrastive: bool = True
    contrastive_start: int = 0
    w_id: float = 3.0
    w_lm: float = 500.0
    w_lm_contrastive: float = 100.0
    w_sh: float = 10.0
    w_cl: float = 20.0
    w_ex: float = 10.0
    w_il1: float = 10.0
    w_il2: float = 20.0
    tau: float = 0.3
    omega: float = 1000.0

    def __post_init__(self):
        super().__post_init__()
        if self.noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {self.noise_dim}")
        if self.contrastive and not self.imitative:
            raise ValueError("contrastive losses need the imitative ones (the paper's ablations are adv, "
                             "adv + imitative, adv + imitative + contrastive); set imitative=true")
        check_nonnegative(self, ("w_id", "w_lm", "w_lm_contrastive", "w_sh", "w_cl", "w_ex", "w_il1", "w_il2",
                                 "omega", "tau"))
        if self.vae_count < 2 or self.vae_steps < 0:
            raise ValueError(f"vae_count must be >= 2 and vae_steps >= 0, got {self.vae_count}, {self.vae_steps}")


__all__ = ["DiscoConfig"]
