"""The synthetic face world: determinism, exact ground truth, same-identity sets, splits, variety."""
import pytest
import torch
from torch.utils.data import DataLoader

from gan_bridge.face.layers import REGION_BACKGROUND, REGION_FACE, background
from gan_bridge.face.world import (FaceWorld, FaceWorldDataset, FaceWorldStream, WorldBatch, WorldConfig,
                                   collate_world)
from gan_bridge.train import DistInfo, sharded_loader
from morph3d.render import linear_to_srgb, render_face

SIZE = 64


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    return FaceWorld(WorldConfig(image_size=SIZE, seed=11, train_identities=500, heldout_identities=50))


@pytest.fixture(scope="module")
def batch(world):
    return world.samples([0, 1, 2, 3])


def test_batch_layout(batch):
    b = batch
    assert b.image.shape == (4, 3, SIZE, SIZE) and b.mask.shape == (4, 1, SIZE, SIZE)
    assert b.image.min() >= -1 and b.image.max() <= 1
    assert b.landmarks_2d.shape == (4, 68, 2) and b.landmark_visible.dtype == torch.bool
    assert b.regions.shape == (4, 1, SIZE, SIZE) and b.regions.dtype == torch.long
    assert b.index.tolist() == [0, 1, 2, 3] and b.view.tolist() == [0] * 4
    assert b.params_vector().shape[0] == 4 and torch.isfinite(b.params_vector()).all()
    assert len(b) == 4 and len(WorldBatch.cat([b, b])) == 8
    # faces are framed: a sensible share of the image, most landmarks in view
    area = b.mask.mean(dim=(1, 2, 3))
    assert (area > 0.03).all() and (area < 0.5).all()
    assert b.landmark_visible.float().mean() > 0.6
    # every sample has background and the face, and most have hair/neck/clothing around it
    for r in b.regions:
        assert REGION_BACKGROUND in r and REGION_FACE in r
    assert len(torch.unique(b.regions)) >= 4


def test_deterministic_from_seed_and_index(world, batch):
    assert torch.equal(world.samples([0, 1, 2, 3]).image, batch.image)
    again = world.samples([2, 0])  # other batch composition and order: equal up to batched float rounding
    torch.testing.assert_close(again.image, batch.image[[2, 0]], rtol=0, atol=1e-4)
    torch.testing.assert_close(again.landmarks_2d, batch.landmarks_2d[[2, 0]], rtol=0, atol=1e-4)
    assert torch.equal(again.params.identity[0], batch.params.identity[2])
    assert torch.equal(again.params.translation, batch.params.translation[[2, 0]])
    same = FaceWorld(WorldConfig(image_size=SIZE, seed=11, train_identities=500, heldout_identities=50),
                     model=world.model).samples([1])
    torch.testing.assert_close(same.image[0], batch.image[1], rtol=0, atol=1e-4)
    other = FaceWorld(WorldConfig(image_size=SIZE, seed=12, train_identities=500, heldout_identities=50),
                      model=world.model).samples([1])
    assert not torch.equal(other.image[0], batch.image[1])
    assert not torch.equal(other.params.rotation[0], batch.params.rotation[1])


def test_ground_truth_reproduces_the_face(world, batch):
    p = batch.params
    geo = world.model(p)
    torch.testing.assert_close(batch.landmarks_2d, geo.landmarks_2d)
    with torch.no_grad():
        r = render_face(world.model, p, outputs=("image", "mask", "landmarks"))
    torch.testing.assert_close(batch.mask, r.mask)
    assert torch.equal(batch.landmark_visible, r.landmark_visible)
    inside = (r.mask == 1).expand_as(r.image)
    torch.testing.assert_close(batch.image[inside], (linear_to_srgb(r.image.clamp(0, 1)) * 2 - 1)[inside])
    assert ((batch.regions == REGION_FACE) == (batch.mask > 0.5)).all()
    # poses stay within the head range plus the in-plane camera roll
    c = world.config
    deg = p.rotation.rad2deg().abs()
    assert (deg[:, 0] <= c.pose_range_deg[0] + 1e-3).all() and (deg[:, 1] <= c.pose_range_deg[1] + 1e-3).all()
    assert (deg[:, 2] <= c.pose_range_deg[2] + c.camera_roll_deg + 1e-3).all()
    assert (p.expression >= 0).all() and (p.expression <= 1).all()


def bg_same(views):
    """Share of the pixels that are background in views 0 and 1 where both views are equal."""
    bg = (views.regions[0] == REGION_BACKGROUND) & (views.regions[1] == REGION_BACKGROUND)
    assert bg.sum() > 100
    same = (views.image[0] == views.image[1]).all(0, keepdim=True)
    return float(same[bg].float().mean())


