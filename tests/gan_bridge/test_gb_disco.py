"""DiscoFaceGAN: lambda VAEs, the lambda-fed generator, the imitative / contrastive losses (known answers)."""
import math

import pytest
import torch

from gan_bridge.disco.config import DiscoConfig
from gan_bridge.disco.losses import (DiscoLosses, colour_loss, expression_contrastive, identity_contrastive,
                                     identity_imitative, illumination_structure, landmark_distance, sh_loss,
                                     structure_map)
from gan_bridge.disco.vae import BFM_LATENTS, LambdaVAEs, factor_dims, fit_vaes, latent_sizes
from gb_disco_stubs import LM_BASE, OPEN_DIMS, StubFace, freeze_factor, tiny_generator


# ---- VAEs -----------------------------------------------------------------------------------------
def test_latent_sizes_paper_for_bfm_and_derived_otherwise():
    bfm = factor_dims({"identity": 80, "texture": 80, "expression": 64, "lighting": 27, "rotation": 3})
    assert latent_sizes(bfm) == BFM_LATENTS == {"identity": 128, "expression": 32, "lighting": 16, "pose": 3}
    assert latent_sizes(factor_dims(OPEN_DIMS)) == {"identity": 40, "expression": 15, "lighting": 16, "pose": 3}
    vaes = LambdaVAEs(factor_dims(OPEN_DIMS), hidden=(8,))
    assert (vaes.lambda_dim, vaes.z_dim) == (110, 74)
    assert vaes.decode(torch.zeros(2, 74)).shape == (2, 110)
    with pytest.raises(ValueError, match="74"):
        vaes.decode(torch.zeros(2, 73))


def test_vae_learns_the_data_distribution():
    torch.manual_seed(0)
    basis = torch.randn(2, 6) * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0, 1.0])
    data = torch.randn(512, 2) @ basis + 5.0  # a 2-D Gaussian inside 6-D
    vaes = LambdaVAEs({"identity": 6, "expression": 1, "lighting": 1, "pose": 1},
                      {"identity": 2, "expression": 1, "lighting": 1, "pose": 1}, hidden=(16,))
    losses = fit_vaes(vaes, torch.cat([data, torch.randn(512, 3)], 1), steps=150, batch_size=64, lr=1e-2)
    assert all(math.isfinite(v) for v in losses.values())
    assert not any(p.requires_grad for p in vaes.parameters())
    samples = vaes.vaes["identity"].decode(torch.randn(4000, 2))
    assert torch.allclose(samples.mean(0), data.mean(0), atol=0.4)
    assert torch.allclose(samples.std(0), data.std(0), rtol=0.25)
    # decoded samples stay on the data's plane
    resid = samples - samples.mean(0)
    coef = torch.linalg.lstsq(basis.T, resid.T).solution
    assert (resid - (basis.T @ coef).T).abs().mean() < 0.1 * resid.abs().mean()
    with pytest.raises(ValueError, match="NaN"):
        fit_vaes(vaes, torch.full((4, 9), float("nan")), steps=1)


# ---- generator ------------------------------------------------------------------------------------
def test_generator_shapes_swap_and_frozen_vaes():
    G = tiny_generator()
    z = G.sample_z(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 74 + 8)
    img, ws = G(z, noise_mode="const", return_ws=True)
    assert img.shape == (3, 3, 32, 32) and ws.shape == (3, G.num_ws, 32)
    other = torch.randn_like(z)
    swapped = G.swap(z, other, "lighting")
    changed = (swapped != z).any(0)
    assert changed.nonzero().flatten().tolist() == list(range(40 + 15, 40 + 15 + 16))
    assert (G.swap(z, other, "noise") != z).any(0).nonzero().flatten().tolist() == list(range(74, 82))
    G.requires_grad_(True)
    assert not any(p.requires_grad for p in G.vaes.parameters())
    assert any(p.requires_grad for p in G.synthesis.parameters())
    lam = G.mapping.lam(z)
    assert torch.allclose(G.from_lambda(lam, z[:, 74:]), G(z, noise_mode="const"), atol=1e-5)
    # lambda's scale reaches W (no pixel norm on the input): doubling lambda changes w
    w1 = G.mapping.from_lambda(lam, z[:, 74:], update_w_avg=False)
    w2 = G.mapping.from_lambda(lam * 2, z[:, 74:] * 2, update_w_avg=False)
    assert not torch.allclose(w1, w2, atol=1e-3)
    with pytest.raises(ValueError, match="non-finite"):
        G.from_lambda(lam * float("nan"), z[:, 74:])


