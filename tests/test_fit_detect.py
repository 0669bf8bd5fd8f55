"""Face detection: dlib (default) and MediaPipe, on real photos of ../shared (skipped without them)."""
import json
import sys

import numpy as np
import pytest

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
