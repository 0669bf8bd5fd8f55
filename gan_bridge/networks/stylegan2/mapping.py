"""StyleGAN2 mapping network: z -> W (or W+), with the tracked average ``w_avg`` used for truncation."""
import torch
from torch import nn

from .layers import FullyConnected


def normalize_2nd_moment(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each row of ``z (B, D)`` to unit root-mean-square."""
    return z * (z.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """Pixel-normalised z through ``num_layers`` equalized FC layers (leaky ReLU 0.2, gain sqrt 2).

    ``w_avg (w_dim,)`` is an EMA of the produced w (``beta = w_avg_beta``), updated in training mode.
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnected(features[i], features[i + 1], activation="lrelu",
                                                   lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = True) -> torch.Tensor:
        """z: (B, z_dim) -> ws: (B, num_ws, w_dim).

        Truncation moves w towards ``w_avg``: ``w_avg + psi * (w - w_avg)``, on the first
        ``truncation_cutoff`` entries of W+ (None = all).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        if z.shape[0] == 0:
            raise ValueError("mapping got an empty batch of z; pass at least one latent")
        x = normalize_2nd_moment(z.float())
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            truncated = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
            ws = torch.cat([truncated, ws[:, cutoff:]], dim=1)
        return ws
