"""StyleRig (RigNet, its losses and training) and PIE (energy, feedback, sequential edits) on tiny
configurations; a stub world (gb_stylerig_stubs) gives known answers."""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gb_stylerig_stubs import CodeEncoder, CodeGenerator, SlotRig  # noqa: E402

from gan_bridge.face.rig import RigFace, mix, render_loss, tau, with_tau  # noqa: E402
from gan_bridge.stylerig import PIEConfig, RigNet, StyleRigConfig, load_rignet, load_rignets, save_rignet  # noqa: E402
from gan_bridge.stylerig.edit import EditSpec, apply_edit, sequential_edit, target_tau  # noqa: E402
from gan_bridge.stylerig.losses import reconstruction_loss, stylerig_losses  # noqa: E402
from gan_bridge.stylerig.method import StyleRigMethod  # noqa: E402
from gan_bridge.stylerig.pie import PIEEnergy  # noqa: E402
from gan_bridge.stylerig.rignet import transform_params  # noqa: E402

torch.set_num_threads(1)
PH, LM = 1e-3, 0.2


@pytest.fixture(scope="module")
def world():
    G, enc = CodeGenerator(), CodeEncoder()
    return G, RigFace(enc)


def _codes(G, n, seed):
    return G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)))


def _random_rignet(mode="pose", tau_dim=3, num_ws=4, w_dim=16, seed=0):
    torch.manual_seed(seed)
    net = RigNet(mode, num_ws, w_dim, tau_dim, latent_dim=8, hidden=12)
    with torch.no_grad():
        net.decoder2.weight.normal_(0, 0.2)
    return net


# ---- RigNet ---------------------------------------------------------------------------------------------
def test_untrained_rignet_is_identity_and_checks_shapes():
    net = RigNet("pose", 4, 16, 3, latent_dim=8)
    v = torch.randn(2, 4, 16)
    assert torch.equal(net(v, torch.randn(2, 3)), v)
    with pytest.raises(ValueError, match="W\\+ codes"):
        net(torch.randn(2, 5, 16), torch.randn(2, 3))
    with pytest.raises(ValueError, match="theta"):
        net(v, torch.randn(2, 4))
    with pytest.raises(ValueError, match="control mode"):
        RigNet("hair", 4, 16, 3)


def test_rignet_layers_are_independent_and_follow_theta():
    """Encoder/decoder per W+ layer: changing layer k of v moves only layer k of v_hat; theta moves all."""
    net = _random_rignet()
    v, theta = torch.randn(1, 4, 16), torch.randn(1, 3) * 0.3
    base = net(v, theta)
    v2 = v.clone()
    v2[:, 2] += 1.0
    moved = (net(v2, theta) - base).abs().amax(-1)[0]
    assert moved[2] > 1e-3 and torch.all(moved[[0, 1, 3]] == 0)
    changed = (net(v, theta + 0.2) - base).abs().amax(-1)[0]
    assert torch.all(changed > 1e-4)


def test_parameter_transforms():
    zero = torch.zeros(2, 3)
    assert torch.equal(transform_params("pose", zero), torch.zeros(2, 6))
    a = torch.tensor([[0.3, -0.2, 0.1]])
    p = transform_params("pose", a)
    assert torch.allclose(p, torch.cat([a.sin(), a.cos() - 1], 1))
    assert torch.allclose(transform_params("pose", a + 2 * math.pi), p, atol=1e-5)  # continuous in the angle
    light = torch.zeros(1, 27)
    light.view(1, 3, 9)[..., 0] = math.sqrt(4 * math.pi)
    light.view(1, 3, 9)[..., 3] = 0.5 * math.sqrt(4 * math.pi)
    q = transform_params("lighting", light).view(3, 9)
    assert torch.allclose(q[:, 0], torch.zeros(3), atol=1e-6) and torch.allclose(q[:, 3], torch.full((3,), 0.5))
    q2 = transform_params("lighting", light * 2).view(3, 9)  # brighter: level only
    assert torch.allclose(q2[:, 0], torch.full((3,), math.log(2))) and torch.allclose(q2[:, 1:], q[:, 1:])
    expr = torch.randn(2, 5)
    assert torch.equal(transform_params("expression", expr), expr)


