"""StyleGAN2 losses against hand-computed values, R1 against a known gradient, path-length behaviour, EMA."""
import copy
import math

import pytest
import torch
from torch import nn

from gan_bridge.train import ema_update

from gan_bridge.networks.stylegan2 import (Discriminator, Generator, StyleGAN2LossConfig, StyleGAN2Losses,
                                           d_logistic_loss, ema_beta, g_nonsaturating_loss,
                                           lazy_ratio, path_length_penalty, r1_penalty)


def softplus(x):
    return math.log1p(math.exp(x))


def test_logistic_losses_by_hand():
    real, fake = torch.tensor([[1.0], [-2.0]]), torch.tensor([[0.5], [3.0]])
    assert g_nonsaturating_loss(fake).item() == pytest.approx((softplus(-0.5) + softplus(-3.0)) / 2, rel=1e-6)
    expected = (softplus(0.5) + softplus(3.0)) / 2 + (softplus(-1.0) + softplus(2.0)) / 2
    assert d_logistic_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert d_logistic_loss(torch.zeros(4, 1), torch.zeros(4, 1)).item() == pytest.approx(2 * math.log(2))


def test_r1_matches_the_analytic_gradient():
    # D(x) = sum(a * x^2) per sample: grad = 2 a x, so r1 = sum((2 a x)^2).
    a = torch.randn(1, 2, 3, 3)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = (a * x.square()).sum(dim=[1, 2, 3])
    pen = r1_penalty(logits, x)
    expected = (2 * a * x.detach()).square().sum(dim=[1, 2, 3])
    assert torch.allclose(pen, expected, rtol=1e-5)
    # The penalty is differentiable: d/da of sum(4 a^2 x^2) = 8 a x^2.
    a2 = a.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(r1_penalty((a2 * x.square()).sum(dim=[1, 2, 3]), x).sum(), a2)
    assert torch.allclose(g, (8 * a * x.detach().square()).sum(0, keepdim=True), rtol=1e-5)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(logits, x.detach())


def test_path_length_penalty_on_a_linear_generator():
    # images = s * ws reshaped: J^T y = s * y, so lengths = s * sqrt(mean_i |y_i|^2) exactly.
    s, B, num_ws, w_dim = torch.tensor(3.0, requires_grad=True), 4, 2, 8
    ws = torch.randn(B, num_ws, w_dim, requires_grad=True)
    images = s * ws.reshape(B, 1, 4, 4)
    pl_mean = torch.tensor(1.0)
    pen, new_mean = path_length_penalty(images, ws, pl_mean, decay=0.01, generator=torch.Generator().manual_seed(0))
    y = torch.randn(images.shape, generator=torch.Generator().manual_seed(0)) / 4.0
    lengths = (s.detach() * y).reshape(B, num_ws, w_dim).square().sum(2).mean(1).sqrt()
    assert torch.allclose(new_mean, pl_mean + 0.01 * (lengths.mean() - pl_mean), rtol=1e-6)
    assert torch.allclose(pen, (lengths - new_mean).square(), rtol=1e-5)
    assert not new_mean.requires_grad
    # Differentiable w.r.t. the generator's parameter: d/ds sum (s c_b - m)^2 = sum 2 (l_b - m) c_b.
    (g,) = torch.autograd.grad(pen.sum(), s)
    c = lengths / 3.0
    assert torch.allclose(g, (2 * (lengths - new_mean) * c).sum(), rtol=1e-4)


def test_path_length_mean_converges_and_penalty_vanishes_for_constant_lengths():
    pl_mean = torch.zeros([])
    for i in range(600):
        ws = torch.randn(64, 2, 8, requires_grad=True)
        _, pl_mean = path_length_penalty(2.0 * ws.reshape(64, 1, 4, 4), ws, pl_mean, decay=0.01,
                                         generator=torch.Generator().manual_seed(i))
    # E|y|^2 per w entry is 8 / 16, so lengths concentrate near 2 * sqrt(0.5).
    assert pl_mean.item() == pytest.approx(2 * math.sqrt(0.5), rel=0.05)


