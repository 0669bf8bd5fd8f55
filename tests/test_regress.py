"""Image -> parameter regressors (morph3d.regress): the framing and target encoding, the small network and
its weight files, the shipped weights on a rendered face, and Deep3DFaceRecon's R-Net against a functional
composition of its checkpoint's tensors (a generated checkpoint in their key layout)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from morph3d import assets
from morph3d.model import Camera, FaceParams, euler_to_matrix, from_deep3d, load_model
from morph3d.regress import (SmallRegressor, SmallRegressorConfig, crop_boxes, crop_cameras, crop_images,
                             decode_targets, encode_targets, target_dim, target_layout, to_crop_pixels)
from morph3d.regress.deep3d import (HEAD_SIZES, Deep3DReconNet, crop_to_image_camera, deep3d_crop, five_points,
                                    load_deep3d, predict_deep3d)
from morph3d.regress.predict import DEFAULT_WEIGHTS, Regressor, load_regressor
from morph3d.regress.resnet import ResNet50
from morph3d.regress.small import load_small_regressor, save_small_regressor


@pytest.fixture(scope="module")
def open_model():
    return load_model("open")


def _params(model, batch=4, seed=0, size=96):
    g = torch.Generator().manual_seed(seed)
    p = model.default_params(batch, image_size=(size, size))
    p.identity.copy_(torch.randn(p.identity.shape, generator=g))
    p.expression.copy_(torch.rand(p.expression.shape, generator=g) * 0.5)
    p.rotation.copy_((torch.rand(batch, 3, generator=g) * 2 - 1) * torch.tensor([0.6, 0.3, 0.2]))
    p.translation.copy_(torch.stack([torch.randn(batch, generator=g) * 10, torch.randn(batch, generator=g) * 10,
                                     -600 - 100 * torch.rand(batch, generator=g)], 1))
    return p


def _landmarks(model, p):
    pts = model.landmarks(model.shape(p.identity, p.expression)) @ euler_to_matrix(p.rotation).transpose(1, 2)
    return p.camera.project(pts + p.translation[:, None])


# ---- framing and targets -------------------------------------------------------------------------
def test_targets_round_trip_and_are_focal_free(open_model):
    p = _params(open_model)
    lm = _landmarks(open_model, p)
    corner, side = crop_boxes(lm)
    cam = crop_cameras(p.camera, corner, side, 64)
    crop_params = FaceParams(**p.tensors(), camera=cam)
    t = encode_targets(crop_params, open_model)
    assert t.shape == (4, target_dim(open_model)) == (4, 40 + 30 + 10 + 3 + 3 + 27)
    lay = target_layout(open_model)
    torch.testing.assert_close(t[:, lay["rotation"]], p.rotation)
    back = decode_targets(t, open_model, cam)
    crop_lm = to_crop_pixels(lm, corner, side, 64)
    torch.testing.assert_close(_landmarks(open_model, back), crop_lm, atol=1e-3, rtol=0)
    # another focal length: the origin lands on the same pixel at the same scale, so landmarks barely move
    other = Camera(cam.focal * 2, cam.principal, cam.image_size)
    moved = (_landmarks(open_model, decode_targets(t, open_model, other)) - crop_lm).norm(dim=-1)
    assert 0 < moved.mean() < 0.05 * 64
    # the landmarks' box spans 1 / CROP_MARGIN of the crop
    span = (crop_lm.amax(1) - crop_lm.amin(1)).amax(-1)
    torch.testing.assert_close(span, torch.full((4,), 64 / 1.4), atol=1e-3, rtol=0)


def test_crop_images_follows_the_pixel_convention():
    img = torch.arange(2 * 3 * 20 * 30, dtype=torch.float32).reshape(2, 3, 20, 30)
    corner = torch.tensor([[4.0, 3.0], [10.0, 0.0]])
    out = crop_images(img, corner, torch.tensor([12.0, 12.0]), 12)  # 1:1, pixel-aligned: an exact copy
    torch.testing.assert_close(out[0], img[0, :, 3:15, 4:16])
    torch.testing.assert_close(out[1], img[1, :, 0:12, 10:22])
    half = crop_images(img, torch.zeros(2, 2), torch.tensor([20.0, 20.0]), 10)  # 2:1, pixel centres between
    torch.testing.assert_close(half[0, :, 0, 0], img[0, :, 0:2, 0:2].mean((1, 2)))


def test_crop_boxes_refuse_faces_without_landmarks():
    lm = torch.full((1, 68, 2), float("nan"))
    with pytest.raises(ValueError, match="no finite landmarks"):
        crop_boxes(lm)


# ---- the small network --------------------------------------------------------------------------
def test_small_regressor_shapes_and_weight_files(tmp_path, open_model):
    net = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 16), head=16, out_dim=113))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 113)
    assert torch.count_nonzero(net(torch.zeros(1, 3, 32, 32))) == 0  # starts at the mean target (zeros)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        net(torch.zeros(1, 3, 64, 64))
    net.set_target_statistics(torch.randn(50, 113) * 3 + 1)
    path = save_small_regressor(net, tmp_path / "w.pt", "open", "test")
    loaded, info = load_small_regressor(path)
    assert info["model"] == "open" and info["config"]["widths"] == [4, 4, 8, 8, 16]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), net.eval()(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not"):
        load_small_regressor(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a morph3d small-regressor"):
        load_small_regressor(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_small_regressor(tmp_path / "missing.pt")
    wrong = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 16), head=16, out_dim=50))
    with pytest.raises(ValueError, match="needs 113"):
        Regressor(open_model, wrong)


def test_shipped_regressor_recovers_a_rendered_pose(open_model):
    if not assets.path(DEFAULT_WEIGHTS).is_file():
        pytest.skip("regressor weights not shipped yet (scripts/train_regressor.sh)")
    from morph3d.render import linear_to_srgb, render_face
    reg = load_regressor(open_model)
    p = _params(open_model, batch=3, seed=3, size=160)
    p.rotation.copy_(torch.tensor([[0.5, 0.0, 0.0], [-0.4, 0.15, 0.1], [0.0, -0.2, -0.15]]))
    p.translation[:, 2] = -900.0
    g = torch.Generator().manual_seed(1)
    bg = F.interpolate(torch.rand(3, 3, 5, 5, generator=g), size=(160, 160), mode="bilinear")
    with torch.no_grad():
        r = render_face(open_model, p, outputs=("image", "landmarks"), background=bg)
    errors = []
    for k in range(3):
        image = (linear_to_srgb(r.image[k].clamp(0, 1)) * 255).round().byte().permute(1, 2, 0).numpy()
        pred = reg.predict(image, r.landmarks_2d[k].numpy())
        errors.append((pred.rotation[0] - p.rotation[k]).abs().max().item())
        lm = _landmarks(open_model, pred)[0]
        assert (lm - r.landmarks_2d[k]).norm(dim=-1).mean() < 0.04 * 160  # on the face
    assert math.degrees(max(errors)) < 10.0, [math.degrees(e) for e in errors]


# ---- ResNet-50 and Deep3DFaceRecon's R-Net ------------------------------------------------------
def test_resnet50_has_torchvision_keys():
    net = ResNet50(num_classes=1000)
    sd = net.state_dict()
    assert len(sd) == 320 and sum(p.numel() for p in net.parameters()) == 25_557_032  # torchvision's count
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer3.5.conv2.weight"].shape == (256, 256, 3, 3)
    assert sd["layer4.2.bn3.running_var"].shape == (2048,) and sd["fc.weight"].shape == (1000, 2048)
    assert "layer4.0.downsample.1.num_batches_tracked" in sd and "layer1.2.downsample.0.weight" not in sd


def _random_recon_state(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, t in Deep3DReconNet().state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(t.shape, generator=g)
        elif k.endswith((".bias", "running_mean")):
            state[k] = 0.1 * torch.randn(t.shape, generator=g)
        elif t.ndim == 1:  # BatchNorm weights
            state[k] = 0.5 + 0.5 * torch.rand(t.shape, generator=g)
        else:
            state[k] = torch.randn(t.shape, generator=g) * math.sqrt(2.0 / t[0].numel())
    return state


def _functional_recon(state: dict, x: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon's R-Net written out with torch.nn.functional over the checkpoint's tensors."""
    def bn(y, p):
        return F.batch_norm(y, state[p + ".running_mean"], state[p + ".running_var"], state[p + ".weight"],
                            state[p + ".bias"], False, 0.0, 1e-5)

    y = F.relu(bn(F.conv2d(x, state["backbone.conv1.weight"], stride=2, padding=3), "backbone.bn1"))
    y = F.max_pool2d(y, 3, 2, 1)
    for layer, blocks in zip(range(1, 5), (3, 4, 6, 3)):
        for b in range(blocks):
            p = f"backbone.layer{layer}.{b}"
            stride = 2 if (b == 0 and layer > 1) else 1
            z = F.relu(bn(F.conv2d(y, state[p + ".conv1.weight"]), p + ".bn1"))
            z = F.relu(bn(F.conv2d(z, state[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
            z = bn(F.conv2d(z, state[p + ".conv3.weight"]), p + ".bn3")
            short = bn(F.conv2d(y, state[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1") \
                if b == 0 else y
            y = F.relu(z + short)
    y = y.mean((2, 3), keepdim=True)
    return torch.cat([F.conv2d(y, state[f"final_layers.{i}.weight"], state[f"final_layers.{i}.bias"])
                      for i in range(7)], 1).flatten(1)


def test_deep3d_checkpoint_loads_and_matches_a_functional_forward(tmp_path):
    state = {f"{k}": v for k, v in _random_recon_state().items()}
    assert [state[f"final_layers.{i}.weight"].shape[0] for i in range(7)] == list(HEAD_SIZES)
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state, "epoch": 20}, path)  # the layout of their checkpoints
    net = load_deep3d(path)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = net(x)
        ref = _functional_recon(state, x)
    assert out.shape == (2, 257)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # the vector goes through morph3d's 257 layout: angles (224-226) are their [pitch, yaw, roll]
    p = from_deep3d(out, "bfm2009", (80, 64, 80))
    torch.testing.assert_close(p.rotation, out[:, [225, 224, 226]])
    torch.testing.assert_close(p.identity, out[:, :80])
    torch.testing.assert_close(p.expression, out[:, 80:144])


def test_deep3d_loader_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_deep3d(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00junk")
    with pytest.raises(ValueError, match="corrupt"):
        load_deep3d(tmp_path / "junk.pth")
    torch.save({"net_recog": {}}, tmp_path / "recog.pth")
    with pytest.raises(ValueError, match="no Deep3DFaceRecon R-Net"):
        load_deep3d(tmp_path / "recog.pth")
    state = _random_recon_state()
    del state["backbone.layer2.0.conv1.weight"]
    torch.save({"net_recon": state}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing backbone.layer2.0.conv1.weight"):
        load_deep3d(tmp_path / "partial.pth")


def test_deep3d_alignment_and_camera_round_trip():
    # five standard 3D points (0.1 m units) seen at 40 px per unit, origin projected to (210, 150)
    pts3 = np.array([[-0.31, 0.29, 0.1], [0.31, 0.29, 0.1], [0.0, 0.0, 0.5], [-0.25, -0.35, 0.1], [0.25, -0.35, 0.1]])
    pts2 = np.stack([210 + 40 * pts3[:, 0], 150 - 40 * pts3[:, 1]], 1)
    crop = deep3d_crop(pts2, pts3)
    assert crop.size == 224 and crop.side == pytest.approx(224 * 40 / 102)
    assert crop.left + crop.side / 2 - 0.5 == pytest.approx(210)
    assert crop.top + crop.side / 2 - 0.5 == pytest.approx(150)
    lm68 = np.zeros((68, 2))
    lm68[[36, 39]], lm68[[42, 45]], lm68[30], lm68[48], lm68[54] = [1, 2], [5, 2], [3, 4], [2, 6], [4, 6]
    np.testing.assert_allclose(five_points(lm68), [[1, 2], [5, 2], [3, 4], [2, 6], [4, 6]])
    cam = Camera.create(1, (300, 400))
    there = crop.camera(cam, 0)
    back = crop_to_image_camera(there, crop, (300, 400))
    torch.testing.assert_close(back.focal, cam.focal)
    torch.testing.assert_close(back.principal, cam.principal)


def test_predict_deep3d_maps_to_the_photo_camera(tmp_path):
    net = Deep3DReconNet().eval()
    for layer in net.final_layers:  # a constant prediction: frontal, 1 m away, centred
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    pts3 = np.array([[-0.31, 0.29, 0.1], [0.31, 0.29, 0.1], [0.0, 0.0, 0.5], [-0.25, -0.35, 0.1], [0.25, -0.35, 0.1]])
    pts2 = np.stack([150 + 60 * pts3[:, 0], 120 - 60 * pts3[:, 1]], 1)
    image = np.zeros((240, 320, 3), np.uint8)
    params, coeffs = predict_deep3d(net, image, pts2, pts3, "bfm2009", (80, 64, 80))
    assert coeffs.shape == (1, 257) and params.camera.image_size == (240, 320)
    # the model origin (t = 0 in their frame: 1 m in front of the camera) projects to the aligned origin
    origin = params.camera.project(params.translation[:, None])[0, 0]
    # their principal point (112, 111) is half a pixel right of and above the crop's centre (111.5, 111.5)
    half = 0.5 * 60.0 / 102.0
    torch.testing.assert_close(origin, torch.tensor([150.0 + half, 120.0 - half]), atol=0.02, rtol=0)


# ---- the regressor as the landmark fit's start ---------------------------------------------------
def test_fitter_starts_from_given_parameters(open_model):
    from morph3d.fitting import LandmarkFitConfig
    from morph3d.regress.init import RegressorStartFitter
    p = _params(open_model, batch=2, seed=5, size=200)
    p.camera = Camera.create(2, (200, 200))  # the fit's own camera (focal 1.5 x 200 px)
    lm = _landmarks(open_model, p)
    still = RegressorStartFitter(open_model, LandmarkFitConfig(iterations=0, pose_iterations=0, contour="fixed"))
    r = still.fit(lm, (200, 200), start=p)  # no iterations: the result is the start
    torch.testing.assert_close(r.params.rotation, p.rotation, atol=1e-5, rtol=0)
    torch.testing.assert_close(r.params.translation, p.translation, atol=1e-3, rtol=0)
    torch.testing.assert_close(r.params.identity, p.identity.clamp(-4, 4), atol=1e-5, rtol=0)
    assert r.rms_px.max() < 1e-3
    fitter = RegressorStartFitter(open_model)
    off = p.clone()
    off.rotation.add_(torch.tensor([0.15, -0.1, 0.05]))
    off.identity.zero_()
    started = fitter.fit(lm, (200, 200), start=off)
    plain = fitter.fit(lm, (200, 200))
    assert started.rms_px.max() < 1.0 and plain.rms_px.max() < 1.0  # the priors keep a little residual
    assert (started.rms_px - plain.rms_px).abs().max() < 0.2
    with pytest.raises(ValueError, match="hold 2 faces"):
        fitter.fit(lm[:1], (200, 200), start=p)


def test_fit_cli_init_regressor(tmp_path, open_model):
    if not assets.path(DEFAULT_WEIGHTS).is_file():
        pytest.skip("regressor weights not shipped yet (scripts/train_regressor.sh)")
    import json

    from PIL import Image

    import morph3d.cli as cli
    from morph3d.render import linear_to_srgb, render_face
    p = _params(open_model, batch=1, seed=7, size=160)
    p.camera = Camera.create(1, (160, 160))
    p.translation[0] = torch.tensor([0.0, 0.0, -800.0])
    with torch.no_grad():
        r = render_face(open_model, p, outputs=("image", "landmarks"), background=torch.full((3, 160, 160), 0.3))
    Image.fromarray((linear_to_srgb(r.image[0].clamp(0, 1)) * 255).round().byte().permute(1, 2, 0).numpy()).save(
        tmp_path / "face.png")
    np.save(tmp_path / "face.npy", r.landmarks_2d[0].numpy().astype(np.float64))
    out = tmp_path / "out"
    args = ["fit", str(tmp_path / "face.png"), "--landmarks", str(tmp_path / "face.npy"), "--out", str(out),
            "--outputs", "json", "--threads", "1"]
    assert cli.main(args + ["--init", "regressor"]) == 0
    record = json.loads((out / "face.json").read_text())
    assert record["options"]["init"] == "regressor" and record["fit"]["rms_px"] < 1.5
    assert cli.main(args) == 0  # the default start is another fit: not skipped as done
    assert "init" not in json.loads((out / "face.json").read_text())["options"]
    sfm_like = tmp_path / "tiny.npz"
    from conftest import tiny_canonical
    from morph3d.model import canonical
    canonical.save(tiny_canonical(), sfm_like)
    assert cli.main(args + ["--init", "regressor", "--model", str(sfm_like)]) == 2  # weights are for 'open'


def test_deep3d_five_points_from_a_model_and_bad_landmarks():
    from conftest import tiny_canonical
    from morph3d.model import MorphableModel
    from morph3d.regress.deep3d import model_five_points
    tiny = MorphableModel(tiny_canonical())
    pts = model_five_points(tiny)
    lm = tiny.landmarks(tiny.vertices_mean[None])[0].double().numpy()
    np.testing.assert_allclose(pts, five_points(lm) / 100.0)
    with pytest.raises(ValueError, match="finite 2D landmarks"):
        deep3d_crop(np.full((68, 2), np.nan), pts)


def test_predict_refuses_bad_inputs(open_model):
    net = SmallRegressor(SmallRegressorConfig(input_size=32, widths=(4, 4, 8, 8, 16), head=16, out_dim=113))
    reg = Regressor(open_model, net)
    image = np.zeros((50, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(68, 2\) or \(F, 68, 2\)"):
        reg.predict(image, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="uint8 RGB image"):
        reg.predict(image.astype(np.float32), np.zeros((68, 2)))
    assert reg.predict(image, np.random.default_rng(0).uniform(5, 35, (2, 68, 2))).batch_size == 2