def test_rignet_files_round_trip_and_errors(tmp_path):
    net = _random_rignet()
    save_rignet(net, tmp_path / "rigs" / "pose.pt", recipe="test")
    loaded = load_rignet(tmp_path / "rigs" / "pose.pt")
    v, theta = torch.randn(2, 4, 16), torch.randn(2, 3)
    assert torch.equal(loaded(v, theta), net(v, theta))
    assert set(load_rignets(tmp_path / "rigs")) == {"pose"}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_rignet(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_rignet(tmp_path / "missing.pt")
    save_rignet(_random_rignet("expression", 30), tmp_path / "wrong" / "lighting.pt")
    with pytest.raises(ValueError, match="holds a expression RigNet"):
        load_rignets(tmp_path / "wrong")
    with pytest.raises(FileNotFoundError, match="no RigNets"):
        load_rignets(tmp_path)


# ---- the rendering loss -------------------------------------------------------------------------------
def test_mix_and_with_tau(world):
    G, face = world
    pa = face.estimate(G.synthesis(_codes(G, 2, 1))).params
    pb = face.estimate(G.synthesis(_codes(G, 2, 2))).params
    m = mix(pa, pb, "pose")
    assert torch.equal(m.rotation, pb.rotation) and torch.equal(m.expression, pa.expression)
    m = mix(pa, pb, "lighting")
    assert torch.equal(m.lighting, pb.lighting) and torch.equal(m.rotation, pa.rotation)
    with pytest.raises(ValueError, match="must be"):
        with_tau(pa, "pose", torch.zeros(2, 4))


def test_render_loss_is_zero_for_its_own_rendering_and_sees_only_the_face(world):
    _, face = world
    p = face.estimate(torch.zeros(1, 3, 32, 32)).params
    image, weights, landmarks = face.render(p)
    assert weights.sum() > 50 and weights[..., 0, 0] == 0
    assert render_loss(face, image, landmarks, p, PH, LM).item() < 1e-6
    outside = image.clone()
    outside = torch.where(weights == 0, torch.ones_like(image), image)  # background changes: no cost
    assert render_loss(face, outside, landmarks, p, PH, LM).item() < 1e-6
    darker = image - 0.2 * (weights > 0.5)
    photo = render_loss(face, darker, landmarks, p, PH, 0.0).item()
    assert photo == pytest.approx(PH * 3 * (0.2 * 127.5) ** 2, rel=0.15)
    turned = with_tau(p, "pose", torch.tensor([[0.3, 0.0, 0.0]]))
    assert render_loss(face, image, landmarks, turned, 0.0, LM).item() > 1.0


# ---- StyleRig losses and training ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pose", "expression", "lighting"])
def test_stylerig_losses_known_answers(world, mode):
    """A perfect rig (SlotRig) makes editing, consistency and cycle terms reduce to l(I_x, theta_x)."""
    G, face = world
    v, w = _codes(G, 2, 3), _codes(G, 2, 4)
    img_v, img_w = G.synthesis(v), G.synthesis(w)
    cv, cw = face.estimate(img_v), face.estimate(img_w)
    own_v = render_loss(face, img_v, cv.landmarks, cv.params, PH, LM).mean()
    own_w = render_loss(face, img_w, cw.landmarks, cw.params, PH, LM).mean()
    perfect = stylerig_losses(G, SlotRig(mode), face, v, w, PH, LM)
    assert perfect["rec"].item() == pytest.approx(0.0, abs=1e-12)
    assert perfect["edit"].item() == pytest.approx(own_w.item(), rel=1e-4)
    assert perfect["consist"].item() == pytest.approx(own_v.item(), rel=1e-4)
    assert perfect["cycle"].item() == pytest.approx(2 * own_v.item(), rel=1e-4)
    # a rig that does nothing fails the edit: the image keeps v's tau
    lazy = stylerig_losses(G, SlotRig(mode, gain=0.0), face, v, w, PH, LM)
    assert lazy["edit"] > perfect["edit"] * 1.05


def test_reconstruction_loss_value():
    net = RigNet("pose", 4, 16, 3, latent_dim=8)
    with torch.no_grad():
        net.decoder2.bias.fill_(0.5)
    v = torch.randn(3, 4, 16)
    assert reconstruction_loss(net, v, torch.zeros(3, 3)).item() == pytest.approx(0.25)


def _method(tmp_path, mode="pose", **kw):
    G, enc = CodeGenerator(), CodeEncoder()
    config = StyleRigConfig(run_dir=str(tmp_path / "run"), mode=mode, batch_size=2, latent_dim=8, hidden=32,
                            truncation_psi=1.0, device="cpu", progress=False, sample_every=0, log_every=0,
                            **kw)
    return StyleRigMethod(config, generator=G, face=RigFace(enc))


def _eval(method, net):
    G = method.G
    with torch.no_grad():
        return {k: v.item() for k, v in method.losses(_codes(G, 6, 11), _codes(G, 6, 12), rignet=net).items()}


def test_training_through_shared_loop_learns_the_edit(tmp_path):
    from gan_bridge.train import train
    from gan_bridge.train.registry import resolve_method
    assert resolve_method("stylerig") is StyleRigMethod
    method = _method(tmp_path, steps=30, lr=2e-2, checkpoint_every=0)
    train(method)
    net = method.module("rignet")
    trained = _eval(method, net)
    untrained = _eval(method, RigNet("pose", 4, 16, 3, latent_dim=8, hidden=32))
    # the identity rig has zero consistency and cycle losses: the total must still fall
    assert trained["edit"] < 0.4 * untrained["edit"], (trained, untrained)
    assert trained["loss"] < 0.85 * untrained["loss"], (trained, untrained)
    from gan_bridge.stylerig.method import export
    out = export(tmp_path / "run", tmp_path / "pose.pt")
    v, theta = torch.randn(2, 4, 16), torch.randn(2, 3)
    assert torch.allclose(load_rignet(out)(v, theta), net(v, theta))


def test_train_step_updates_only_the_rignet_with_a_real_generator(tmp_path):
    """Gradients reach the RigNet through a real (tiny) StyleGAN2, the regressor and the renderer."""
    from gan_bridge.face.shape import RegressorEncoder
    from gan_bridge.networks.stylegan2 import Generator
    from morph3d.model import load_model
    from morph3d.regress import Regressor, SmallRegressor, SmallRegressorConfig, target_dim
    torch.manual_seed(0)
    G = Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()
    model = load_model("open")
    net = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 8), head=16,
                                              out_dim=target_dim(model)))
    with torch.no_grad():
        net.fc[-1].weight.normal_(0, 0.05)  # a random but input-dependent regressor
    face = RigFace(RegressorEncoder(Regressor(model, net)))
    method = StyleRigMethod(StyleRigConfig(run_dir=str(tmp_path), mode="expression", batch_size=2, device="cpu"),
                            generator=G, face=face)
    modules, opts = method.build(method.config, torch.device("cpu"))
    method.raw_modules = method.modules = modules
    method.optimizers = opts
    before = {k: v.clone() for k, v in modules["rignet"].state_dict().items()}
    g_before = [p.clone() for p in G.parameters()]
    stats = method.train_step(0, 0)
    assert all(math.isfinite(v) for v in stats.values()) and stats["edit"] > 0
    assert not torch.equal(before["decoder2.weight"], modules["rignet"].decoder2.weight)
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
    assert modules["rignet"].tau_dim == model.expression_dim
    sample = method.sample(method.fixed_inputs(2, torch.Generator().manual_seed(0)))
    assert sample.shape == (6, 3, 32, 32)