def test_same_identity_sets(world):
    s = world.identity_set(7, 3)
    assert s.identity.tolist() == [7, 7, 7] and s.view.tolist() == [0, 1, 2]
    for name in ("identity", "texture"):
        t = getattr(s.params, name)
        assert torch.equal(t[0], t[1]) and torch.equal(t[0], t[2])
    shape, texture = world.identity_coefficients(7)
    torch.testing.assert_close(s.params.identity[0], shape.float())
    for name in ("rotation", "expression", "lighting"):
        t = getattr(s.params, name)
        assert not torch.equal(t[0], t[1]) and not torch.equal(t[1], t[2]), name
    assert torch.equal(s.params.camera.focal[0], s.params.camera.focal[1])  # camera not varied
    assert bg_same(s) > 0.9  # pixels next to the face or hair may blend with them

    only_bg = world.identity_set(7, 2, vary=("background",))
    assert torch.equal(only_bg.params.rotation[0], only_bg.params.rotation[1])
    assert torch.equal(only_bg.params.lighting[0], s.params.lighting[0])  # view 0 is shared by all modes
    assert bg_same(only_bg) < 0.1

    with pytest.raises(ValueError, match="cannot vary 'identity'"):
        world.identity_set(7, 2, vary=("identity",))
    with pytest.raises(ValueError, match="outside the train split"):
        world.identity_set(500, 2)


def test_heldout_identities_are_disjoint(world):
    held = world.heldout()
    assert held.config.split == "heldout" and held.num_identities == 50
    train_seeds = {world.identity_seed(i) for i in range(500)}
    held_seeds = {held.identity_seed(i) for i in range(50)}
    assert not train_seeds & held_seeds
    train = torch.stack([world.identity_coefficients(i)[0] for i in range(60)])
    test = torch.stack([held.identity_coefficients(i)[0] for i in range(50)])
    assert torch.cdist(train, test).min() > 1.0
    assert all(0 <= held.identity_of(i) < 50 for i in range(20))
    assert len({world.identity_of(i) for i in range(40)}) > 30


def test_backgrounds_differ_and_cover_every_kind(world, batch):
    bg = batch.regions == REGION_BACKGROUND
    means = [batch.image[i][bg[i].expand(3, -1, -1)].reshape(3, -1).mean(1) for i in range(4)]
    for i in range(4):
        for j in range(i):
            assert (means[i] - means[j]).abs().max() > 0.02
    for kind in ("noise", "gradient", "texture"):
        imgs = [background(torch.Generator().manual_seed(s), (32, 32), (kind,)) for s in range(3)]
        for img in imgs:
            assert img.shape == (3, 32, 32) and img.min() >= 0 and img.max() <= 1 and img.std() > 1e-3
        assert not torch.equal(imgs[0], imgs[1])
    with pytest.raises(ValueError, match="backgrounds must be"):
        WorldConfig(backgrounds=("sky",))
    with pytest.raises(ValueError, match="split must be"):
        WorldConfig(split="test")
    with pytest.raises(ValueError, match="no sample indices"):
        world.samples([])


def test_datasets_shard_over_processes(world, batch):
    ds = FaceWorldDataset(world, length=6)
    loaders = [iter(sharded_loader(ds, 4, DistInfo(rank=r, world_size=2), seed=0, shuffle=False,
                                   collate_fn=collate_world)) for r in range(2)]
    halves = [next(it) for it in loaders]
    assert [h.index.tolist() for h in halves] == [[0, 1], [2, 3]]
    torch.testing.assert_close(torch.cat([h.image for h in halves]), batch.image, rtol=0, atol=1e-4)

    stream = FaceWorldStream(world, batch_size=2, rank=1, world_size=2, start_step=1)
    first = next(iter(stream))
    assert first.index.tolist() == [3]
    torch.testing.assert_close(first.image[0], batch.image[3], rtol=0, atol=1e-4)

    # two loader workers take steps round-robin; the loader hands them back in step order
    loader = DataLoader(FaceWorldStream(world, batch_size=1), batch_size=None, num_workers=2,
                        collate_fn=collate_world)
    got = [b.index.item() for _, b in zip(range(4), loader)]
    assert got == [0, 1, 2, 3]

    sets = FaceWorldDataset(world, length=4, views=2, vary=("pose",))
    got = sets.__getitems__([0, 1])
    assert len(got) == 4 and got.index.tolist() == [0, 0, 1, 1] and got.view.tolist() == [0, 1, 0, 1]
    assert got.identity[0] == got.identity[1] == world.set_identity(0)
    assert torch.equal(got.params.lighting[0], got.params.lighting[1])
    with pytest.raises(IndexError, match="outside this dataset"):
        sets[4]
