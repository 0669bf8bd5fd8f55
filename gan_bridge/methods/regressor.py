"""Training morph3d's small image -> 3DMM parameter regressor (``morph3d.regress``) on the synthetic world.

Supervision: each world sample has exact parameters and 68 landmarks. The sample is re-framed the way
:func:`morph3d.regress.predict` frames a photo (a square around its landmarks, ``CROP_MARGIN`` x the
box, resampled to the network's input size; jittered in training), and the network is trained on

- a parameter loss: the mean squared error of the normalised target vector
  (``morph3d.regress.encode_targets``: identity, expression, texture, angles, the model origin's
  position and scale in the crop, lighting), weighted per block (``block_weights``);
- a landmark reprojection loss: the predicted parameters, decoded in the crop's exact camera, give the
  model's 68 landmarks; their distance to the true ones (fraction of the crop side) is squared and
  averaged (``landmark_weight``).

Rendering the world costs tens of ms per image, far slower than the network trains, so samples
``[0, count)`` are rendered once into a cache file (``python -m gan_bridge.methods.regressor cache``) that
holds ``{"format": CACHE_FORMAT, "images": (N, 3, S, S) uint8 sRGB, "params": {field: (N, K)},
"focal": (N,), "principal": (N, 2), "landmarks": (N, 68, 2), "world": WorldConfig fields}``; training
reads it (``cache=PATH``), or renders on the fly when ``cache`` is empty.

    python -m gan_bridge.methods.regressor cache /tmp/reg/train.pt --count 30000
    gan-bridge train regressor cache=/tmp/reg/train.pt run_dir=/tmp/reg/run steps=4000
    python -m gan_bridge.methods.regressor export /tmp/reg/run OUT.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from gan_bridge.train import Method, TrainConfig, sharded_loader

CACHE_FORMAT = "gan_bridge.regressor_cache.v1"
PARAM_FIELDS = ("identity", "expression", "texture", "rotation", "translation", "lighting")
# The world framed for the regressor's crops: faces larger than the world's default, so that a crop of
# CROP_MARGIN x the landmark box is about 0.8 of an 80 px render, i.e. close to the 64 px input.
WORLD_DEFAULTS = {"image_size": 80, "fill_range": (0.55, 0.75)}


def _world(image_size: int, split: str, seed: int):
    from gan_bridge.face.world import FaceWorld, WorldConfig
    return FaceWorld(WorldConfig(**{**WORLD_DEFAULTS, "image_size": image_size, "split": split, "seed": seed}))


def _record(batch) -> dict:
    """A WorldBatch -> the cache's per-sample tensors (images as uint8)."""
    p = batch.params
    return {"images": ((batch.image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8),
            "params": {n: getattr(p, n).detach().float().cpu() for n in PARAM_FIELDS},
            "focal": p.camera.focal.detach().float().cpu(), "principal": p.camera.principal.detach().float().cpu(),
            "landmarks": batch.landmarks_2d.detach().float().cpu()}


def _cat_records(records: list[dict]) -> dict:
    return {"images": torch.cat([r["images"] for r in records]),
            "params": {n: torch.cat([r["params"][n] for r in records]) for n in PARAM_FIELDS},
            "focal": torch.cat([r["focal"] for r in records]),
            "principal": torch.cat([r["principal"] for r in records]),
            "landmarks": torch.cat([r["landmarks"] for r in records])}


def render_cache(count: int, image_size: int = WORLD_DEFAULTS["image_size"], split: str = "train", seed: int = 0,
                 start: int = 0, chunk: int = 64, progress: bool = False) -> dict:
    """World samples ``[start, start + count)`` of ``split`` -> a cache dict (see the module docstring)."""
    if count < 1:
        raise ValueError(f"count must be >= 1 samples, got {count}")
    world = _world(image_size, split, seed)
    records, t0 = [], time.time()
    for s in range(start, start + count, chunk):
        records.append(_record(world.samples(range(s, min(s + chunk, start + count)))))
        if progress:
            print(f"{s + len(records[-1]['images']) - start}/{count} samples, {time.time() - t0:.0f} s", flush=True)
    out = _cat_records(records)
    out.update(format=CACHE_FORMAT, split=split, seed=seed, start=start, count=count,
               world={k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(world.config).items()})
    return out


def save_cache(cache: dict, path: str | Path) -> Path:
    """Write a cache dict to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(cache, tmp)
    tmp.replace(path)
    return path


def load_cache(path: str | Path) -> dict:
    """A cache written by :func:`save_cache`; one-line errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"regressor cache {path} does not exist; render it with "
                                f"'python -m gan_bridge.methods.regressor cache {path}'")
    try:
        cache = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is corrupt or not a regressor cache ({type(exc).__name__}); "
                         "render it again") from None
    if not isinstance(cache, dict) or cache.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not a regressor cache (format {CACHE_FORMAT}); render it again")
    return cache


