"""StyleGAN2 generator / discriminator: shapes, W+ layout, truncation, w_avg tracking, noise, mixing, errors."""
import math

import pytest
import torch

from gan_bridge.networks.stylegan2 import Discriminator, Generator, channels_per_resolution

TINY = dict(z_dim=16, w_dim=16, channel_base=256, channel_max=16, n_mlp=2)


def tiny_generator(resolution=32, **kw):
    torch.manual_seed(0)
    return Generator(resolution, **{**TINY, **kw})


@pytest.mark.parametrize("resolution", [32, 64, 128, 256, 512, 1024])
def test_num_ws_and_channels_for_every_resolution(resolution):
    G = Generator(resolution, z_dim=8, w_dim=8, channel_base=2048, channel_max=8, n_mlp=1)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    assert len(G.synthesis.noise_layers()) == G.num_ws - 1
    assert G.synthesis.channels == {r: min(2048 // r, 8) for r in G.synthesis.block_resolutions}
    assert Discriminator(resolution, channel_base=2048, channel_max=8).block_resolutions[0] == resolution


def test_config_f_channel_table():
    assert channels_per_resolution(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                                             512: 64, 1024: 32}


def test_64px_cpu_config_has_a_few_million_parameters_and_runs():
    torch.manual_seed(0)
    G = Generator(64, z_dim=128, w_dim=128, channel_base=2048, channel_max=128)
    D = Discriminator(64, channel_base=2048, channel_max=128)
    n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (G, D))
    assert 1e6 < n_g < 5e6 and 1e6 < n_d < 5e6
    img = G(torch.randn(2, 128))
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()
    logits = D(img)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad and p.ndim > 0)


def test_mapping_shapes_truncation_and_cutoff():
    G = tiny_generator().eval()
    G.mapping.w_avg.copy_(torch.randn(16))
    z = torch.randn(3, 16)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, 16) and torch.equal(ws[:, 0], ws[:, -1])
    assert torch.allclose(G.mapping(z, truncation_psi=0), G.w_avg.expand_as(ws))
    half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(half, G.w_avg + 0.5 * (ws - G.w_avg), atol=1e-6)
    cut = G.mapping(z, truncation_psi=0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.w_avg.expand(3, 2, 16)) and torch.equal(cut[:, 2:], ws[:, 2:])


def test_w_avg_is_an_ema_updated_only_in_training():
    G = tiny_generator()
    z = torch.randn(5, 16)
    G.eval()
    G.mapping(z)
    assert torch.count_nonzero(G.w_avg) == 0
    G.train()
    w = G.mapping(z)[:, 0].detach()
    assert torch.allclose(G.w_avg, (1 - 0.995) * w.mean(0), atol=1e-7)
    G.mapping(z, update_w_avg=False)
    assert torch.allclose(G.w_avg, (1 - 0.995) * w.mean(0), atol=1e-7)


def test_noise_modes_and_determinism():
    G = tiny_generator().eval()
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.fill_(0.5)
    ws = G.mapping(torch.randn(2, 16))
    c1, c2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(c1, c2)
    r1 = G.synthesis(ws, generator=torch.Generator().manual_seed(7))
    r2 = G.synthesis(ws, generator=torch.Generator().manual_seed(7))
    r3 = G.synthesis(ws, generator=torch.Generator().manual_seed(8))
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
    none = G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(none, c1)
    # Explicit noise equal to the buffers reproduces 'const'; zeros reproduce 'none'.
    consts = [layer.noise_const[None, None] for layer in G.synthesis.noise_layers()]
    assert torch.allclose(G.synthesis(ws, noise=consts), c1, atol=1e-6)
    zeros = [torch.zeros_like(n) for n in consts]
    assert torch.allclose(G.synthesis(ws, noise=zeros), none, atol=1e-6)


def test_each_w_plus_entry_drives_its_layer():
    G = tiny_generator().eval()
    ws = G.mapping(torch.randn(1, 16))
    base = G.synthesis(ws, noise_mode="none")
    for i in range(G.num_ws):
        ws2 = ws.clone()
        ws2[:, i] += 1.0
        assert not torch.allclose(G.synthesis(ws2, noise_mode="none"), base), f"ws[{i}] unused"


def test_style_mixing():
    G = tiny_generator().eval()
    ws = G.mapping(torch.randn(2, 16))
    assert torch.equal(G.mix_styles(ws, 0.0), ws)
    mixed = G.mix_styles(ws, 1.0, generator=torch.Generator().manual_seed(0))
    same = (mixed == ws).all(dim=2).all(dim=0)
    k = int(same.long().sum())
    assert 1 <= k < G.num_ws and same[:k].all() and not same[k:].any()
    img = G(torch.randn(2, 16), mixing_prob=1.0, generator=torch.Generator().manual_seed(1))
    assert img.shape == (2, 3, 32, 32)


def test_output_range_is_roughly_unit():
    G = tiny_generator().eval()
    with torch.no_grad():
        img = G(torch.randn(8, 16), noise_mode="const")
    assert 0.05 < img.std().item() < 20


def test_discriminator_shapes_and_grad():
    torch.manual_seed(0)
    D = Discriminator(32, channel_base=256, channel_max=16)
    x = torch.randn(8, 3, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (8, 1)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert D(torch.randn(2, 3, 32, 32)).shape == (2, 1)  # groups shrink to the batch


def test_clear_errors_for_bad_input():
    G = tiny_generator()
    D = Discriminator(32, channel_base=256, channel_max=16)
    with pytest.raises(ValueError, match="non-finite z"):
        G(torch.full((1, 16), float("nan")))
    with pytest.raises(ValueError, match=r"shape \(B, 16\)"):
        G(torch.randn(1, 8))
    with pytest.raises(ValueError, match="empty batch"):
        G(torch.randn(0, 16))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(1, 16), noise_mode="fixed")
    with pytest.raises(ValueError, match="ws of shape"):
        G.synthesis(torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="one entry per conv layer"):
        G.synthesis(G.mapping(torch.randn(1, 16)), noise=[None])
    with pytest.raises(ValueError, match="resize or crop"):
        D(torch.randn(4, 3, 64, 64))
    with pytest.raises(ValueError, match="power of two"):
        Generator(48, **TINY)
    with pytest.raises(ValueError, match="channel_base"):
        Generator(1024, z_dim=8, w_dim=8, channel_base=512)
