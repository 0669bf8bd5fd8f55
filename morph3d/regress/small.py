"""A small CPU-friendly image -> parameter regressor (about 0.8M parameters, 64 px input).

A ResNet-style encoder (a stride-2 stem, four stages of basic residual blocks halving the resolution,
BatchNorm) down to 4 x 4, a 1 x 1 reduction and a fully connected head that keeps the spatial layout
(the face's position matters). It predicts the normalised target vector of ``targets.py``; the
``target_mean`` / ``target_std`` buffers (set from training data) turn it into targets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .targets import CROP_MARGIN


@dataclass
class SmallRegressorConfig:
    """input_size: crop side in px (a multiple of 16); widths: channels of the stem and the four stages;
    head: hidden units of the fully connected head; out_dim: the target vector's length."""

    input_size: int = 64
    widths: tuple[int, ...] = (16, 24, 48, 96, 192)
    head: int = 256
    out_dim: int = 113

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) != 5 or min(self.widths) < 1:
            raise ValueError(f"widths must be 5 positive channel counts, got {self.widths}")
        if self.input_size < 32 or self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 px, at least 32, got {self.input_size}")


class _Block(nn.Module):
    """Basic residual block: 3x3 conv (stride) - BN - ReLU - 3x3 conv - BN, plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.skip is None else self.skip(x)))


class SmallRegressor(nn.Module):
    """images: (B, 3, S, S) float sRGB in [-1, 1], S = ``config.input_size`` -> (B, out_dim) targets
    (de-normalised with ``target_mean`` / ``target_std``; ``normalised=True``: the raw outputs)."""

    def __init__(self, config: SmallRegressorConfig | None = None):
        super().__init__()
        self.config = c = config or SmallRegressorConfig()
        w = c.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        self.stages = nn.Sequential(
            _Block(w[0], w[1]),                        # S/2
            _Block(w[1], w[2], 2), _Block(w[2], w[2]),  # S/4
            _Block(w[2], w[3], 2), _Block(w[3], w[3]),  # S/8
            _Block(w[3], w[4], 2))                      # S/16
        grid = c.input_size // 16
        self.reduce = nn.Sequential(nn.Conv2d(w[4], 64, 1), nn.ReLU())
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * grid * grid, c.head), nn.ReLU(),
                                nn.Linear(c.head, c.out_dim))
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)  # start at the mean target
        self.register_buffer("target_mean", torch.zeros(c.out_dim))
        self.register_buffer("target_std", torch.ones(c.out_dim))

    def raw_outputs(self, images: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (s, s):
            raise ValueError(f"expected (B, 3, {s}, {s}) images in [-1, 1], got {tuple(images.shape)}")
        return self.fc(self.reduce(self.stages(self.stem(images))))

    def forward(self, images: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        z = self.raw_outputs(images)
        return z if normalised else z * self.target_std + self.target_mean

    def set_target_statistics(self, targets: torch.Tensor) -> None:
        """Normalise outputs by the mean and std of training targets (N, out_dim) (std floored at 1e-3)."""
        self.target_mean.copy_(targets.mean(0))
        self.target_std.copy_(targets.std(0).clamp_min(1e-3))

    def config_dict(self) -> dict:
        return {**asdict(self.config), "widths": list(self.config.widths)}


WEIGHTS_FORMAT = "morph3d.small_regressor.v1"


def save_small_regressor(net: SmallRegressor, path: str | Path, model_name: str, recipe: str = "") -> Path:
    """Write ``net`` (config, state dict, target statistics) for the model named ``model_name``, atomically."""
    from ..io import atomic_write
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    record = {"format": WEIGHTS_FORMAT, "config": net.config_dict(), "model": model_name, "crop_margin": CROP_MARGIN,
              "state_dict": state, "recipe": recipe}
    return atomic_write(Path(path), lambda tmp: torch.save(record, tmp))


def load_small_regressor(path: str | Path) -> tuple[SmallRegressor, dict]:
    """-> (the network in eval mode, the file's record without the state dict); one-line errors for
    missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"regressor weights {path} do not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is corrupt or not a regressor weights file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a morph3d small-regressor file (format {WEIGHTS_FORMAT})")
    net = SmallRegressor(SmallRegressorConfig(**record["config"]))
    try:
        net.load_state_dict(record["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the network they describe ({str(exc).splitlines()[0]})")
    meta = {k: v for k, v in record.items() if k != "state_dict"}
    return net.eval(), meta


__all__ = ["SmallRegressor", "SmallRegressorConfig", "WEIGHTS_FORMAT", "load_small_regressor",
           "save_small_regressor"]