# ---- PIE ----------------------------------------------------------------------------------------------
class _PoolIdentity(torch.nn.Module):
    def forward(self, images, landmarks=None):
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)


def test_pie_energy_known_answers(world):
    """A rig that applies half the wanted pose, an embedding w2 of another face than the target I = I(w):
    every term has a closed form in the stub world."""
    G, face = world
    w, w2 = _codes(G, 2, 20), _codes(G, 2, 21)
    image, synth = G.synthesis(w), G.synthesis(w2)
    config = PIEConfig(samples=2, seed=3)
    ident = _PoolIdentity()
    energy = PIEEnergy(G, SlotRig("pose", gain=0.5), face, image, config, identity=ident)
    total = energy(w2, synth, 0)
    t = energy.terms
    ell = lambda img, c, params: render_loss(face, img, c.landmarks, params, config.photometric,  # noqa: E731
                                             config.landmark)
    # E_id: the rig writes half of w2's own (layer-mean) pose into every layer
    slots = w2[:, :, 0:3]
    assert t["id"] == pytest.approx(config.lambda_id * (slots - 0.5 * slots.mean(1, keepdim=True)).square().sum()
                                    .item(), rel=1e-4)
    # E_edit: the edited face shows half the sampled pose (same v samples as the energy's seed)
    gen = torch.Generator().manual_seed(3)
    img_v = G.synthesis(G.mapping(torch.randn(4, G.z_dim, generator=gen), truncation_psi=config.truncation_psi))
    cv = face.estimate(img_v)
    edit = ell(img_v, cv, with_tau(cv.params, "pose", 0.5 * cv.params.rotation)).sum().item()
    assert edit > 0 and t["edit"] == pytest.approx(config.lambda_e * edit / 2, rel=1e-4)
    # E_inv: the edited face keeps w2's other parameters, compared with I in I's pose
    ci, c2 = face.estimate(image), face.estimate(synth)
    inv = ell(image, ci, with_tau(c2.params, "pose", ci.params.rotation)).sum().item()
    assert inv > 0 and t["inv"] == pytest.approx(config.lambda_inv * inv, rel=1e-4)
    assert t["recog_w"] == pytest.approx(config.lambda_rw * (ident(image) - ident(synth)).square().sum().item(),
                                         rel=1e-4)
    assert t["recog_v"] > 0 and total.item() == pytest.approx(sum(t.values()), rel=1e-5)
    # the ablations drop their terms
    energy = PIEEnergy(G, SlotRig("pose"), face, image, PIEConfig(recognition=False), identity=None)
    energy(w, image, 0)
    assert set(energy.terms) == {"id", "edit", "inv"} and energy.terms["id"] == 0.0
    energy = PIEEnergy(G, SlotRig("pose"), face, image, PIEConfig(modification=False), identity=ident)
    energy(w2, synth, 0)
    assert set(energy.terms) == {"recog_w", "recog_v"}
    with pytest.raises(ValueError, match="NaN"):
        PIEEnergy(G, SlotRig("pose"), face, image * float("nan"), config, identity=ident)
    with pytest.raises(ValueError, match="non-empty"):
        PIEEnergy(G, SlotRig("pose"), face, image[:0], config, identity=ident)


