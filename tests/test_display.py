"""morph3d.display: pictures for people, apart from the differentiable renderer (which never imports PIL)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import morph3d.render
from morph3d import display
from render_fixtures import sphere_model


def test_importing_the_renderer_and_model_does_not_import_pil():
    code = ("import sys, morph3d.render, morph3d.model; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'trimesh')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_moved_names_stay_importable_from_render():
    assert morph3d.render.contact_sheet is display.contact_sheet
    assert morph3d.render.depth_to_rgb is display.depth_to_rgb
    assert morph3d.render.srgb_to_linear is display.srgb_to_linear
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        morph3d.render.no_such_thing  # noqa: B018


def test_colour_maps_are_displayable():
    depth = torch.zeros(1, 1, 4, 5)
    depth[0, 0, 1:3, 1:4] = torch.tensor([[400.0, 410.0, 420.0], [430.0, 440.0, 450.0]])
    rgb = display.depth_to_rgb(depth)
    assert rgb.shape == (1, 3, 4, 5) and float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert float(rgb[0, :, 1, 1].sum()) > float(rgb[0, :, 2, 3].sum())  # near is bright
    labels = torch.tensor([[[0, 1], [2, 11]]])
    seg = display.segmentation_to_rgb(labels, num_classes=12)
    torch.testing.assert_close(seg[:, 0, 0], torch.zeros(3))
    assert display.segment_palette(12).shape == (12, 3)
    wheel = display.flow_wheel(9)
    assert wheel.shape == (3, 9, 9)
    img = display.draw_points(torch.zeros(3, 10, 10), torch.tensor([[5.0, 5.0], [float("nan"), 1.0]]),
                              torch.tensor([1.0, 0.0, 0.0]), radius=1.0)
    assert img[0, 5, 5] == 1.0 and img[0, 5, 6] == 1.0 and img[0, 0, 0] == 0.0


def test_contact_sheet_round_trip(tmp_path):
    panels = [("a", torch.rand(3, 20, 30)), ("b", torch.rand(1, 20, 30))]
    sheet = display.contact_sheet(panels, columns=2, title="t", legend=[("skin", (1.0, 0.5, 0.0))])
    path = display.save_png(sheet, tmp_path / "s.png")
    img = Image.open(path)
    img.load()
    boxes = json.loads(img.text["panels"])
    assert [b["label"] for b in boxes] == ["a", "b"]
    left, top, right, bottom = boxes[0]["box"]
    np.testing.assert_array_equal(np.asarray(img)[top:bottom, left:right], display.to_uint8(panels[0][1]))
    with pytest.raises(ValueError, match=".png"):
        display.save_png(sheet, tmp_path / "s.jpg")


def test_overlay_draws_the_fit_over_the_photo():
    model = sphere_model()
    params = model.default_params(1, (64, 64))
    params.translation[:, 2] = -400.0
    fitted = model(params).landmarks_2d.detach().numpy()
    given = fitted + 1.0
    photo = np.full((64, 64, 3), 30, np.uint8)
    out = display.draw_overlay(model, photo, params, fitted, given, lit=False)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = (out != photo).any(-1)
    assert changed[32, 32] and not changed[0, 0]  # the face is blended in, the corners untouched
    k = int(np.flatnonzero(np.isfinite(fitted[0]).all(1))[0])
    x, y = np.round(fitted[0, k]).astype(int)
    assert tuple(out[y, x]) == display.overlay.FITTED_COLOUR
    lit = display.draw_overlay(model, photo, params, fitted, given, lit=True)
    assert not np.array_equal(lit, out)  # ambient light differs from the studio light