# ---- loss functions with known answers ------------------------------------------------------------
def test_identity_margin_and_contrastive():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert identity_imitative(a, b, 0.3).item() == pytest.approx((0.0 + 0.7) / 2)
    assert identity_imitative(a, -a, 0.3).item() == pytest.approx(1.7)
    assert identity_imitative(a, torch.tensor([[0.8, 0.6], [0.8, 0.6]]), 0.3).item() == pytest.approx(0.0)
    assert identity_contrastive(a, b).item() == pytest.approx(0.5)


def test_landmark_sh_colour_losses():
    p = LM_BASE[None].expand(2, 68, 2)
    assert landmark_distance(p + torch.tensor([3.0, 0.0]), p, 30).tolist() == pytest.approx([0.01, 0.01])
    assert landmark_distance(p + torch.tensor([3.0, 4.0]), p, 50).mean().item() == pytest.approx(0.01)
    assert sh_loss(torch.ones(2, 27), torch.zeros(2, 27)).item() == pytest.approx(1.0)
    x, x_hat, mask = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    x[..., :4, :] = 0.5
    x_hat[..., :4, :] = -0.5
    x_hat[..., 4:, :] = 0.9  # outside the face mask: ignored
    assert colour_loss(x, x_hat, mask).item() == pytest.approx(1.0)


def test_expression_contrastive_warps_and_masks():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    x2 = torch.zeros_like(x)
    x2[..., :, :14] = x[..., :, 2:]  # x' is x moved 2 px to the left
    fg = torch.zeros(1, 1, 16, 16)
    fg[..., 2:14, 2:12] = 1
    valid = fg.bool()
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0 * fg[:, 0]
    # on the face the flow explains x' exactly; off the face nothing moves, so the background differs
    face_only = expression_contrastive(x, x2, flow, valid, fg, 1 - fg)
    assert face_only.item() == pytest.approx(0.0, abs=1e-6)
    background_only = expression_contrastive(x, x2, flow, valid, fg, fg)
    bg_diff = (x - x2).abs().mean(1, keepdim=True)
    assert background_only.item() == pytest.approx(float((bg_diff * (1 - fg)).sum() / (1 - fg).sum()), rel=1e-5)
    wrong = torch.zeros(1, 2, 16, 16)
    wrong[:, 0] = -2.0 * fg[:, 0]
    assert expression_contrastive(x, x2, wrong, valid, fg, 1 - fg) > 0.1
    invalid = expression_contrastive(x, x2, wrong, torch.zeros_like(valid), fg, 1 - fg)
    assert invalid.item() == 0.0  # occluded face pixels are not compared
    # a big difference inside the mouth is ignored
    mouth2 = torch.zeros_like(fg)
    mouth2[..., 6:9, 5:9] = 1
    x3 = x2.clone()
    x3[..., 6:9, 5:9] += 5
    assert expression_contrastive(x, x3, flow, valid, fg, mouth2).item() == pytest.approx(
        expression_contrastive(x, x2, flow, valid, fg, mouth2).item(), abs=1e-6)


