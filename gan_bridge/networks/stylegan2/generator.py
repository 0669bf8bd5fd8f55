"""StyleGAN2 generator (config F): mapping network + skip-architecture synthesis network."""
import torch
from torch import nn

from .mapping import MappingNetwork
from .synthesis import SynthesisNetwork


class Generator(nn.Module):
    """z (B, z_dim) -> W+ (B, num_ws, w_dim) -> image (B, img_channels, resolution, resolution) in ~[-1, 1].

    resolution: power of two >= 4 (StyleGAN2 uses 32..1024). Channels per resolution are
    ``min(channel_base // res, channel_max)`` unless ``channels`` ({res: C}) is given.
    n_mlp: mapping layers; lr_multiplier: their learning-rate multiplier; w_avg_beta: decay of the
    tracked ``mapping.w_avg``; conv_clamp: clamp of conv outputs (None = off, NVIDIA's ada configs use 256).
    """

    def __init__(self, resolution: int, z_dim: int = 512, w_dim: int = 512, channel_base: int = 32768,
                 channel_max: int = 512, n_mlp: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995, img_channels: int = 3, conv_clamp: float | None = None,
                 channels: dict | None = None):
        super().__init__()
        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channels=channels,
                                          channel_base=channel_base, channel_max=channel_max,
                                          conv_clamp=conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, num_layers=n_mlp, lr_multiplier=lr_multiplier,
                                      w_avg_beta=w_avg_beta)
        self.config = dict(resolution=resolution, z_dim=z_dim, w_dim=w_dim, n_mlp=n_mlp,
                           lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta, img_channels=img_channels,
                           conv_clamp=conv_clamp, channels=dict(self.synthesis.channels))

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked average w, (w_dim,)."""
        return self.mapping.w_avg

    def mix_styles(self, ws: torch.Tensor, mixing_prob: float, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
        """Style mixing regularisation: with probability ``mixing_prob`` the whole batch switches, from
        a random index in [1, num_ws), to the W of fresh z's. ws: (B, num_ws, w_dim) -> same shape."""
        if mixing_prob <= 0:
            return ws
        dev = ws.device
        if torch.rand([], device=dev, generator=generator) >= mixing_prob:
            return ws
        cutoff = int(torch.randint(1, self.num_ws, [], device=dev, generator=generator))
        z2 = torch.randn(ws.shape[0], self.z_dim, device=dev, generator=generator)
        ws2 = self.mapping(z2, update_w_avg=False)
        return torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "random", mixing_prob: float = 0.0, generator: torch.Generator | None = None,
                return_ws: bool = False):
        """z: (B, z_dim) -> image (B, img_channels, R, R) (and ws (B, num_ws, w_dim) if return_ws).

        generator seeds the mixing and the random noise (deterministic runs).
        """
        if not torch.isfinite(z).all():
            raise ValueError("generator got non-finite z (NaN or inf); sample z from a normal distribution")
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        ws = self.mix_styles(ws, mixing_prob, generator=generator)
        img = self.synthesis(ws, noise_mode=noise_mode, generator=generator)
        return (img, ws) if return_ws else img