def test_invert_adds_the_energy_hook():
    """The hook's term is minimised with the synthesis energy: a strong pull moves w onto a target."""
    from gan_bridge.inversion import InversionConfig, Stage, invert
    from gan_bridge.networks.stylegan2 import Generator
    torch.manual_seed(0)
    G = Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()
    target_ws = torch.full((1, G.num_ws, G.w_dim), 0.3)
    calls = []

    def pull(ws, synth, step):
        calls.append(step)
        assert synth.shape == (1, 3, 32, 32)
        return 1e3 * (ws - target_ws).square().sum()

    config = InversionConfig(stages=(Stage("w+", 40, 0.05),), schedule="constant", loss="mse+vgg",
                             pixel_weight=1.0, perceptual_weight=0.0, perceptual_layers=("conv1_1",),
                             latent_noise=0.0, optimize_noise=False, w_avg_samples=100)
    image = torch.zeros(1, 3, 32, 32)
    plain = invert(G, image, config, progress=False)
    pulled = invert(G, image, config, progress=False, energy=pull)
    assert calls == list(range(40))
    assert (pulled.ws - target_ws).abs().mean() < 0.3 * (plain.ws - target_ws).abs().mean()


def test_embed_schedules_and_ablations(world):
    """PIE runs the hierarchical W -> W+ schedule with its energy; 'direct W+' one W+ stage of all steps;
    Image2StyleGAN no PIE energy at all."""
    from gan_bridge.networks.stylegan2 import Generator
    from gan_bridge.stylerig.pie import embed
    _, face = world
    torch.manual_seed(0)
    G = Generator(32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, n_mlp=2).eval()
    with torch.no_grad():
        image = G(torch.randn(1, 32), noise_mode="const").clamp(-1, 1)
    rig = SlotRig("pose", num_ws=G.num_ws, w_dim=G.w_dim)
    base = PIEConfig(steps_scale=0.004, recognition=False)
    full = embed(G, rig, face, image, base, progress=False)
    assert full.ws.shape == (1, G.num_ws, G.w_dim) and len(full.history) == 12  # 8 W + 4 W+ steps
    assert G.mapping.training is False and any(p.requires_grad for p in G.parameters())  # caller's G untouched
    direct = embed(G, rig, face, image, replace(base, hierarchical=False), progress=False)
    assert direct.w is None and len(direct.history) == 12
    plain = embed(G, rig, face, image, PIEConfig(preset="image2stylegan", steps_scale=0.002, modification=False,
                                                  recognition=False), progress=False)
    assert len(plain.history) == 10
    # the same schedule without the energy: the PIE energy's terms are part of the minimised loss
    bare = embed(G, rig, face, image, replace(base, modification=False), progress=False)
    assert full.history[0][1] > bare.history[0][1]


