"""RigNet (StyleRig, Tewari et al. 2020): v_hat = rignet(v, theta^tau) for one control mode.

Per W+ layer k (StyleRig Sec. 4): a linear encoder compresses the layer's code v_k (w_dim) to l_k
(``latent_dim``, paper 32); a decoder, a two-layer perceptron with ELU, maps [l_k, p] to an offset d_k,
and ``v_hat_k = v_k + d_k``. p is theta^tau transformed before the network (:func:`transform_params`).
Layers do not share weights. The decoders' last layers start at zero, so an untrained RigNet is the
identity map.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gan_bridge.face.rig import MODES, check_mode

FORMAT = "gan_bridge.stylerig.rignet.v1"


def param_dim(mode: str, tau_dim: int) -> int:
    """Size of :func:`transform_params`' output for a tau block of ``tau_dim`` numbers."""
    return {"pose": 2 * tau_dim, "expression": tau_dim, "lighting": tau_dim}[check_mode(mode)]


def transform_params(mode: str, theta: torch.Tensor) -> torch.Tensor:
    """theta^tau (B, P) -> the network's input p (B, param_dim).

    StyleRig feeds transformed parameters (its supplement, not in our copy of the papers); ours:
    pose: each Euler angle a -> (sin a, cos a - 1), continuous and 0 for a frontal face; expression: the
    coefficients as they are (morph3d's are in units of one standard deviation or blendshape weight);
    lighting: per colour channel the eight higher SH coefficients divided by the channel's constant one
    (the light's shape, independent of its brightness), and the log of the constant term relative to
    unit radiance sqrt(4 pi).
    """
    check_mode(mode)
    if theta.ndim != 2:
        raise ValueError(f"theta^tau must be (B, P), got {tuple(theta.shape)}")
    if mode == "pose":
        return torch.cat([torch.sin(theta), torch.cos(theta) - 1], 1)
    if mode == "expression":
        return theta
    if theta.shape[1] != 27:
        raise ValueError(f"lighting needs 27 SH coefficients (3 channels x 9), got {theta.shape[1]}")
    sh = theta.view(-1, 3, 9)
    dc = sh[..., :1]
    safe = torch.where(dc.abs() < 1e-3, torch.full_like(dc, 1e-3), dc)
    rel = sh[..., 1:] / safe
    level = torch.log(dc.clamp_min(1e-3) / math.sqrt(4 * math.pi))
    return torch.cat([level, rel], -1).flatten(1)


