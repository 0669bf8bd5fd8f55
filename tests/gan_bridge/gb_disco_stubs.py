"""Stubs for the DiscoFaceGAN tests: a 3DMM side with known answers and a tiny generator."""
import copy
import functools

import torch

from gan_bridge.disco.generator import DiscoGenerator
from gan_bridge.disco.vae import LambdaVAEs, factor_dims, fit_vaes

OPEN_DIMS = {"identity": 40, "texture": 10, "expression": 30, "lighting": 27, "rotation": 3}
LM_BASE = torch.stack(torch.meshgrid(torch.linspace(8, 24, 17), torch.linspace(8, 24, 4), indexing="ij"), -1
                      ).reshape(-1, 2)[:68]


class StubFace:
    """render: x_hat = 0.25 everywhere, mask = left half, landmarks = LM_BASE; estimate: landmarks shifted
    by the image mean (px), gamma = the image mean per coefficient; identity: the 4x4 average-pooled image;
    flow: zero, valid everywhere; mouth: nothing."""

    def render(self, lam, s):
        b = lam.shape[0]
        mask = torch.zeros(b, 1, s, s)
        mask[..., : s // 2] = 1
        return torch.full((b, 3, s, s), 0.25), mask, LM_BASE.expand(b, 68, 2).clone()

    def estimate(self, x):
        m = x.mean((1, 2, 3))
        return LM_BASE + m[:, None, None], m[:, None].expand(-1, 27), None

    def identity(self, x, landmarks):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    def __init__(self):
        self.flow_calls = []

    def flow(self, lam_t, lam_s, s):
        self.flow_calls.append((lam_t, lam_s))
        b = lam_t.shape[0]
        return torch.zeros(b, 2, s, s), torch.ones(b, 1, s, s, dtype=torch.bool)

    def mouth(self, landmarks, s):
        return torch.zeros(landmarks.shape[0], 1, s, s)


def tiny_vaes(seed=0, steps=20):
    torch.manual_seed(seed)
    vaes = LambdaVAEs(factor_dims(OPEN_DIMS), hidden=(16,))
    fit_vaes(vaes, torch.randn(64, vaes.lambda_dim) * 0.5 + 1.0, steps=steps, batch_size=32)
    return vaes


@functools.lru_cache(maxsize=2)
def _tiny_generator(seed):
    vaes = tiny_vaes(seed)
    torch.manual_seed(seed)
    return DiscoGenerator(vaes, 32, noise_dim=8, w_dim=32, channel_base=256, channel_max=32, n_mlp=2)


def tiny_generator(seed=0):
    """A fresh copy of one tiny DiscoGenerator (32 px) per seed, built once per process."""
    return copy.deepcopy(_tiny_generator(seed))


def lambda_columns(G, factor):
    """Columns of the first mapping layer that read ``factor``'s lambda."""
    vaes = G.vaes
    order = ["identity", "expression", "lighting", "pose"]
    lo = sum(vaes.dims[f] for f in order[:order.index(factor)])
    return slice(lo, lo + vaes.dims[factor])


def freeze_factor(G, factor):
    """Make G blind to ``factor`` (zero its first-layer weights)."""
    with torch.no_grad():
        G.mapping.base.fc0.weight[:, lambda_columns(G, factor)] = 0
    return G