# ---- edits --------------------------------------------------------------------------------------------
def test_edit_spec_targets(world):
    _, face = world
    model = face.model
    spec = EditSpec(yaw=20, expression={"smile": 1.0, "jaw_open": 0.5}, light={2: 0.5}, light_scale=2.0)
    assert spec.modes() == ["pose", "lighting", "expression"]
    rot = torch.tensor([[0.1, 0.0, 0.0]])
    assert torch.allclose(target_tau(rot, "pose", spec, model), torch.tensor([[0.1 + math.radians(20), 0, 0]]))
    expr = target_tau(torch.zeros(1, model.expression_dim), "expression", spec, model)
    names = model.expression_names
    assert expr[0, names.index("smile_left")] == 1 and expr[0, names.index("smile_right")] == 1
    assert expr[0, names.index("jaw_open")] == 0.5 and expr.sum() == 2.5
    light = torch.zeros(1, 27)
    light.view(1, 3, 9)[..., 0] = 2.0
    out = target_tau(light, "lighting", spec, model).view(3, 9)
    assert torch.allclose(out[:, 2], torch.full((3,), 2.0)) and torch.allclose(out[:, 0], torch.full((3,), 4.0))
    with pytest.raises(ValueError, match="no expression"):
        target_tau(torch.zeros(1, model.expression_dim), "expression", EditSpec(expression={"grin": 1}), model)
    with pytest.raises(ValueError, match="1..8"):
        target_tau(light, "lighting", EditSpec(light={0: 1.0}), model)
    assert EditSpec().modes() == []
    with pytest.raises(ValueError, match="unknown edit keys"):
        EditSpec.from_dict({"yawn": 1})
    with pytest.raises(ValueError, match="finite"):
        EditSpec(yaw=float("nan"))


def test_feedback_corrects_an_under_editing_rig(world):
    """A rig that applies half the wanted pose: feedback (theta + (theta - theta_est)) gets to 3/4."""
    G, face = world
    w = _codes(G, 1, 30)
    target = torch.tensor([[0.2, -0.1, 0.05]])
    rig = SlotRig("pose", gain=0.5)
    plain = tau(face.estimate(G.synthesis(apply_edit(G, rig, face, w, target, feedback=False))).params, "pose")
    fed = tau(face.estimate(G.synthesis(apply_edit(G, rig, face, w, target, feedback=True))).params, "pose")
    assert torch.allclose(plain, 0.5 * target, atol=1e-6)
    assert torch.allclose(fed, 0.75 * target, atol=1e-6)


def test_sequential_edits_apply_each_mode_in_turn(world):
    G, face = world
    w = _codes(G, 1, 31)
    rigs = {m: SlotRig(m) for m in ("pose", "lighting", "expression")}
    spec = EditSpec(yaw=10, expression={"jaw_open": 0.3}, light={2: 0.1})
    steps = sequential_edit(G, rigs, face, w, spec)
    assert [s[0] for s in steps] == ["pose", "lighting", "expression"]
    final = face.estimate(steps[-1][3]).params
    start = face.estimate(G.synthesis(w)).params
    assert torch.allclose(final.rotation, start.rotation + torch.tensor([[math.radians(10), 0, 0]]), atol=1e-5)
    assert final.expression[0, face.model.expression_names.index("jaw_open")] == pytest.approx(0.3, abs=1e-5)
    assert final.lighting.view(3, 9)[0, 2] == pytest.approx(0.1 * final.lighting[0, 0].item(), abs=1e-5)
    with pytest.raises(ValueError, match="no lighting RigNet"):
        sequential_edit(G, {"pose": rigs["pose"]}, face, w, spec)


