"""A tiny regression method for testing the training loop (no morph3d, no real networks)."""
from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from gan_bridge.train import Method, TrainConfig, ema_update, sharded_loader, train


class ToyData(Dataset):
    """(x, y) pairs: x (8,) standard normal, y (48,) = sin(x @ W), fixed by seed 123."""

    def __init__(self, n: int = 40):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 8, generator=g)
        self.y = torch.sin(self.x @ torch.randn(8, 48, generator=g))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@dataclass
class OptimSection:
    betas: tuple[float, float] = (0.5, 0.99)
    weight_decay: float = 0.0


@dataclass
class TinyConfig(TrainConfig):
    hidden: int = 16
    noise: float = 0.1
    ema_beta: float = 0.9
    optim: OptimSection = field(default_factory=OptimSection)
    tags: list[str] = field(default_factory=list)


class TinyMethod(Method):
    """An MLP regressor with input noise from all three global generators (to test RNG restore)."""

    config_class = TinyConfig

    def build(self, config, device):
        net = nn.Sequential(nn.Linear(8, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 48)).to(device)
        ema = copy.deepcopy(net).requires_grad_(False)
        opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.optim.betas,
                               weight_decay=config.optim.weight_decay)
        self.seen = 0
        return {"net": net, "ema": ema}, {"opt": opt}

    def data(self, start_step):
        return sharded_loader(ToyData(), self.config.batch_size, self.dist, self.config.seed, start_step,
                              self.config.num_workers)

    def train_step(self, batch, step):
        x, y = (t.to(self.device) for t in batch)
        jitter = self.config.noise * (torch.randn_like(x) + random.gauss(0, 1) + float(np.random.randn()))
        loss = (self.modules["net"](x + jitter) - y).pow(2).mean()
        self.optimizers["opt"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["opt"].step()
        ema_update(self.module("ema"), self.module("net"), self.config.ema_beta)
        self.seen += x.shape[0]
        return {"loss": loss.detach(), "seen": self.seen}

    def fixed_inputs(self, n, generator):
        random.random(), np.random.rand(), torch.rand(1)  # global draws the loop must isolate
        return torch.randn(n, 8, generator=generator)

    def sample(self, fixed):
        random.random(), np.random.rand(), torch.rand(1)
        return torch.tanh(self.module("ema")(fixed.to(self.device))).reshape(-1, 3, 4, 4)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def ddp_worker(rank: int, world_size: int, port: int, config: TinyConfig) -> None:
    """torch.multiprocessing.spawn target: one rank of a gloo process group training TinyMethod."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    train(TinyMethod(config))
