"""Configuration of LI-Net training (the three modules T, R, G on the synthetic world's identity grid)."""
from __future__ import annotations

from dataclasses import dataclass

from gan_bridge.train import TrainConfig
from gan_bridge.train.config import check_choice, check_nonnegative

LINET_STAGES = ("transformer", "rotation", "generator")
STAGES = LINET_STAGES + ("pix2pix",)
IDENTITY_NETS = ("dlib", "none")
GENERATOR_INPUTS = ("truth", "rotation")


@dataclass
class LinetConfig(TrainConfig):
    """Fields beyond ``TrainConfig``.

    stages: which modules this run trains (each with its own losses and optimisers, as the paper trains them
    separately; 'pix2pix' trains the baseline on the same examples); every module is built and checkpointed, so one
    run folder holds the whole pipeline.
    image_size: square images (multiple of 2**levels). batch_size: (source, driving) examples per step.
    identities / expressions / poses: the training grid of the synthetic world: every identity is rendered under
    the same ``expressions`` expression draws and ``poses`` head-pose draws (RaFD / Multi-PIE style); held-out
    identities come from the world's disjoint held-out split. world_seed / world_model: the world.
    landmark_sigma: Gaussian radius (pixels) of the dots of landmark images.
    base / levels / max_channels: widths and downsamplings of every encoder; res_blocks: residual blocks of R and G;
    style_dim: E_e's expression code (AdaIN input).
    generator_input: what G enhances in training: 'truth' (the true rotated face I_R) or 'rotation' (R's output,
    detached); at inference G always takes R's output.
    init_from: a 'gan-bridge train linet' run folder or ckpt-*.pt whose networks start this run (train the stages
    one after another, each run holding the whole pipeline); '' starts from scratch.
    identity_net: 'dlib' (dlib's ResNet descriptor as the identity perceptual network psi of Eq. 9) or 'none'.
    lr, betas: Adam for all networks.
    lambda_l1 / lambda_rec / lambda_cycle / lambda_id / lambda_d: Eq. 1; lambda_diff / lambda_gan / lambda_pose: Eq. 5;
    lambda_pix / lambda_per / lambda_adv: Eq. 8; lambda_per_id: weight of the identity network's term inside Eq. 9.
    lambda_p2p_l1 / lambda_p2p_gan: the pix2pix baseline's L1 and conditional GAN weights (pix2pix: 100, 1).
    """

    run_dir: str = "runs/linet"
    steps: int = 20000
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    sample_every: int = 1000
    checkpoint_every: int = 2000
    num_samples: int = 4
    stages: tuple[str, ...] = LINET_STAGES
    image_size: int = 64
    identities: int = 200
    expressions: int = 6
    poses: int = 5
    world_seed: int = 0
    world_model: str = "open"
    landmark_sigma: float = 1.0
    base: int = 32
    levels: int = 3
    max_channels: int = 256
    res_blocks: int = 4
    style_dim: int = 64
    generator_input: str = "truth"
    init_from: str = ""
    identity_net: str = "dlib"
    lambda_l1: float = 10.0
    lambda_rec: float = 10.0
    lambda_cycle: float = 10.0
    lambda_id: float = 1.0
    lambda_d: float = 0.1
    lambda_diff: float = 10.0
    lambda_gan: float = 1.0
    lambda_pose: float = 1.0
    lambda_pix: float = 10.0
    lambda_per: float = 1.0
    lambda_per_id: float = 1.0
    lambda_adv: float = 1.0
    lambda_p2p_l1: float = 100.0
    lambda_p2p_gan: float = 1.0

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ValueError(f"unknown or no stages {list(self.stages)}; choose from {', '.join(STAGES)}")
        check_choice(self, "identity_net", IDENTITY_NETS)
        check_choice(self, "generator_input", GENERATOR_INPUTS)
        if self.image_size < 16 or self.image_size % 2 ** self.levels:
            raise ValueError(f"image_size {self.image_size} must be >= 16 and a multiple of 2**levels "
                             f"({2 ** self.levels})")
        if self.identities < 2 or self.expressions < 2 or self.poses < 2:
            raise ValueError("the grid needs at least 2 identities, 2 expressions and 2 poses")
        check_nonnegative(self, ("lambda_l1", "lambda_rec", "lambda_cycle", "lambda_id", "lambda_d", "lambda_diff",
                                 "lambda_gan", "lambda_pose", "lambda_pix", "lambda_per", "lambda_per_id", "lambda_adv",
                                 "lambda_p2p_l1", "lambda_p2p_gan"))


__all__ = ["GENERATOR_INPUTS", "IDENTITY_NETS", "LINET_STAGES", "LinetConfig", "STAGES"]