def test_structure_map_ignores_lighting_and_eq7():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24) * 2 - 1
    other = torch.rand(1, 3, 24, 24) * 2 - 1
    relit = x * 0.6 + 0.2
    assert structure_map(x).shape == (1, 1, 24, 24)
    same = (structure_map(x) - structure_map(relit)).square().mean()
    diff = (structure_map(x) - structure_map(other)).square().mean()
    assert same < 0.05 * diff
    p = LM_BASE[None]
    m = structure_map(x)
    assert illumination_structure(m, m, p + torch.tensor([0.0, 2.4]), p, 1000.0, 24).item() == pytest.approx(10.0)
    assert illumination_structure(m, m + 1, p, p, 1000.0, 24).item() == pytest.approx(1.0)


# ---- DiscoLosses on a generator ---------------------------------------------------------------------
def test_imitative_total_is_the_weighted_sum_and_trains_g():
    G = tiny_generator()
    cfg = DiscoConfig(w_id=3, w_lm=500, w_lm_contrastive=100, w_sh=10, w_cl=20)
    losses = DiscoLosses(cfg, StubFace())
    z = G.sample_z(2, torch.Generator().manual_seed(1))
    x = G(z, noise_mode="const")
    lam = G.mapping.lam(z)
    out = losses.imitative(x, lam, contrastive_on=False)
    m = x.mean((1, 2, 3)).detach()
    f_hat = torch.full((2, 48), 0.25)
    assert out["im_lm"].detach().item() == pytest.approx((2 * m.square() / 32 ** 2).mean().item(), rel=1e-4)
    assert out["im_sh"].detach().item() == pytest.approx((m[:, None] - lam[:, 80:107].detach()).abs().mean().item(), rel=1e-4)
    assert out["im_cl"].detach().item() == pytest.approx(float((x.detach()[..., :16].mean((2, 3)) - 0.25).abs().mean()), rel=1e-4)
    f_x = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
    assert out["im_id"].detach().item() == pytest.approx(identity_imitative(f_x, f_hat, 0.3).detach().item(), rel=1e-4)
    total = 3 * out["im_id"] + 500 * out["im_lm"] + 10 * out["im_sh"] + 20 * out["im_cl"]
    assert out["loss"].detach().item() == pytest.approx(total.detach().item(), rel=1e-5)
    later = losses.imitative(x, lam, contrastive_on=True)
    assert (out["loss"] - later["loss"]).detach().item() == pytest.approx(400 * out["im_lm"].detach().item(), rel=1e-4)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.synthesis.parameters())


@pytest.mark.parametrize("factor,keys", [("expression", ["co_ex"]), ("lighting", ["co_il1", "co_il2"])])
def test_contrastive_pairs_differ_only_in_their_factor(factor, keys):
    G = tiny_generator()
    face = StubFace()
    losses = DiscoLosses(DiscoConfig(), face)
    z = G.sample_z(2, torch.Generator().manual_seed(2))
    live = losses.contrastive(G, z, torch.Generator().manual_seed(3))
    # the flow warps x (source, z's lambda) onto its expression partner x' (target)
    target, source = face.flow_calls[0]
    lam = G.vaes.split(G.mapping.lam(z))
    assert torch.equal(source, G.mapping.lam(z))
    t = G.vaes.split(target)
    assert not torch.allclose(t["expression"], lam["expression"])
    assert all(torch.equal(t[f], lam[f]) for f in ("identity", "lighting", "pose"))
    assert all(live[k].item() > 1e-6 for k in keys)
    blind = losses.contrastive(freeze_factor(G, factor), z, torch.Generator().manual_seed(3))
    assert all(blind[k].item() == pytest.approx(0.0, abs=1e-6) for k in keys)
    c = DiscoConfig()
    weighted = c.w_ex * live["co_ex"] + c.w_il1 * live["co_il1"] + c.w_il2 * live["co_il2"]
    assert live["loss"].item() == pytest.approx(weighted.item(), rel=1e-5)


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="imitative"):
        DiscoConfig(imitative=False, contrastive=True)
    with pytest.raises(ValueError, match="w_lm"):
        DiscoConfig(w_lm=-1)
    with pytest.raises(ValueError, match="noise_dim"):
        DiscoConfig(noise_dim=0)
