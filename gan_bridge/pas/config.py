"""Configuration of PAS face pose editing (PAS + inpainting, trained on the synthetic world's pose pairs)."""
from __future__ import annotations

from dataclasses import dataclass

from gan_bridge.train import TrainConfig
from gan_bridge.train.config import check_choice, check_nonnegative

VARIANTS = ("full", "pas_only", "inpaint_only")
IDENTITY_NETS = ("dlib", "none")
GEN_OUTPUTS = ("residual", "direct")
PAS_STARTS = ("source", "aligned")


@dataclass
class PasConfig(TrainConfig):
    """Fields beyond ``TrainConfig`` (``steps`` counts pre-training and joint training together).

    image_size: square images (paper 128; multiple of 2**levels). batch_size: same-identity (I, J) pairs per step.
    world_model / world_identities / vary / world_seed: the synthetic world the pairs come from: views of one
    identity that differ in the ``vary`` factors (default the head pose only).
    pretrain_steps: the first steps train only the inpainting generator and discriminator, restoring occluded faces
    (the paper's 20k CelebA iterations); the rest train PAS and inpainting jointly (paper 110k).
    variant: 'full' (PAS then inpainting), 'pas_only' (no inpainting network: ablation b), 'inpaint_only' (the
    inpainting network on I_tf directly, no PAS: ablation c).
    pas_*: embedder width / downsamplings / self-attention levels, feature_dim (paper 512), sampler hidden widths.
    pas_start: the map PAS's sampler starts from and predicts changes of: 'source' (the inverse of the
    preprocessing's similarity, so an untrained PAS returns I in its own frame; not in the paper) or 'aligned' (the
    identity map on I_tf, an untrained PAS returns I_tf).
    gen_* / disc_*: U-Net generator and projection discriminator widths and depths; max_channels caps all widths.
    gen_output: 'residual' (the generator refines its input and starts as the identity; not in the paper) or 'direct'
    (the paper: it writes the image from its last layer).
    identity_net: 'dlib' (dlib's ResNet on aligned chips, frozen, as the paper's LightCNN) or 'none' (no identity
    conditioning or L_id); identity_hidden: width of the fine-tuned FC layer on the identity features.
    lr, betas: Adam for all networks (paper 1e-4, (0.9, 0.999)).
    recon_weight: weight of L1(I_recon, I) in Eq. 1 (paper 0.1); inpaint_recon_weight: lambda of Eq. 9.
    lambda_*: weights of L_pix, L_seg, L_per, L_tv (Eq. 8, all 1 in the paper), L_id, L_adv (Eq. 13, all 1).
    lambda_tv_map: TV of the sampling map's displacement from the identity map (not in the paper, whose L_tv acts on
    the sampled images; 0 = off). It keeps the map smooth where the image has no texture to steer it.
    occlusion_min / occlusion_max / occlusion_holes: the S_occ rectangles (fractions of the side, count).
    """

    run_dir: str = "runs/pas"
    steps: int = 130000
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    sample_every: int = 1000
    checkpoint_every: int = 2000
    num_samples: int = 5
    image_size: int = 128
    world_model: str = "open"
    world_identities: int = 100_000
    world_seed: int = 0
    vary: tuple[str, ...] = ("pose",)
    pretrain_steps: int = 20000
    variant: str = "full"
    pas_base: int = 32
    pas_levels: int = 4
    pas_attention: tuple[int, ...] = (2, 3)
    feature_dim: int = 512
    sampler_hidden: tuple[int, ...] = (512,)
    pas_start: str = "source"
    gen_base: int = 32
    gen_levels: int = 4
    disc_base: int = 32
    disc_levels: int = 4
    gen_output: str = "residual"
    max_channels: int = 256
    identity_net: str = "dlib"
    identity_hidden: int = 128
    recon_weight: float = 0.1
    inpaint_recon_weight: float = 0.1
    lambda_pix: float = 1.0
    lambda_seg: float = 1.0
    lambda_per: float = 1.0
    lambda_tv: float = 1.0
    lambda_tv_map: float = 0.0
    lambda_id: float = 1.0
    lambda_adv: float = 1.0
    occlusion_min: float = 0.15
    occlusion_max: float = 0.4
    occlusion_holes: int = 1

    def __post_init__(self):
        check_choice(self, "variant", VARIANTS)
        check_choice(self, "identity_net", IDENTITY_NETS)
        check_choice(self, "gen_output", GEN_OUTPUTS)
        check_choice(self, "pas_start", PAS_STARTS)
        levels = max(self.pas_levels, self.gen_levels, self.disc_levels)
        if self.image_size < 16 or self.image_size % 2 ** levels:
            raise ValueError(f"image_size {self.image_size} must be >= 16 and a multiple of 2**{levels}")
        if not 0 <= self.pretrain_steps <= self.steps:
            raise ValueError(f"pretrain_steps must be in 0..steps ({self.steps}), got {self.pretrain_steps}")
        if not 0 < self.occlusion_min <= self.occlusion_max <= 1:
            raise ValueError("occlusion sizes must satisfy 0 < occlusion_min <= occlusion_max <= 1")
        check_nonnegative(self, ("recon_weight", "inpaint_recon_weight", "lambda_pix", "lambda_seg", "lambda_per",
                                 "lambda_tv", "lambda_tv_map", "lambda_id", "lambda_adv"))


__all__ = ["GEN_OUTPUTS", "IDENTITY_NETS", "PAS_STARTS", "PasConfig", "VARIANTS"]
