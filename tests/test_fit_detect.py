"""Face detection: the auto cascade (default), dlib and MediaPipe, on real photos of ../shared (skipped without)."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from morph3d.fitting import MissingDependencyError, NoFaceError, detect_faces, load_image, nme
from morph3d.fitting import detect as detect_module


@pytest.fixture(scope="module")
def faces():
    manifest = shared_path("data", "faces", "manifest.json")
    entries = {e["id"]: e for e in json.loads(manifest.read_text())["entries"]}
    return manifest.parent, entries


def test_dlib_finds_the_annotated_face(faces):
    pytest.importorskip("dlib")
    root, entries = faces
    e = entries["lfpw_train_image_0002"]
    found = detect_faces(load_image(root / e["file"]), "dlib")
    assert len(found) == 1
    assert nme(found[0].landmarks, np.array(e["landmarks68"])) < 0.05  # measured 1.5 %
    x0, y0, x1, y1 = found[0].box
    gt = np.array(e["landmarks68"])
    assert x0 < gt[:, 0].mean() < x1 and y0 < gt[:, 1].mean() < y1


def test_all_faces_largest_first(faces):
    pytest.importorskip("dlib")
    root, entries = faces
    image = load_image(root / entries["dlib_2008_002506_0"]["file"])  # three people
    every = detect_faces(image, "dlib", all_faces=True)
    assert len(every) == 3
    areas = [f.area for f in every]
    assert areas == sorted(areas, reverse=True)
    one = detect_faces(image, "dlib")
    assert len(one) == 1 and one[0].area == areas[0]


def test_no_face_is_a_clear_error():
    pytest.importorskip("dlib")
    with pytest.raises(NoFaceError, match="blank.png: no face found by the dlib detector"):
        detect_faces(np.full((120, 160, 3), 90, np.uint8), "dlib", source="blank.png")
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(np.zeros((8, 8, 3), np.uint8), "haar")


def test_missing_package_names_the_extra(monkeypatch):
    detect_module._dlib_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install -e \.\[detect\]"):
        detect_faces(np.zeros((8, 8, 3), np.uint8), "dlib")
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(MissingDependencyError, match=r"pip install -e \.\[mediapipe\]"):
        detect_faces(np.zeros((8, 8, 3), np.uint8), "mediapipe")
    detect_module._dlib_models.cache_clear()


def test_mediapipe_landmarks_match_the_annotation(faces):
    pytest.importorskip("mediapipe")
    if not detect_module.MEDIAPIPE_MAP.is_file():
        pytest.skip("assets/mediapipe_ibug68.json is not built")
    root, entries = faces
    e = entries["lfpw_train_image_0002"]
    found = detect_faces(load_image(root / e["file"]), "mediapipe")
    assert len(found) == 1
    assert nme(found[0].landmarks, np.array(e["landmarks68"])) < 0.10


def _load(faces, face_id):
    root, entries = faces
    e = entries[face_id]
    return load_image(root / e["file"]), np.array(e["landmarks68"])


@pytest.mark.shared
def test_auto_finds_a_turned_face_that_hog_misses(faces):
    pytest.importorskip("dlib")
    pytest.importorskip("mediapipe")
    image, gt = _load(faces, "300vw_401_000731")  # three-quarter view, looking down
    with pytest.raises(NoFaceError):
        detect_faces(image, "dlib")
    found = detect_faces(image, "auto")
    assert len(found) == 1 and found[0].source == "mediapipe"
    assert found[0].mesh.shape == (468, 2)
    assert nme(found[0].landmarks, gt, "box") < 0.065  # measured 4.9 %


@pytest.mark.shared
def test_auto_keeps_dlib_landmarks_where_hog_finds_the_face(faces):
    pytest.importorskip("dlib")
    pytest.importorskip("mediapipe")
    image, _ = _load(faces, "300wlp_IBUG_image_008_1_0")  # yaw 44 degrees: dlib 1.6 %, MediaPipe 4.2 %
    auto, hog = detect_faces(image, "auto"), detect_faces(image, "dlib")
    assert auto[0].source == "hog/dlib68" and auto[0].mesh is None
    np.testing.assert_array_equal(auto[0].landmarks, hog[0].landmarks)
    root, entries = faces
    group = load_image(root / entries["dlib_2008_002506_0"]["file"])  # MediaPipe's faces duplicate HOG's
    assert [d.source for d in detect_faces(group, "auto", all_faces=True)] == ["hog/dlib68"] * 3


@pytest.mark.shared
def test_cnn_rescues_what_hog_and_mediapipe_miss(faces, monkeypatch):
    pytest.importorskip("dlib")
    pytest.importorskip("mediapipe")
    image, gt = _load(faces, "300vw_401_000731")
    small = np.asarray(Image.fromarray(image).resize((350, 256), Image.BILINEAR))  # half size: a faster CNN
    monkeypatch.setattr(detect_module, "_detect_mediapipe", lambda image, max_faces: [])  # as if it missed
    found = detect_faces(small, "auto")
    assert found[0].source == "cnn/mediapipe"
    assert nme(found[0].landmarks, (gt + 0.5) * 0.5 - 0.5, "box") < 0.075  # measured 5.6 %


def test_auto_without_mediapipe_is_hog_then_cnn(monkeypatch):
    pytest.importorskip("dlib")
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(NoFaceError, match="blank.png: no face found by the auto detector"):
        detect_faces(np.full((90, 120, 3), 90, np.uint8), "auto", source="blank.png")
    detect_module._dlib_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(MissingDependencyError, match=r"pip install -e \.\[detect\]"):
        detect_faces(np.zeros((8, 8, 3), np.uint8), "auto")
    detect_module._dlib_models.cache_clear()
    detect_module._dlib_cnn.cache_clear()


@pytest.mark.shared
def test_mediapipe_in_box_maps_back_to_the_image(faces):
    """Face Mesh on a padded crop: the points land on the face, in full-image pixels."""
    pytest.importorskip("mediapipe")
    image, gt = _load(faces, "lfpw_train_image_0002")
    box = np.concatenate([gt.min(0), gt.max(0)])
    mesh = detect_module.mediapipe_in_box(image, box)
    assert mesh.shape == (468, 2)
    assert nme(detect_module.mesh_to_ibug68(mesh), gt, "box") < 0.04  # whole image: 2.7 %
    assert detect_module.mediapipe_in_box(image, [-500, -500, -400, -400]) is None  # box off the image


def test_mediapipe_native_logs_do_not_reach_the_user():
    """MediaPipe's C++ logs (absl / TFLite notes on fd 2) are silenced; Python's stderr still works."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("skimage")
    import subprocess
    code = ("import sys; from skimage import data; from morph3d.fitting import detect_faces; "
            "f = detect_faces(data.astronaut(), 'mediapipe'); print(len(f)); print('after', file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"
    assert run.stderr.strip() == "after", run.stderr
