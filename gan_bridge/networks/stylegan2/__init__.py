"""StyleGAN2 (config F) in pure PyTorch: generator, discriminator, training losses, checkpoint loaders.

Public API::

    Generator(resolution, z_dim=512, w_dim=512, channel_base=32768, channel_max=512, n_mlp=8, ...)
        .mapping(z, truncation_psi=1, truncation_cutoff=None) -> ws (B, num_ws, w_dim)
        .synthesis(ws, noise_mode="random"|"const"|"none", noise=None, generator=None) -> (B, 3, R, R)
        .forward(z, truncation_psi=1, noise_mode="random", mixing_prob=0, generator=None)
    Discriminator(resolution, ...)(img) -> logits (B, 1)
    StyleGAN2Losses, ema_beta and the loss functions (``losses``)
    load_generator(path), load_discriminator(path), save_networks(path, G, D) (``checkpoints``)
"""
from .checkpoints import CheckpointError, load_discriminator, load_frozen_generator, load_generator, save_networks
from .discriminator import Discriminator
from .generator import Generator
from .losses import (StyleGAN2LossConfig, StyleGAN2Losses, d_logistic_loss, ema_beta,
                     g_nonsaturating_loss, lazy_ratio, path_length_penalty, r1_penalty)
from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork, channels_per_resolution

__all__ = [
    "CheckpointError", "Discriminator", "Generator", "MappingNetwork", "StyleGAN2LossConfig", "StyleGAN2Losses",
    "SynthesisNetwork", "channels_per_resolution", "d_logistic_loss", "ema_beta",
    "g_nonsaturating_loss", "lazy_ratio", "load_discriminator", "load_frozen_generator", "load_generator",
    "path_length_penalty", "r1_penalty", "save_networks",
]