# ---- measurements -------------------------------------------------------------------------------------
def test_measurement_known_answers(world):
    from gan_bridge.stylerig.evaluate import block_changes, edit_error, markdown_table, measure_edits
    yaw = torch.tensor([[math.radians(10), 0.0, 0.0]])
    pitch = torch.tensor([[0.0, math.radians(10), 0.0]])
    assert edit_error("pose", yaw, torch.zeros(1, 3)).item() == pytest.approx(10.0, abs=1e-3)
    both = edit_error("pose", yaw, pitch).item()  # two 10 degree turns about different axes
    assert 14.0 < both < 14.2
    light = torch.zeros(1, 27)
    light.view(3, 9)[:, 0] = 2.0
    off = light.clone()
    off.view(3, 9)[:, 4] = 1.0
    assert edit_error("lighting", light, off).item() == pytest.approx(math.sqrt(0.25 / 9), rel=1e-5)
    G, face = world
    w = _codes(G, 2, 40)
    p = face.estimate(G.synthesis(w)).params
    changes = block_changes(p, with_tau(p, "pose", p.rotation + 0.1), "expression")
    assert set(changes) == {"identity", "rotation", "lighting"} and changes["rotation"].min() > 5
    ident = _PoolIdentity()
    targets = torch.tensor([[0.2, 0.0, 0.0], [0.0, -0.1, 0.0]])
    perfect = measure_edits(G, SlotRig("pose"), face, w, G.synthesis(w), targets, identity=ident)
    assert len(perfect["edit_error"]) == 4 and max(perfect["edit_error"]) < 1e-2
    assert max(perfect["changed_expression"]) < 1e-6 and max(perfect["changed_identity"]) < 1e-6
    half = measure_edits(G, SlotRig("pose", gain=0.5), face, w, G.synthesis(w), targets, identity=ident,
                         feedback=False)
    expected = [math.degrees(0.1)] * 2 + [math.degrees(0.05)] * 2
    assert half["edit_error"] == pytest.approx(expected, rel=1e-3)
    unedited = measure_edits(G, SlotRig("pose"), face, w, G.synthesis(w), targets, identity=ident, edit=False)
    gaps = [edit_error("pose", t[None].expand(2, -1), p.rotation) for t in targets]
    assert unedited["edit_error"] == pytest.approx(torch.cat(gaps).tolist(), rel=1e-4)
    assert max(unedited["recognition"]) < 1e-9 and max(unedited["changed_identity"]) < 1e-6
    shifted = with_tau(p, "expression", p.expression + 0.5)  # a "truth" half a unit off in expression
    vs = measure_edits(G, SlotRig("pose"), face, w, G.synthesis(w), targets, truth=shifted, identity=ident)
    assert max(vs["changed_expression"]) < 1e-6
    assert vs["vs_truth_expression"] == pytest.approx([0.5] * 4, abs=1e-5)
    table = markdown_table({"pie": {"psnr": 20.0, "edit_error": 1.5}, "latents": {"edit_error": 2.0}})
    assert table.splitlines()[0] == "| | psnr | edit_error |" and "| latents |  | 2.000 |" in table


def test_shipped_world_rignets_edit_pose_of_held_out_world_faces():
    """The committed RigNets (scripts/train_stylerig.sh) fit the world StyleGAN2 and move held-out generated faces
    toward a target pose, which leaving the codes unedited does not."""
    from gan_bridge.assets import asset_path
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.networks.stylegan2 import load_generator
    from gan_bridge.stylerig.evaluate import evaluate_latents, sample_targets
    G = load_generator(asset_path("world_stylegan2_32.pt")).eval().requires_grad_(False)
    rignets = load_rignets(asset_path("world_rignets_32"))
    assert set(rignets) == {"pose", "lighting", "expression"}
    for net in rignets.values():
        net.check_generator(G)
        assert "lr: 0.0005" in torch.load(asset_path(f"world_rignets_32/{net.mode}.pt"), weights_only=True)["recipe"]
    face = RigFace(load_encoder(None, "open"))
    targets = sample_targets(G, face, "pose", 2, seed=0)
    identity = lambda images, landmarks: images.flatten(1)[:, :8]  # noqa: E731  (recognition is not checked here)
    still = evaluate_latents(G, rignets["pose"], face, 8, targets, identity=identity, edit=False)
    edited = evaluate_latents(G, rignets["pose"], face, 8, targets, identity=identity)
    assert edited["edit_error"] < 0.8 * still["edit_error"]
