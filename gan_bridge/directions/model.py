"""The directions matrix A and the rescaling of the facial pose vector p (Bounareli et al., Sec. 3.1).

p = [rotation (3: yaw, pitch, roll, radians), expression (m_e leading coefficients)]. Each element of p is
mapped linearly from its range [lo, hi] over generated images to [-a, a]; A then turns a rescaled
Delta p into a shift of the first L W+ layers: ``w_r[:, :L] = w_s[:, :L] + (A Delta p).view(L, w_dim)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

FORMAT = "gan_bridge.directions.v1"


def pose_vector(rotation: torch.Tensor, expression: torch.Tensor, expression_dims: int) -> torch.Tensor:
    """rotation (B, 3), expression (B, Ke) -> p (B, 3 + m_e) with m_e = expression_dims (0: all Ke)."""
    m = expression_dims or expression.shape[1]
    if m > expression.shape[1]:
        raise ValueError(f"expression_dims={m} but the model has {expression.shape[1]} expression coefficients")
    return torch.cat([rotation, expression[:, :m]], 1)


def pose_range(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p: (N, k) pose vectors of generated images -> per-element (lo (k,), hi (k,)), the min and max."""
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"need (N >= 2, k) pose vectors to estimate their range, got {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError("pose vectors contain NaN or inf; check the encoder on generated images")
    return p.amin(0), p.amax(0)


class Directions(nn.Module):
    """A in R^{(L * w_dim) x k}, k = 3 + m_e, plus the pose range used to rescale p.

    num_ws / w_dim: the generator's W+ shape; num_layers: L <= num_ws; expression_dims: m_e;
    shift_scale: a. ``A`` (L * w_dim, k) starts at zero (the identity edit) and is the only parameter.
    """

    def __init__(self, num_ws: int, w_dim: int, num_layers: int = 8, expression_dims: int = 12,
                 shift_scale: float = 6.0):
        super().__init__()
        if not 1 <= num_layers <= num_ws:
            raise ValueError(f"num_layers must be in [1, num_ws={num_ws}], got {num_layers}")
        if expression_dims < 1:
            raise ValueError(f"expression_dims must be >= 1, got {expression_dims}")
        self.num_ws, self.w_dim, self.num_layers = num_ws, w_dim, num_layers
        self.expression_dims, self.shift_scale = expression_dims, float(shift_scale)
        self.A = nn.Parameter(torch.zeros(num_layers * w_dim, self.pose_dim))
        self.register_buffer("p_lo", -torch.ones(self.pose_dim))
        self.register_buffer("p_hi", torch.ones(self.pose_dim))

    @property
    def pose_dim(self) -> int:
        return 3 + self.expression_dims

    def set_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Set the per-element range (k,) of p; degenerate elements get a width of 1e-6."""
        self.p_lo.copy_(lo)
        self.p_hi.copy_(torch.maximum(hi, lo + 1e-6))

    def rescale(self, p: torch.Tensor) -> torch.Tensor:
        """p (B, k) in model units -> (B, k), [lo, hi] mapped to [-a, a] per element."""
        self._check_p(p)
        return (2 * (p - self.p_lo) / (self.p_hi - self.p_lo) - 1) * self.shift_scale

    def unscale(self, q: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`rescale`."""
        self._check_p(q)
        return (q / self.shift_scale + 1) / 2 * (self.p_hi - self.p_lo) + self.p_lo

    def shift(self, delta_p: torch.Tensor) -> torch.Tensor:
        """Rescaled Delta p (B, k) -> Delta w (B, L, w_dim)."""
        self._check_p(delta_p)
        return (delta_p @ self.A.T).view(-1, self.num_layers, self.w_dim)

    def forward(self, ws: torch.Tensor, delta_p: torch.Tensor) -> torch.Tensor:
        """ws (B, num_ws, w_dim), rescaled Delta p (B, k) -> reenacted ws (B, num_ws, w_dim)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        if ws.shape[0] != delta_p.shape[0]:
            raise ValueError(f"{ws.shape[0]} latents but {delta_p.shape[0]} pose changes")
        L = self.num_layers
        return torch.cat([ws[:, :L] + self.shift(delta_p), ws[:, L:]], 1)

    def _check_p(self, p: torch.Tensor) -> None:
        if p.ndim != 2 or p.shape[1] != self.pose_dim:
            raise ValueError(f"pose vectors must be (B, {self.pose_dim}) = 3 angles + {self.expression_dims} "
                             f"expression coefficients, got {tuple(p.shape)}")

    def check_generator(self, G) -> None:
        """Raise ValueError unless ``G``'s W+ shape is the one A was learned for."""
        if (G.num_ws, G.w_dim) != (self.num_ws, self.w_dim):
            raise ValueError(f"the directions were learned for a generator with W+ ({self.num_ws}, {self.w_dim}), "
                             f"this one has ({G.num_ws}, {G.w_dim}); use directions trained for it")

    def config(self) -> dict:
        return dict(num_ws=self.num_ws, w_dim=self.w_dim, num_layers=self.num_layers,
                    expression_dims=self.expression_dims, shift_scale=self.shift_scale)


def save_directions(directions: Directions, path: str | Path, recipe: str = "") -> Path:
    """Write A, the pose range and the config to ``path`` atomically."""
    from gan_bridge.face.photos import atomic_write
    state = {k: v.detach().cpu().clone() for k, v in directions.state_dict().items()}
    record = {"format": FORMAT, "config": directions.config(), "state_dict": state, "recipe": recipe}
    return atomic_write(Path(path), lambda tmp: torch.save(record, tmp))


def load_directions(path: str | Path) -> Directions:
    """Directions from :func:`save_directions`'s file or a ``directions`` run checkpoint; one-line errors."""
    from gan_bridge.train import load_checkpoint
    record = load_checkpoint(path) if Path(path).name.startswith("ckpt-") else _read(Path(path))
    if "modules" in record:
        shape = record.get("method", {}).get("directions_shape")
        if "directions" not in record["modules"] or shape is None:
            raise ValueError(f"{path} is a run checkpoint of another method, not of 'directions'")
        record = {"format": FORMAT, "config": shape, "state_dict": record["modules"]["directions"]}
    if record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a directions file ({FORMAT}); pass the A.pt that training exported")
    directions = Directions(**record["config"])
    try:
        directions.load_state_dict(record["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the directions do not match their config ({str(exc).splitlines()[0]})") from None
    return directions.eval()


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"directions file {path} does not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is corrupt or not a directions file ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a directions file ({FORMAT})")
    return record


__all__ = ["Directions", "FORMAT", "load_directions", "pose_range", "pose_vector", "save_directions"]