class CacheDataset(Dataset):
    """Map-style view of a cache: ``__getitems__`` returns a batch dict (images uint8, params, focal,
    principal, landmarks); use ``collate_fn=_identity`` with it."""

    def __init__(self, cache: dict):
        self.cache = cache
        self.length = int(cache["images"].shape[0])

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices) -> dict:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        c = self.cache
        return {"images": c["images"][idx], "params": {n: t[idx] for n, t in c["params"].items()},
                "focal": c["focal"][idx], "principal": c["principal"][idx], "landmarks": c["landmarks"][idx]}

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])


class WorldRecords(Dataset):
    """Map-style world samples rendered on the fly, as cache-style batch dicts."""

    def __init__(self, world, length: int = 10 ** 9):
        self.world, self.length = world, int(length)

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices) -> dict:
        return _record(self.world.samples(indices))


def _identity(batch):
    return batch


@dataclass
class RegressorConfig(TrainConfig):
    """Supervised training of ``morph3d.regress.SmallRegressor`` on the synthetic world.

    cache: a render cache (``python -m gan_bridge.methods.regressor cache``); empty: render on the fly
    (``world_image_size`` px renders of the train split). model: the morphable model (``load_model`` name).
    input_size / widths / head: the network (``SmallRegressorConfig``).
    jitter_shift: crop centre jitter, U(-j, j) x the crop side; jitter_scale: crop side x exp(U(-j, j)).
    weights: loss weight of each target block (normalised MSE); landmark_weight: weight of the mean 2D
    landmark distance in percent of the crop side. warmup: linear lr warm-up steps; lr then decays with a
    cosine to ``lr * final_lr``. stat_samples: samples whose targets set the output normalisation.
    """

    run_dir: str = "runs/regressor"
    steps: int = 4000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    final_lr: float = 0.02
    sample_every: int = 0
    checkpoint_every: int = 250
    cache: str = ""
    model: str = "open"
    world_image_size: int = WORLD_DEFAULTS["image_size"]
    input_size: int = 64
    widths: tuple[int, ...] = (16, 24, 48, 96, 192)
    head: int = 256
    jitter_shift: float = 0.05
    jitter_scale: float = 0.08
    weights: dict = field(default_factory=lambda: {"identity": 1.0, "expression": 1.0, "texture": 0.5,
                                                   "rotation": 2.0, "position": 2.0, "lighting": 0.5})
    landmark_weight: float = 0.05
    stat_samples: int = 2000


def frame_batch(batch: dict, size: int, shift: float = 0.0, scale: float = 0.0,
                generator: torch.Generator | None = None):
    """A cache-style batch -> (crops (B, 3, size, size) in [-1, 1], FaceParams in the crops' cameras,
    landmarks (B, 68, 2) in crop pixels), framed as ``morph3d.regress`` frames photos, with the crop centre
    jittered by U(-shift, shift) x side and the side by exp(U(-scale, scale))."""
    from morph3d.model import Camera, FaceParams
    from morph3d.regress import crop_boxes, crop_cameras, crop_images, to_crop_pixels

    images = batch["images"].float() / 127.5 - 1.0
    lm = batch["landmarks"].float()
    b, s = images.shape[0], images.shape[-1]
    corner, side = crop_boxes(lm)
    if shift > 0 or scale > 0:
        u = torch.rand(b, 3, generator=generator) * 2 - 1
        centre = corner + side[:, None] / 2 + u[:, :2] * shift * side[:, None]
        side = side * torch.exp(u[:, 2] * scale)
        corner = centre - side[:, None] / 2
    camera = Camera(batch["focal"].float(), batch["principal"].float(), (s, s))
    cam = crop_cameras(camera, corner, side, size)
    params = FaceParams(**{n: batch["params"][n].float() for n in PARAM_FIELDS}, camera=cam)
    return crop_images(images, corner, side, size), params, to_crop_pixels(lm, corner, side, size)


def model_landmarks(model, params) -> torch.Tensor:
    """The model's 68 landmarks of ``params`` in their cameras' images, (B, 68, 2) px (differentiable)."""
    from morph3d.model import euler_to_matrix
    verts = model.shape(params.identity, params.expression)
    pts = model.landmarks(verts) @ euler_to_matrix(params.rotation).transpose(1, 2) + params.translation[:, None]
    return params.camera.project(pts)


def regressor_losses(z, mean, std, model, params, landmarks, weights: dict) -> dict[str, torch.Tensor]:
    """The supervised losses of one framed batch from the network's normalised outputs z (B, D) (targets
    = z * std + mean): ``param`` (weighted normalised MSE per block, summed), ``landmark_pct`` (mean 2D
    landmark distance, % of the crop side) and per-block ``mse_<block>``."""
    from morph3d.regress import decode_targets, encode_targets, target_layout

    target = encode_targets(params, model)
    zt = (target - mean) / std
    out = {}
    param = 0.0
    for name, sl in target_layout(model).items():
        mse = (z[:, sl] - zt[:, sl]).square().mean()
        out[f"mse_{name}"] = mse
        param = param + float(weights.get(name, 1.0)) * mse
    out["param"] = param
    pred = decode_targets(z * std + mean, model, params.camera)
    size = params.camera.image_size[1]
    dist = (model_landmarks(model, pred) - landmarks).norm(dim=-1)
    out["landmark_pct"] = 100.0 * torch.nanmean(dist) / size
    return out


