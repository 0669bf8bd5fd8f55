"""Image loading and landmark files of the fitting pipeline."""
import json

import numpy as np
import pytest
from PIL import Image

from morph3d.fitting import ImageLoadError, LandmarkFileError, load_image, read_landmarks, write_pts
from morph3d.fitting.images import image_size
from morph3d.fitting.landmarks_io import check_in_image, find_landmark_file


def _pattern(h=12, w=16):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 15, y * 20, (x + y) * 7], axis=-1).astype(np.uint8)


# ---- images --------------------------------------------------------------------------------
def test_rgb_png_round_trip(tmp_path):
    img = _pattern()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, img)


def test_grey_palette_and_rgba_become_rgb(tmp_path):
    grey = (np.arange(12 * 16).reshape(12, 16) % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (12, 16, 3) and np.array_equal(g[..., 0], grey) and np.array_equal(g[..., 2], grey)
    Image.fromarray(_pattern()).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (12, 16, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :2, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    t = load_image(tmp_path / "t.png")
    assert tuple(t[0, 0]) == (200, 0, 0) and tuple(t[0, 3]) == (255, 255, 255)  # over white


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    a = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [128, 1]])


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :5] = 255  # white stripe on the left of the stored pixels
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90-degree clockwise turn
    pil.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the stripe is now at the top


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message):
        load_image(p)


def test_truncated_missing_directory_and_huge(tmp_path):
    Image.fromarray(_pattern(64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(tmp_path / "ok.png", max_megapixels=0.001)


# ---- landmark files ------------------------------------------------------------------------
def _points(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(10, 90, (68, 2)).round(3)


def test_pts_is_one_based(tmp_path):
    pts = _points()
    lines = "\n".join(f"{x + 1} {y + 1}" for x, y in pts)
    (tmp_path / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{lines}\n}}\n")
    np.testing.assert_allclose(read_landmarks(tmp_path / "a.pts"), pts)
    write_pts(tmp_path / "b.pts", pts)
    assert (tmp_path / "b.pts").read_text().splitlines()[3].split() == [f"{pts[0, 0] + 1:.3f}", f"{pts[0, 1] + 1:.3f}"]
    np.testing.assert_allclose(read_landmarks(tmp_path / "b.pts"), pts, atol=1e-3)


def test_npy_and_json_are_zero_based(tmp_path):
    pts = _points(1)
    np.save(tmp_path / "a.npy", pts)
    np.testing.assert_array_equal(read_landmarks(tmp_path / "a.npy"), pts)
    (tmp_path / "a.json").write_text(json.dumps({"landmarks68": pts.tolist()}))
    np.testing.assert_array_equal(read_landmarks(tmp_path / "a.json"), pts)


@pytest.mark.parametrize("name,content,message", [
    ("a.pts", "version: 1\nn_points: 67\n{\n" + "1 2\n" * 67 + "}\n", "67 landmarks"),
    ("a.pts", "version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n", "n_points: 68 but the file lists 67"),
    ("a.pts", "1 2\n" * 68, "no '{'"),
    ("a.pts", "version: 1\n{\n" + "1 x\n" * 68 + "}\n", "non-numeric"),
    ("a.json", "{\"landmarks68\": [[1, 2]]}", "1 landmarks"),
    ("a.json", "{\"points\": []}", "'landmarks68'"),
    ("a.json", "{not json", "not valid JSON"),
    ("a.json", json.dumps({"landmarks68": [[1.0, 2.0]] * 67 + [None]}), "null"),
    ("a.txt", "1 2", "unknown landmark format"),
])
def test_bad_landmark_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(LandmarkFileError, match=message):
        read_landmarks(tmp_path / name)


def test_nan_wrong_shape_and_degenerate_arrays(tmp_path):
    pts = _points()
    pts[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", pts)
    with pytest.raises(LandmarkFileError, match=r"landmarks \[5\] are NaN"):
        read_landmarks(tmp_path / "nan.npy")
    np.save(tmp_path / "shape.npy", np.zeros((68, 3)))
    with pytest.raises(LandmarkFileError, match="pairs"):
        read_landmarks(tmp_path / "shape.npy")
    np.save(tmp_path / "flat.npy", np.ones((68, 2)))
    with pytest.raises(LandmarkFileError, match="degenerate"):
        read_landmarks(tmp_path / "flat.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(LandmarkFileError, match="not a readable .npy"):
        read_landmarks(tmp_path / "text.npy")
    with pytest.raises(LandmarkFileError, match="no such landmark file"):
        read_landmarks(tmp_path / "missing.pts")


def test_find_landmark_file_and_image_check(tmp_path):
    np.save(tmp_path / "face.npy", _points())
    assert find_landmark_file(tmp_path, "face") == tmp_path / "face.npy"
    with pytest.raises(LandmarkFileError, match="no landmark file other"):
        find_landmark_file(tmp_path, "other")
    (tmp_path / "face.json").write_text("{}")
    with pytest.raises(LandmarkFileError, match="several landmark files"):
        find_landmark_file(tmp_path, "face")
    check_in_image(_points(), (100, 100), "x")
    with pytest.raises(LandmarkFileError, match="far outside"):
        check_in_image(_points() + 1000, (100, 100), "x")


def test_image_size_reads_the_header_like_load_image(tmp_path):
    Image.fromarray(_pattern(12, 16)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png") == load_image(tmp_path / "a.png").shape[:2] == (12, 16)
    turned = Image.fromarray(_pattern(12, 16))
    exif = turned.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: a viewer shows it 16 high
    for name in ("r.jpg", "r.png"):
        turned.save(tmp_path / name, exif=exif)
        assert image_size(tmp_path / name) == load_image(tmp_path / name).shape[:2] == (16, 12)
    with pytest.raises(ImageLoadError, match="no such file"):
        image_size(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="megapixels"):
        image_size(tmp_path / "a.png", max_megapixels=1e-5)


def test_json_only_fit_from_landmark_files_decodes_no_pixels(tmp_path, monkeypatch):
    import torch

    from conftest import tiny_canonical
    from morph3d.fitting import FitPipeline, batch, plan_jobs
    from morph3d.model import MorphableModel
    from morph3d.render import render_face

    model = MorphableModel(tiny_canonical())
    p = model.default_params(1, image_size=(80, 96))
    with torch.no_grad():
        out = render_face(model, p, outputs=("image", "landmarks"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "marks").mkdir()
    Image.fromarray((out.image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        tmp_path / "photos" / "face.png")
    np.save(tmp_path / "marks" / "face.npy", out.landmarks_2d[0].numpy().astype(np.float64))
    jobs = plan_jobs(tmp_path / "photos", tmp_path / "marks")
    decoded = []
    monkeypatch.setattr(batch, "load_image", lambda path: decoded.append(path) or load_image(path))
    report = FitPipeline(model, "tiny", outputs=("json",)).run(jobs, tmp_path / "json", progress=False)
    assert len(report.done) == 1 and decoded == []
    assert json.loads((tmp_path / "json" / "face.json").read_text())["image_size"] == [80, 96]
    report = FitPipeline(model, "tiny", outputs=("json", "overlay")).run(jobs, tmp_path / "all", progress=False)
    assert len(report.done) == 1 and len(decoded) == 1
