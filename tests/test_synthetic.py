import math

import pytest
import torch

from morph3d.render import SyntheticFaces, smooth_noise
from morph3d.model import MorphableModel
from render_fixtures import sphere_canonical, sphere_model


@pytest.fixture(scope="module")
def model():
    return sphere_model(n_lat=16, n_lon=32)


def test_deterministic_given_the_seed(model):
    a = SyntheticFaces(model, image_size=48, batch_size=3, seed=7, backgrounds="noise")
    b = SyntheticFaces(model, image_size=48, batch_size=3, seed=7, backgrounds="noise")
    c = SyntheticFaces(model, image_size=48, batch_size=3, seed=8, backgrounds="noise")
    x, y, z = a.sample(), b.sample(), c.sample()
    for name, t in x.params.tensors().items():
        assert torch.equal(t, getattr(y.params, name)), name
    assert torch.equal(x.params.camera.focal, y.params.camera.focal)
    assert torch.equal(x.image, y.image) and torch.equal(x.segmentation, y.segmentation)
    assert not torch.equal(x.params.identity, z.params.identity) and not torch.equal(x.image, z.image)
    # sample() walks batch(0), batch(1), ...; iteration restarts at 0 and stops after num_batches
    second = a.sample()
    assert not torch.equal(second.image, x.image)
    torch.testing.assert_close(second.image, b.batch(1).image)
    it = SyntheticFaces(model, image_size=48, batch_size=3, seed=7, backgrounds="noise", num_batches=2)
    batches = list(it)
    assert len(batches) == 2 == len(it)
    torch.testing.assert_close(batches[0].image, x.image)


def test_labels_are_consistent(model):
    gen = SyntheticFaces(model, image_size=64, batch_size=4, seed=1, pose_range_deg=(30, 10, 5),
                         backgrounds="noise", expression_density=0.5)
    s = gen.batch(0)
    p = s.params
    b, h, w = 4, 64, 64
    assert s.image.shape == (b, 3, h, w) and s.mask.shape == (b, 1, h, w) and s.segmentation.dtype == torch.long
    assert s.image.min() >= 0 and s.image.max() <= 1
    geo = model(p)
    torch.testing.assert_close(s.landmarks_2d, geo.landmarks_2d)
    fg = s.depth > 0
    assert ((s.segmentation > 0) == fg).all()
    assert ((s.normals.abs().sum(1, keepdim=True) > 0) == fg).all()
    empty = (s.mask == 0).expand_as(s.image)
    torch.testing.assert_close(s.image[empty], s.background[empty].clamp(0, 1))
    # the face is framed: inside the image with a sensible size, and the landmarks mostly visible
    area = s.mask.mean(dim=(1, 2, 3))
    assert (area > 0.1).all() and (area < 0.8).all()
    assert s.landmark_visible.float().mean() > 0.5
    # parameters within their ranges
    deg = p.rotation * 180 / math.pi
    assert (deg.abs() <= torch.tensor([30.0, 10.0, 5.0]) + 1e-4).all()
    assert (p.expression >= 0).all() and (p.expression <= 1).all()
    assert p.lighting[:, 0].min() > 0.5 * math.sqrt(4 * math.pi) * 0.9
    assert (p.camera.focal >= 1.2 * 64 - 1e-3).all() and (p.camera.focal <= 2.5 * 64 + 1e-3).all()
    # depth is the distance the framing asked for: the sphere centre sits at -translation_z
    centre_depth = -p.translation[:, 2]
    assert ((s.depth.flatten(1).max(1).values - centre_depth).abs() < 80.0 + 1e-3).all()


def test_pca_expressions_and_given_backgrounds(model):
    g = torch.Generator().manual_seed(0)
    bgs = torch.rand(3, 3, 32, 32, generator=g)
    gen = SyntheticFaces(model, image_size=48, batch_size=6, seed=2, backgrounds=bgs, sigma=0.0)
    s = gen.sample()
    assert (s.params.identity == 0).all()
    resized = torch.nn.functional.interpolate(bgs, size=(48, 48), mode="bilinear", align_corners=False,
                                              antialias=True)
    for k in range(6):  # each face's background is one of the given images
        assert min(float((s.background[k] - r).abs().max()) for r in resized) < 1e-6
    # expressions: sparse blendshape weights in [0, 1], or N(0, sigma^2) PCA coefficients
    many = gen.sample_params(torch.Generator().manual_seed(3), 2000)
    active = (many.expression > 0).float().mean()
    assert abs(float(active) - 0.2) < 0.03 and many.expression.max() <= 1
    data = sphere_canonical(n_lat=16, n_lon=32)
    data["expression_kind"] = "pca"
    pca_gen = SyntheticFaces(MorphableModel(data), expression_sigma=2.0)
    pca = pca_gen.sample_params(torch.Generator().manual_seed(3), 2000)
    assert abs(float(pca.expression.std()) - 2.0) < 0.15 and abs(float(pca.expression.mean())) < 0.15
    noise = smooth_noise(torch.Generator().manual_seed(0), 2, (64, 64))
    assert noise.min() >= 0 and noise.max() <= 1
    assert noise.diff(dim=-1).abs().mean() < 0.05 < noise.std()  # smooth but not flat


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="image_size"):
        SyntheticFaces(model, image_size=4)
    with pytest.raises(ValueError, match="backgrounds"):
        SyntheticFaces(model, backgrounds="clouds")
    with pytest.raises(ValueError, match="focal_range"):
        SyntheticFaces(model, focal_range=(2.0, 1.0))
    with pytest.raises(TypeError, match="endless"):
        len(SyntheticFaces(model))
