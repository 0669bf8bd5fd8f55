"""What a training method implements; :func:`gan_bridge.train.train` runs it."""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from .config import TrainConfig
from .distributed import DistInfo


class Method:
    """Base class of every trainable method (GANs, regressors, rigs, VAEs, ...).

    Subclasses set ``config_class`` and implement:
      ``build(config, device) -> (modules, optimizers)``: dicts of named ``nn.Module``s (EMA copies
        included: modules without trainable parameters are checkpointed but not wrapped) and optimisers;
      ``data(start_step) -> iterable`` yielding this process's input of each global step from
        ``start_step`` on, one item per step (a method that needs several batches per step yields them
        together); the step fixes the data position, which is how resumes restart the stream
        (see :func:`gan_bridge.train.sharded_loader`; ``self.dist`` and ``self.local_batch`` are set);
      ``train_step(batch, step) -> {name: scalar}``: one optimisation step (forward, backward, update)
        through ``self.modules`` (DistributedDataParallel wrappers when several processes train). A module
        used frozen in a step (a GAN's D in the G step) is called unwrapped, ``self.module(name)``, so that
        DDP does not wait for gradients that never come.
    Optional: ``fixed_inputs(n, generator)`` and ``sample(fixed) -> (n, 3, H, W) in [-1, 1]`` for sample
    grids (run on rank 0 only, without gradients: use ``self.module(name)``, no collectives; the grid has
    ``sample_columns`` columns, None = near-square), and ``state_dict``/``load_state_dict`` for extra state
    that must survive a resume.
    """

    config_class = TrainConfig
    sample_columns: int | None = None

    def __init__(self, config: TrainConfig | None = None):
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                            f"got {type(self.config).__name__}")
        self.modules: dict[str, nn.Module] = {}
        self.raw_modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.dist = DistInfo()
        self.device = torch.device("cpu")

    @property
    def local_batch(self) -> int:
        """Samples per step in this process (``config.batch_size / world_size``)."""
        return self.config.batch_size // self.dist.world_size

    def module(self, name: str) -> nn.Module:
        """The unwrapped module ``name`` (for sampling, EMA updates and inspection)."""
        return self.raw_modules[name]

    def build(self, config: TrainConfig, device: torch.device
              ) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        raise NotImplementedError

    def data(self, start_step: int) -> Iterable:
        raise NotImplementedError

    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        raise NotImplementedError

    def fixed_inputs(self, n: int, generator: torch.Generator) -> Any:
        return None

    def sample(self, fixed: Any) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - beta)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


__all__ = ["Method", "ema_update"]