def test_ema_beta_half_life_and_update():
    beta = ema_beta(batch_size=32, ema_kimg=10)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    assert ema_beta(32, 10, cur_nimg=1000, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 50))
    g, g_ema = nn.Linear(2, 2), nn.Linear(2, 2)
    g.register_buffer("avg", torch.ones(2))
    g_ema.register_buffer("avg", torch.zeros(2))
    before = g_ema.weight.detach().clone()
    ema_update(g_ema, g, beta=0.9)
    assert torch.allclose(g_ema.weight, 0.9 * before + 0.1 * g.weight.detach())
    assert torch.equal(g_ema.avg, g.avg)
    assert lazy_ratio(16) == pytest.approx(16 / 17)


def _tiny_gd():
    torch.manual_seed(0)
    G = Generator(32, z_dim=8, w_dim=8, channel_base=128, channel_max=8, n_mlp=2)
    D = Discriminator(32, channel_base=128, channel_max=8)
    return G, D


def test_d_step_applies_lazy_r1_on_its_interval():
    G, D = _tiny_gd()
    losses = StyleGAN2Losses(StyleGAN2LossConfig(r1_gamma=10, r1_interval=16))
    real = torch.randn(4, 3, 32, 32)
    plain = losses.d_step(G, D, real, step=1, generator=torch.Generator().manual_seed(0))
    assert "r1" not in plain and torch.allclose(plain["loss"], plain["d_loss"])
    reg = losses.d_step(G, D, real, step=16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(reg["d_loss"], plain["d_loss"])  # same fakes from the same seed
    assert torch.allclose(reg["loss"], reg["d_loss"] + reg["r1"] * 5 * 16, rtol=1e-5)
    reg["loss"].backward()
    assert all(p.grad is not None for p in D.parameters())
    assert all(p.grad is None for p in G.parameters())  # fakes are generated without G gradients


def test_g_step_path_length_and_pl_mean_state():
    G, D = _tiny_gd()
    losses = StyleGAN2Losses(StyleGAN2LossConfig(pl_interval=4, pl_batch_shrink=2))
    out = losses.g_step(G, D, batch_size=4, step=0, generator=torch.Generator().manual_seed(0))
    assert {"loss", "g_loss", "pl_penalty", "pl_mean"} <= set(out)
    assert out["pl_mean"].item() > 0 and losses.state_dict()["pl_mean"].item() == out["pl_mean"].item()
    assert torch.allclose(out["loss"], out["g_loss"] + out["pl_penalty"] * 2 * 4, rtol=1e-5)
    out["loss"].backward()
    assert G.synthesis.b32.conv1.weight.grad is not None
    plain = losses.g_step(G, D, batch_size=4, step=1)
    assert "pl_penalty" not in plain
    restored = StyleGAN2Losses()
    restored.load_state_dict(losses.state_dict())
    assert restored.pl_mean.item() == losses.pl_mean.item()
    with pytest.raises(ValueError, match="positive batch"):
        losses.g_step(G, D, batch_size=0)


def test_a_few_training_steps_reduce_d_loss():
    G, D = _tiny_gd()
    G_ema = copy.deepcopy(G).eval()
    losses = StyleGAN2Losses(StyleGAN2LossConfig(r1_gamma=0.1, pl_weight=0))
    real = torch.tanh(torch.randn(4, 3, 32, 32) * 0.1 + 0.8)  # a distinct "real" distribution
    first = None
    for step in range(8):
        out = losses.d_step(G, D, real, step=step, generator=torch.Generator().manual_seed(step))
        D.zero_grad()
        out["loss"].backward()
        with torch.no_grad():  # plain gradient descent keeps the test fast
            for p in D.parameters():
                p -= 0.01 * p.grad
        first = first if first is not None else out["d_loss"].item()
        ema_update(G_ema, G, ema_beta(4, ema_kimg=0.01))
    assert out["d_loss"].item() < first