class PerLayerLinear(nn.Module):
    """``num_layers`` independent linear maps: x (B, L, in) -> (B, L, out)."""

    def __init__(self, num_layers: int, d_in: int, d_out: int, zero: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_layers, d_in, d_out) if zero
                                   else torch.randn(num_layers, d_in, d_out) / math.sqrt(d_in))
        self.bias = nn.Parameter(torch.zeros(num_layers, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bli,lio->blo", x, self.weight) + self.bias


class RigNet(nn.Module):
    """rignet(v, theta^tau) for control ``mode``.

    num_ws, w_dim: the generator's W+ shape; tau_dim: size of theta^tau (3 pose, Ke expression, 27 lighting);
    latent_dim: l_k per layer (paper 32); hidden: the decoder's hidden width (paper: w_dim).
    """

    def __init__(self, mode: str, num_ws: int, w_dim: int, tau_dim: int, latent_dim: int = 32,
                 hidden: int | None = None):
        super().__init__()
        self.mode = check_mode(mode)
        if min(num_ws, w_dim, tau_dim, latent_dim) < 1:
            raise ValueError("RigNet sizes (num_ws, w_dim, tau_dim, latent_dim) must be >= 1")
        self.num_ws, self.w_dim, self.tau_dim, self.latent_dim = num_ws, w_dim, tau_dim, latent_dim
        self.hidden = hidden or w_dim
        p = param_dim(mode, tau_dim)
        self.encoder = PerLayerLinear(num_ws, w_dim, latent_dim)
        self.decoder1 = PerLayerLinear(num_ws, latent_dim + p, self.hidden)
        self.decoder2 = PerLayerLinear(num_ws, self.hidden, w_dim, zero=True)

    def config(self) -> dict:
        return {"mode": self.mode, "num_ws": self.num_ws, "w_dim": self.w_dim, "tau_dim": self.tau_dim,
                "latent_dim": self.latent_dim, "hidden": self.hidden}

    def forward(self, v: torch.Tensor, theta_tau: torch.Tensor) -> torch.Tensor:
        """v: (B, num_ws, w_dim) W+ codes; theta_tau: (B, tau_dim) -> v_hat (B, num_ws, w_dim)."""
        if v.ndim != 3 or v.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"RigNet({self.mode}) needs W+ codes (B, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(v.shape)}")
        if theta_tau.shape != (v.shape[0], self.tau_dim):
            raise ValueError(f"RigNet({self.mode}) needs theta^tau ({v.shape[0]}, {self.tau_dim}), got "
                             f"{tuple(theta_tau.shape)}")
        p = transform_params(self.mode, theta_tau)
        l = self.encoder(v)
        h = F.elu(self.decoder1(torch.cat([l, p[:, None].expand(-1, self.num_ws, -1)], -1)))
        return v + self.decoder2(h)

    def check_generator(self, G) -> None:
        if (G.num_ws, G.w_dim) != (self.num_ws, self.w_dim):
            raise ValueError(f"the {self.mode} RigNet was trained for W+ ({self.num_ws}, {self.w_dim}) but the "
                             f"generator has ({G.num_ws}, {G.w_dim}); train a RigNet for this generator")


def save_rignet(net: RigNet, path: str | Path, recipe: str = "") -> Path:
    """Write a standalone RigNet file (config, weights, the training recipe text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "config": net.config(), "state": net.state_dict(), "recipe": recipe}, tmp)
    tmp.replace(path)
    return path


def load_rignet(path: str | Path) -> RigNet:
    """A RigNet from :func:`save_rignet`'s file or a ``stylerig`` training checkpoint (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RigNet file {path} does not exist")
    if path.name.startswith("ckpt-"):
        from gan_bridge.train import load_checkpoint
        record = load_checkpoint(path)
        config = (record.get("method") or {}).get("rignet_config")
        if config is None or "rignet" not in record.get("modules", {}):
            raise ValueError(f"{path} is a run checkpoint of another method, not of 'stylerig'")
        record = {"format": FORMAT, "config": config, "state": record["modules"]["rignet"]}
    else:
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} is corrupt or not a RigNet file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not record.get("config") \
            or record.get("state") is None:
        raise ValueError(f"{path} is not a RigNet file; write one with python -m gan_bridge.stylerig.method export")
    net = RigNet(**record["config"])
    try:
        net.load_state_dict(record["state"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not match the RigNet config ({str(exc).splitlines()[0]})") from None
    return net.eval()


def load_rignets(folder: str | Path) -> dict[str, RigNet]:
    """Every ``<mode>.pt`` RigNet of ``folder`` (pose.pt, expression.pt, lighting.pt), by mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"RigNet folder {folder} does not exist")
    nets = {m: load_rignet(folder / f"{m}.pt") for m in MODES if (folder / f"{m}.pt").is_file()}
    if not nets:
        raise FileNotFoundError(f"{folder} has no RigNets ({', '.join(m + '.pt' for m in MODES)})")
    for mode, net in nets.items():
        if net.mode != mode:
            raise ValueError(f"{folder / (mode + '.pt')} holds a {net.mode} RigNet, not {mode}")
    return nets


__all__ = ["FORMAT", "MODES", "PerLayerLinear", "RigNet", "load_rignet", "load_rignets", "param_dim",
           "save_rignet", "transform_params"]
