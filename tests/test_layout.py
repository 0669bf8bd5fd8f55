"""Parameter layouts (morph3d.model.layout): a model's plain layout, partial layouts over a base, padding
and refusals, and the Deep3DFaceRecon preset against hand-worked numbers."""
import math

import pytest
import torch

from conftest import tiny_canonical
from morph3d.model import (DEEP3D_DIM, Block, FaceParams, MorphableModel, ParamLayout, deep3d_camera, deep3d_layout,
                           from_deep3d, to_deep3d)


@pytest.fixture(scope="module")
def tiny():
    return MorphableModel(tiny_canonical())


def _random_params(model, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = model.default_params(batch)
    for t in p.tensors().values():
        t.add_(0.1 * torch.randn(t.shape, generator=g))
    return p


def test_model_layout_round_trips(tiny):
    layout = ParamLayout.for_model(tiny)
    assert layout.dim == tiny.identity_dim + tiny.expression_dim + tiny.albedo_dim + 3 + 3 + 27
    assert [b.label for b in layout.blocks] == ["identity", "expression", "texture", "rotation", "translation",
                                                "lighting"]
    p = _random_params(tiny)
    vec = layout.flatten(p)
    assert vec.shape == (3, layout.dim)
    back = layout.unflatten(vec, camera=p.camera)
    for name, t in p.tensors().items():
        torch.testing.assert_close(getattr(back, name), t)
    parts = layout.split(vec)
    torch.testing.assert_close(parts["translation"], p.translation)
    assert parts["lighting"].data_ptr() == vec[:, layout.slices["lighting"]].data_ptr()  # views, not copies


def test_partial_layout_fills_the_rest_from_a_base(tiny):
    layout = ParamLayout.for_model(tiny, blocks=("expression", "rotation"))
    assert layout.dim == tiny.expression_dim + 3
    base = _random_params(tiny, seed=1)
    vec = torch.zeros(3, layout.dim)
    vec[:, -3:] = torch.tensor([0.1, 0.2, 0.3])
    p = layout.unflatten(vec, base=base)
    torch.testing.assert_close(p.identity, base.identity)
    torch.testing.assert_close(p.expression, torch.zeros(3, tiny.expression_dim))
    torch.testing.assert_close(p.rotation, torch.tensor([[0.1, 0.2, 0.3]]).expand(3, 3))
    assert p.camera is base.camera
    # without a base: neutral faces 500 mm in front of a default 224 x 224 camera
    q = layout.unflatten(vec)
    assert q.translation[0].tolist() == [0.0, 0.0, -500.0] and q.camera.image_size == (224, 224)
    assert q.identity.shape == (3, tiny.identity_dim)
    with pytest.raises(ValueError, match="batch 3, the vectors 2"):
        layout.unflatten(vec[:2], base=base)


def test_truncated_blocks_pad_and_refuse_to_drop_coefficients(tiny):
    layout = ParamLayout.for_model(tiny, blocks=(("identity", 2), ("expression", 5)))
    p = tiny.default_params(1)
    p.expression[:] = torch.tensor([0.3, -0.2])
    vec = layout.flatten(p)
    assert vec.shape == (1, 7) and vec[0, 2:].tolist() == pytest.approx([0.3, -0.2, 0, 0, 0])
    p.identity[0, 2] = 1.0
    with pytest.raises(ValueError, match="identity uses 3 components; the 7-dim layout holds 2"):
        layout.flatten(p)
    big = torch.zeros(1, 7)
    big[0, 6] = 1.0
    with pytest.raises(ValueError, match="only 2 expression components"):
        layout.unflatten(big)


def test_layout_checks_its_input(tiny):
    layout = ParamLayout.for_model(tiny)
    with pytest.raises(ValueError, match=rf"expected \(B, {layout.dim}\)"):
        layout.unflatten(torch.zeros(2, layout.dim + 1))
    with pytest.raises(ValueError, match="unknown FaceParams field"):
        ParamLayout.for_model(tiny, blocks=("shape",))
    with pytest.raises(ValueError, match="distinct fields"):
        ParamLayout([Block("rotation", 3), Block("rotation", 3, label="again")])
    with pytest.raises(ValueError, match="no articulation"):
        ParamLayout([Block("articulation", 6)]).flatten(tiny.default_params(1))


def test_articulation_block_round_trips():
    layout = ParamLayout([Block("articulation", 6), Block("rotation", 3)], dims={"identity": 2, "expression": 1,
                                                                                "texture": 0})
    vec = torch.arange(18, dtype=torch.float32).reshape(2, 9) / 10
    p = layout.unflatten(vec)
    assert p.articulation.shape == (2, 2, 3) and p.identity.shape == (2, 2)
    torch.testing.assert_close(layout.flatten(p), vec)


def test_deep3d_preset_numbers():
    layout = deep3d_layout()
    assert layout.dim == DEEP3D_DIM
    assert layout.slices["angles"] == slice(224, 227) and layout.slices["lighting"] == slice(227, 254)
    coeffs = torch.zeros(1, DEEP3D_DIM, dtype=torch.float64)
    coeffs[0, 224:227] = torch.tensor([0.1, 0.2, 0.3])      # their pitch, yaw, roll
    coeffs[0, 254:257] = torch.tensor([0.05, -0.02, 0.5])   # 0.1 m units, camera 10 units away
    p = from_deep3d(coeffs, "bfm_front", (80, 64, 80))
    torch.testing.assert_close(p.rotation, torch.tensor([[0.2, 0.1, 0.3]], dtype=torch.float64))
    torch.testing.assert_close(p.translation, torch.tensor([[5.0, -2.0, -950.0]], dtype=torch.float64))
    # gamma = 0 is their ambient 0.8: a constant radiance, the same in all three channels
    light = p.lighting.reshape(3, 9)
    assert float(light[0, 0]) == pytest.approx(0.8 * math.pi * math.pi / math.pi)
    torch.testing.assert_close(light[:, 1:], torch.zeros(3, 8, dtype=torch.float64))
    cam = deep3d_camera(1, dtype=torch.float64)
    assert p.camera.image_size == (224, 224) and float(cam.focal[0]) == 1015.0
    torch.testing.assert_close(p.camera.principal, cam.principal)
    torch.testing.assert_close(to_deep3d(p, "bfm_front"), coeffs)
    torch.testing.assert_close(layout.flatten(p), coeffs)


def test_deep3d_is_the_same_layout_object_as_the_functions():
    g = torch.Generator().manual_seed(5)
    coeffs = 0.3 * torch.randn(2, DEEP3D_DIM, generator=g, dtype=torch.float64)
    via_layout = deep3d_layout((199, 100, 199)).unflatten(coeffs, camera=deep3d_camera(2, dtype=torch.float64))
    via_function = from_deep3d(coeffs, "bfm2009", (199, 100, 199))
    for name, t in via_function.tensors().items():
        torch.testing.assert_close(getattr(via_layout, name), t)
    assert via_function.identity.shape == (2, 199)
    assert isinstance(via_function, FaceParams)
