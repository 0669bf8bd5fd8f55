"""A synthetic face world: images rendered from a morphable model with exact ground truth.

Every sample is a pure function of ``(config.seed, split, index)``. Its factors are drawn from separate
generators, so they can be held fixed or varied independently:

- identity (per identity id): shape coefficients, albedo coefficients, hair style and colour;
- per view: ``pose`` (head yaw, pitch, roll), ``expression``, ``lighting`` (SH: ambient + a directional
  light, tinted), ``camera`` (focal length, scale, translation, in-plane rotation), ``background``
  (smooth noise, gradients or textures) and ``clothing`` (a torso with a coloured pattern; the neck
  takes the skin colour).

Hair, neck and clothing are drawn around the projected head and lit with the face's SH lighting, so
networks cannot find the face by colour alone. The camera's in-plane rotation is folded into the
parameters (it adds to the roll and rotates the translation about the optical axis), so the returned
``FaceParams`` re-render the face exactly. Train and held-out identities come from disjoint seeds
(even and odd identity seeds).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields, replace

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from morph3d.model import Camera, FaceParams, MorphableModel, euler_to_matrix, load_model, sh_basis
from morph3d.render import linear_to_srgb, render_face

from .layers import (BACKGROUND_KINDS, REGION_CLOTHING, REGION_FACE, REGION_HAIR, REGION_NECK, background,
                     clothing_layer, hair_layer, make_frame, neck_layer, paint, sample_clothing, sample_hair)

VIEW_FACTORS = ("pose", "expression", "lighting", "camera", "background", "clothing")
DEFAULT_VARY = ("pose", "expression", "lighting")
SPLITS = ("train", "heldout")
PARAM_FIELDS = ("identity", "expression", "texture", "rotation", "translation", "lighting")
# The head-frame origin: behind the face surface, about the skull centre (mm from the mean face's box centre).
_HEAD_CENTRE_OFFSET = (0.0, 15.0, -55.0)


@dataclass
class WorldConfig:
    """How the world samples faces. Ranges are (low, high), uniform unless stated.

    image_size: square images of this many pixels (64..256 intended).
    split: ``"train"`` or ``"heldout"``; identities: how many distinct identities each split has.
    identity_sigma / texture_sigma: std of the shape / albedo coefficients (bases are in std units).
    expression_density: blendshape models, chance each blendshape is active (weight ~ U(0, 1));
      expression_sigma: PCA expression models, std of the coefficients.
    pose_range_deg: head (yaw, pitch, roll) ~ U(-r, r). camera_roll_deg: in-plane camera rotation ~ U(-r, r).
    focal_range: focal length in units of the image side; fill_range: face height / image side;
    shift: face-centre offset, fraction of the image side, ~ U(-shift, shift) in x and y.
    ambient_range / light_range: SH ambient and directional light strengths; colour_jitter: per-channel tint.
    backgrounds: kinds to draw from; hair_probability / clothing_probability: chance a sample has them.
    """

    image_size: int = 128
    seed: int = 0
    split: str = "train"
    train_identities: int = 100_000
    heldout_identities: int = 1_000
    model: str = "open"
    identity_sigma: float = 1.0
    texture_sigma: float = 1.0
    expression_sigma: float = 1.0
    expression_density: float = 0.25
    pose_range_deg: tuple[float, float, float] = (45.0, 20.0, 10.0)
    camera_roll_deg: float = 10.0
    focal_range: tuple[float, float] = (1.2, 2.5)
    fill_range: tuple[float, float] = (0.32, 0.5)
    shift: float = 0.08
    ambient_range: tuple[float, float] = (0.45, 0.9)
    light_range: tuple[float, float] = (0.1, 0.6)
    colour_jitter: float = 0.12
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    hair_probability: float = 0.9
    clothing_probability: float = 0.9
    antialias: bool = True
    backend: str | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not 8 <= int(self.image_size) <= 1024:
            raise ValueError(f"image_size must be 8..1024 pixels, got {self.image_size}")
        if self.train_identities < 1 or self.heldout_identities < 1:
            raise ValueError("train_identities and heldout_identities must be positive")
        bad = [k for k in self.backgrounds if k not in BACKGROUND_KINDS]
        if bad or not self.backgrounds:
            raise ValueError(f"backgrounds must be a non-empty subset of {BACKGROUND_KINDS}, got {self.backgrounds}")
        for name in ("focal_range", "fill_range", "ambient_range", "light_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {getattr(self, name)}")


@dataclass
class WorldBatch:
    """B rendered faces with their exact ground truth (tensors on the world's device).

    image: (B, 3, H, W) sRGB in [-1, 1]. mask: (B, 1, H, W) face coverage in [0, 1] (antialiased).
    params: the FaceParams that render the face (``params_vector`` flattens them).
    landmarks_2d: (B, 68, 2) pixels (0-based, x right, y down); landmark_visible: (B, 68) bool.
    regions: (B, 1, H, W) long layer labels (0 background, 1 clothing, 2 neck, 3 hair, 4 face;
      ``gan_bridge.face.layers.REGION_NAMES``).
    identity: (B,) long identity id; index: (B,) long sample index (set index in set mode, -1 from
      ``identity_set``);
    view: (B,) long view number within a same-identity set (0 for single samples).
    """

    image: torch.Tensor
    mask: torch.Tensor
    params: FaceParams
    landmarks_2d: torch.Tensor
    landmark_visible: torch.Tensor
    regions: torch.Tensor
    identity: torch.Tensor
    index: torch.Tensor
    view: torch.Tensor

    def __len__(self) -> int:
        return self.image.shape[0]

    def to(self, device) -> "WorldBatch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return WorldBatch(**{k: (v.to(device) if isinstance(v, (torch.Tensor, FaceParams)) else v)
                             for k, v in kw.items()})

    def params_vector(self) -> torch.Tensor:
        """(B, D) = identity | expression | texture | rotation | translation | lighting | focal | principal."""
        p = self.params
        return torch.cat([getattr(p, n) for n in PARAM_FIELDS] + [p.camera.focal[:, None], p.camera.principal], 1)

    @classmethod
    def cat(cls, items: list["WorldBatch"]) -> "WorldBatch":
        if not items:
            raise ValueError("cannot concatenate an empty list of world batches")
        kw = {f.name: torch.cat([getattr(b, f.name) for b in items]) for f in fields(cls) if f.name != "params"}
        return cls(params=_cat_params([b.params for b in items]), **kw)


def _cat_params(items: list[FaceParams]) -> FaceParams:
    """Concatenate the batches of FaceParams that share one camera image size and kind."""
    first = items[0]
    cam = Camera(torch.cat([p.camera.focal for p in items]), torch.cat([p.camera.principal for p in items]),
                 first.camera.image_size, first.camera.kind)
    art = None if first.articulation is None else torch.cat([p.articulation for p in items])
    return FaceParams(**{n: torch.cat([getattr(p, n) for p in items]) for n in PARAM_FIELDS}, camera=cam,
                      articulation=art)


def _generator(*key) -> torch.Generator:
    """An independent CPU generator per key (a tuple of ints and strings)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _u(gen, lo, hi, shape=()):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


@dataclass
class _View:
    """The factor keys of one rendered sample."""

    identity: int
    index: int
    view: int
    keys: dict = field(default_factory=dict)


class FaceWorld:
    """Deterministic synthetic faces (see the module docstring). ``model`` defaults to ``config.model``."""

    def __init__(self, config: WorldConfig | None = None, model: MorphableModel | None = None, device="cpu"):
        self.config = config or WorldConfig()
        self.model = (model if model is not None else load_model(self.config.model)).to(device)
        self.device = torch.device(device)
        mean = self.model.vertices_mean.detach().double().cpu()
        self._centre = (mean.max(0).values + mean.min(0).values) / 2
        self._height = float(mean[:, 1].max() - mean[:, 1].min())
        self._head = self._centre + torch.tensor(_HEAD_CENTRE_OFFSET, dtype=torch.float64)

    # ---- splits and identities ------------------------------------------------------------
    @property
    def num_identities(self) -> int:
        c = self.config
        return c.train_identities if c.split == "train" else c.heldout_identities

    def with_split(self, split: str) -> "FaceWorld":
        """The same world (same model object) on another split."""
        return FaceWorld(replace(self.config, split=split), self.model, self.device)

    def heldout(self) -> "FaceWorld":
        return self.with_split("heldout")

    def identity_seed(self, identity_id: int) -> int:
        """Train identities have even seeds and held-out ones odd seeds, so the splits never share one."""
        self._check_identity(identity_id)
        return 2 * int(identity_id) + (self.config.split == "heldout")

    def _check_identity(self, identity_id: int) -> None:
        if not 0 <= int(identity_id) < self.num_identities:
            raise ValueError(f"identity {identity_id} is outside the {self.config.split} split's "
                             f"0..{self.num_identities - 1}")

    def identity_coefficients(self, identity_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (identity (Ki,), texture (Ka,)) float64 coefficients of identity ``identity_id`` of this split."""
        shape, texture, _ = self._identity(identity_id)
        return shape, texture

    def identity_of(self, index: int) -> int:
        """The identity of sample ``index``."""
        gen = _generator(self.config.seed, self.config.split, "who", int(index))
        return int(torch.randint(0, self.num_identities, (), generator=gen))

    def set_identity(self, set_index: int) -> int:
        """The identity of same-identity set ``set_index`` (set mode)."""
        gen = _generator(self.config.seed, self.config.split, "set-who", int(set_index))
        return int(torch.randint(0, self.num_identities, (), generator=gen))

    # ---- public sampling --------------------------------------------------------------------
    def samples(self, indices) -> WorldBatch:
        """Samples ``indices`` (ints >= 0), rendered as one batch. Sample i's parameters never depend on the
        others; its pixels only up to the float rounding of batched arithmetic (~1e-5)."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("no sample indices given; ask for at least one")
        if min(indices) < 0:
            raise ValueError(f"sample indices must be >= 0, got {min(indices)}")
        views = [_View(self.identity_of(i), i, 0, {f: ("sample", i) for f in VIEW_FACTORS}) for i in indices]
        return self._render(views)

    def identity_set(self, identity_id: int, n: int, vary=DEFAULT_VARY) -> WorldBatch:
        """``n`` views of identity ``identity_id``: the factors in ``vary`` change per view, the others
        (and the identity's shape, albedo and hair) are those of view 0."""
        self._check_identity(identity_id)
        return self._render(self._set_views(int(identity_id), ("id", int(identity_id)), -1, n, vary))

    def identity_sets(self, set_indices, views: int, vary=DEFAULT_VARY) -> WorldBatch:
        """Same-identity sets ``set_indices`` of ``views`` views each, as one batch of
        ``len(set_indices) * views`` (set-major: ``image.view(S, views, 3, H, W)``)."""
        set_indices = [int(i) for i in set_indices]
        if not set_indices or min(set_indices) < 0:
            raise ValueError("set indices must be a non-empty list of ints >= 0")
        out = []
        for s in set_indices:
            out += self._set_views(self.set_identity(s), ("set", s), s, views, vary)
        return self._render(out)

    def _set_views(self, identity: int, prefix: tuple, index: int, n: int, vary) -> list[_View]:
        vary = (vary,) if isinstance(vary, str) else tuple(vary)
        bad = [v for v in vary if v not in VIEW_FACTORS]
        if bad:
            raise ValueError(f"cannot vary {bad[0]!r} within an identity set; choose from {VIEW_FACTORS}")
        if int(n) < 1:
            raise ValueError(f"an identity set needs at least one view, got n={n}")
        return [_View(identity, index, v, {f: prefix + ((v if f in vary else 0),) for f in VIEW_FACTORS})
                for v in range(int(n))]

    # ---- factor draws -------------------------------------------------------------------------
    def _gen(self, factor: str, key) -> torch.Generator:
        return _generator(self.config.seed, self.config.split, factor, *key)

    def _identity(self, identity_id: int):
        m, c = self.model, self.config
        gen = _generator(c.seed, "identity", self.identity_seed(identity_id))
        shape = torch.randn(m.identity_dim, generator=gen, dtype=torch.float64) * c.identity_sigma
        texture = torch.randn(m.albedo_dim, generator=gen, dtype=torch.float64) * c.texture_sigma
        return shape, texture, sample_hair(gen, c.hair_probability)

    def _expression(self, gen) -> torch.Tensor:
        m, c = self.model, self.config
        if m.expression_kind == "blendshapes":
            active = torch.rand(m.expression_dim, generator=gen, dtype=torch.float64) < c.expression_density
            return torch.rand(m.expression_dim, generator=gen, dtype=torch.float64) * active
        return torch.randn(m.expression_dim, generator=gen, dtype=torch.float64) * c.expression_sigma

    def _lighting(self, gen) -> torch.Tensor:
        c = self.config
        ambient, strength = float(_u(gen, *c.ambient_range)), float(_u(gen, *c.light_range))
        direction = torch.randn(3, generator=gen, dtype=torch.float64)
        direction = direction / direction.norm().clamp_min(1e-9)
        direction[2] = direction[2].abs() + 0.3  # from the camera's side
        direction = direction / direction.norm()
        light = math.pi * strength * sh_basis(direction[None])[0]  # a directional light, (9,)
        light[0] += ambient * math.sqrt(4.0 * math.pi)
        tint = 1.0 + _u(gen, -c.colour_jitter, c.colour_jitter, (3,))
        return (tint[:, None] * light[None, :]).reshape(27)

    # ---- rendering ----------------------------------------------------------------------------
    def _params(self, views: list[_View]):
        m, c = self.model, self.config
        size = int(c.image_size)
        shape, texture, hair = zip(*(self._identity(v.identity) for v in views))
        pose = torch.stack([_u(self._gen("pose", v.keys["pose"]), -1, 1, (3,)) for v in views])
        pose = pose * torch.tensor([math.radians(r) for r in c.pose_range_deg], dtype=torch.float64)
        expression = torch.stack([self._expression(self._gen("expression", v.keys["expression"])) for v in views])
        lighting = torch.stack([self._lighting(self._gen("lighting", v.keys["lighting"])) for v in views])
        cams = [self._gen("camera", v.keys["camera"]) for v in views]
        cam = torch.stack([torch.cat([_u(g, *c.focal_range, (1,)), _u(g, *c.fill_range, (1,)),
                                      _u(g, -c.shift, c.shift, (2,)), _u(g, -1, 1, (1,))]) for g in cams])
        focal = cam[:, 0] * size
        distance = focal * self._height / (cam[:, 1] * size)
        shift = cam[:, 2:4] * size  # pixels
        roll = cam[:, 4] * math.radians(c.camera_roll_deg)
        head = euler_to_matrix(pose)
        t0 = -(head @ self._centre) + torch.stack([shift[:, 0] * distance / focal, -shift[:, 1] * distance / focal,
                                                   -distance], -1)
        zero, one = torch.zeros_like(roll), torch.ones_like(roll)
        rz = torch.stack([torch.cos(roll), -torch.sin(roll), zero, torch.sin(roll), torch.cos(roll), zero,
                          zero, zero, one], -1).reshape(-1, 3, 3)
        rotation = pose + torch.stack([zero, zero, roll], -1)  # Rz(roll) @ R(pose) in the Euler convention
        translation = (rz @ t0[:, :, None])[:, :, 0]
        ref = m.vertices_mean
        b = len(views)
        camera = Camera(focal.to(ref), torch.tensor([(size - 1) / 2.0] * 2, dtype=ref.dtype,
                                                    device=ref.device).expand(b, 2).clone(), (size, size))
        art = torch.zeros(b, m.num_joints, 3, device=ref.device, dtype=ref.dtype) if m.num_joints else None
        params = FaceParams(identity=torch.stack(shape).to(ref), expression=expression.to(ref),
                            texture=torch.stack(texture).to(ref), rotation=rotation.to(ref),
                            translation=translation.to(ref), lighting=lighting.to(ref), camera=camera,
                            articulation=art)
        return params, list(hair), roll

    def _scene(self, params: FaceParams, hair, roll: torch.Tensor, views: list[_View]):
        """Background, hair, clothing and neck behind each face -> (B, 3, H, W) linear RGB, (B, H, W) labels."""
        c = self.config
        size = (int(c.image_size), int(c.image_size))
        rot = euler_to_matrix(params.rotation.detach().double().cpu())
        trans = params.translation.detach().double().cpu()
        centre = rot @ self._head + trans  # (B, 3) head centre, camera frame
        focal = params.camera.focal.detach().double().cpu()
        principal = params.camera.principal.detach().double().cpu()
        px_per_mm = focal / (-centre[:, 2])
        origin = principal + focal[:, None] * torch.stack([centre[:, 0], -centre[:, 1]], -1) / (-centre[:, 2:3])
        head_up = torch.nn.functional.normalize(torch.stack([rot[:, 0, 1], -rot[:, 1, 1]], -1), dim=-1)
        body_up = torch.stack([-torch.sin(roll), -torch.cos(roll)], -1)
        skin = self.model.albedo(params.texture.detach()).mean(1).float().cpu() * 0.92
        light = params.lighting.detach().double().cpu()
        images, labels = [], []
        for i, v in enumerate(views):
            mm = 1.0 / float(px_per_mm[i])
            img = background(self._gen("background", v.keys["background"]), size, c.backgrounds)
            lab = torch.zeros(size, dtype=torch.long)
            head = make_frame(size, origin[i], head_up[i], mm)
            alpha, albedo, normals = hair_layer(hair[i], head)
            img = paint(img, lab, alpha, albedo, normals, head, light[i], REGION_HAIR)
            gen = self._gen("clothing", v.keys["clothing"])
            dressed = bool(torch.rand((), generator=gen, dtype=torch.float64) < c.clothing_probability)
            style = sample_clothing(gen)
            body = make_frame(size, origin[i], body_up[i], mm)
            if dressed:
                alpha, albedo, normals = clothing_layer(style, body)
                img = paint(img, lab, alpha, albedo, normals, body, light[i], REGION_CLOTHING)
            alpha, normals = neck_layer(style, body)
            img = paint(img, lab, alpha, skin[i][:, None, None].expand(3, *size), normals, body, light[i], REGION_NECK)
            images.append(img)
            labels.append(lab)
        return torch.stack(images), torch.stack(labels)

    def _render(self, views: list[_View]) -> WorldBatch:
        c = self.config
        params, hair, roll = self._params(views)
        scene, regions = self._scene(params, hair, roll, views)
        ref = self.model.vertices_mean
        with torch.no_grad():
            r = render_face(self.model, params, outputs=("image", "mask", "landmarks"),
                            background=scene.to(ref), backend=c.backend, antialias=c.antialias)
        regions = torch.where(r.mask[:, 0].cpu() > 0.5, REGION_FACE, regions)[:, None]
        as_long = lambda vals: torch.tensor(vals, dtype=torch.long, device=ref.device)  # noqa: E731
        return WorldBatch(image=linear_to_srgb(r.image.clamp(0, 1)) * 2 - 1, mask=r.mask, params=params,
                          landmarks_2d=r.landmarks_2d, landmark_visible=r.landmark_visible,
                          regions=regions.to(ref.device), identity=as_long([v.identity for v in views]),
                          index=as_long([v.index for v in views]), view=as_long([v.view for v in views]))


def collate_world(items) -> WorldBatch:
    """DataLoader ``collate_fn``: a WorldBatch passes through, a list of them is concatenated."""
    return items if isinstance(items, WorldBatch) else WorldBatch.cat(list(items))


class FaceWorldDataset(Dataset):
    """Map-style view of a world: item ``i`` is sample ``i`` (``views=1``) or same-identity set ``i`` of
    ``views`` views. ``__getitems__`` renders a whole batch at once; use ``collate_fn=collate_world``
    (e.g. with ``gan_bridge.train.sharded_loader``, which also shards it over processes)."""

    def __init__(self, world: FaceWorld, length: int, views: int = 1, vary=DEFAULT_VARY):
        if length < 1:
            raise ValueError(f"the dataset needs at least one item, got length={length}")
        self.world, self.length, self.views, self.vary = world, int(length), int(views), vary

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices) -> WorldBatch:
        bad = [i for i in indices if not 0 <= int(i) < self.length]
        if bad:
            raise IndexError(f"item {bad[0]} is outside this dataset of {self.length}")
        if self.views == 1:
            return self.world.samples(indices)
        return self.world.identity_sets(indices, self.views, self.vary)

    def __getitem__(self, index: int) -> WorldBatch:
        return self.__getitems__([index])


class FaceWorldStream(IterableDataset):
    """Endless batches for one of ``world_size`` processes, from global step ``start_step`` on.

    batch_size: global items per step (samples, or identity sets of ``views`` views); global step ``s``
    covers items ``[s * batch_size, (s + 1) * batch_size)`` and process ``rank`` renders its contiguous
    share. DataLoader workers (``batch_size=None``) take steps round-robin, which the loader returns in order.
    """

    def __init__(self, world: FaceWorld, batch_size: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, views: int = 1, vary=DEFAULT_VARY):
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of the {world_size} processes")
        self.world, self.batch_size, self.rank, self.world_size = world, int(batch_size), int(rank), int(world_size)
        self.start_step, self.views, self.vary = int(start_step), int(views), vary

    def items(self, step: int) -> list[int]:
        """This process's item indices for global step ``step``."""
        local = self.batch_size // self.world_size
        first = step * self.batch_size + self.rank * local
        return list(range(first, first + local))

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        step = self.start_step + worker
        while True:
            idx = self.items(step)
            yield (self.world.samples(idx) if self.views == 1
                   else self.world.identity_sets(idx, self.views, self.vary))
            step += workers


__all__ = ["DEFAULT_VARY", "FaceWorld", "FaceWorldDataset", "FaceWorldStream", "PARAM_FIELDS", "VIEW_FACTORS",
           "WorldBatch", "WorldConfig", "collate_world"]