class Regressor(Method):
    """``gan-bridge train regressor``: see the module docstring and :class:`RegressorConfig`."""

    config_class = RegressorConfig

    def build(self, config: RegressorConfig, device: torch.device):
        from morph3d.model import load_model
        from morph3d.regress import SmallRegressor, SmallRegressorConfig, encode_targets, target_dim

        self.model = load_model(config.model).to(device).requires_grad_(False)
        self._dataset = self._make_dataset(config)
        net = SmallRegressor(SmallRegressorConfig(config.input_size, config.widths, config.head,
                                                  target_dim(self.model))).to(device)
        stats = self._dataset.__getitems__(list(range(min(config.stat_samples, len(self._dataset)))))
        with torch.no_grad():
            _, params, _ = frame_batch(stats, config.input_size)
            net.set_target_statistics(encode_targets(params.to(device), self.model))
        net = net.to(memory_format=torch.channels_last)  # faster convolutions on CPU
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return {"regressor": net}, {"regressor": opt}

    def _make_dataset(self, config: RegressorConfig):
        if config.cache:
            cache = load_cache(config.cache)
            world_model = cache.get("world", {}).get("model", config.model)
            if world_model != config.model:
                raise ValueError(f"cache {config.cache} was rendered with model '{world_model}', not "
                                 f"'{config.model}'; render a cache for this model")
            return CacheDataset(cache)
        return WorldRecords(_world(config.world_image_size, "train", config.seed))

    def data(self, start_step: int):
        shuffle = isinstance(self._dataset, CacheDataset)  # world samples are random already
        return sharded_loader(self._dataset, self.config.batch_size, self.dist, self.config.seed, start_step,
                              self.config.num_workers, shuffle=shuffle, collate_fn=_identity)

    def _lr(self, step: int) -> float:
        c = self.config
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        t = (step - c.warmup) / max(1, c.steps - c.warmup)
        return c.lr * (c.final_lr + (1 - c.final_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + step * 101 + self.dist.rank)
        crops, params, landmarks = frame_batch(batch, c.input_size, c.jitter_shift, c.jitter_scale, gen)
        dev = self.device
        crops = crops.to(dev).contiguous(memory_format=torch.channels_last)
        params, landmarks = params.to(dev), landmarks.to(dev)
        net, raw = self.modules["regressor"], self.module("regressor")
        net.train()
        z = net(crops, normalised=True)
        losses = regressor_losses(z, raw.target_mean, raw.target_std, self.model, params, landmarks, c.weights)
        loss = losses["param"] + c.landmark_weight * losses["landmark_pct"]
        opt = self.optimizers["regressor"]
        for group in opt.param_groups:
            group["lr"] = self._lr(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out = {"loss": loss.detach()}
        out.update({k: v.detach() for k, v in losses.items()})
        return out


def export_weights(source: str | Path, out: str | Path, recipe: str = "") -> Path:
    """The regressor of a run folder (its latest checkpoint) or a checkpoint file -> a
    ``morph3d.regress`` weights file at ``out``."""
    from morph3d.regress import SmallRegressor, SmallRegressorConfig
    from morph3d.regress.small import save_small_regressor

    from gan_bridge.train import latest_checkpoint, load_checkpoint
    source = Path(source)
    path = latest_checkpoint(source) if source.is_dir() else source
    if path is None:
        raise FileNotFoundError(f"{source} holds no checkpoints (checkpoints/ckpt-*.pt)")
    state = load_checkpoint(path)
    cfg = state["config"]
    if "regressor" not in state["modules"]:
        raise ValueError(f"{path} was not written by the regressor method")
    sd = state["modules"]["regressor"]
    net = SmallRegressor(SmallRegressorConfig(cfg["input_size"], tuple(cfg["widths"]), cfg["head"],
                                              int(sd["target_mean"].shape[0])))
    net.load_state_dict(sd)
    note = recipe or f"gan-bridge train regressor, {state['step']} steps of batch {cfg['batch_size']}"
    return save_small_regressor(net, out, cfg["model"], note)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan_bridge.methods.regressor",
                                description="Render a regressor training cache, or export trained weights.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="render world samples [start, start + count) into a cache file")
    c.add_argument("out")
    c.add_argument("--count", type=int, default=30000)
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--split", choices=("train", "heldout"), default="train")
    c.add_argument("--image-size", type=int, default=WORLD_DEFAULTS["image_size"])
    c.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("export", help="write the weights of a run (or checkpoint) for morph3d.regress")
    e.add_argument("source", help="run folder or ckpt-*.pt")
    e.add_argument("out", help="weights file (.pt)")
    e.add_argument("--recipe", default="", help="a note stored with the weights")
    args = p.parse_args(argv)
    if args.command == "cache":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        cache = render_cache(args.count, args.image_size, args.split, args.seed, args.start, progress=True)
        print(save_cache(cache, args.out))
    else:
        print(export_weights(args.source, args.out, args.recipe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
