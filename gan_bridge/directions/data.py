"""Latents for mixed (Sec. 3.2) and paired (Sec. 3.3) training: images inverted into the generator's W+.

- ``real`` latents: ``{"format", "ws": (N, num_ws, w_dim), "images": (N, 3, R, R) uint8}`` from photos
  (FFHQ-cropped), or from a world cache (``gan_bridge.methods.world_cache``) standing in for real frames;
- ``pairs``: same-identity sets of the synthetic world (views differ in pose and expression, the stand-in
  for frames of one video): ``{"format", "ws": (S, V, num_ws, w_dim), "images": (S, V, 3, R, R) uint8,
  "rotation": (S, V, 3) radians, "expression": (S, V, Ke), "landmarks": (S, V, 68, 2) px, "identity": (S,)}``
  (the true parameters are for evaluation).

    python -m gan_bridge.directions.data real OUT.pt --generator G.pt PHOTO_OR_FOLDER... [--steps 0.2]
    python -m gan_bridge.directions.data pairs OUT.pt --generator G.pt --sets 200 --views 2 [--split heldout]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gan_bridge.inversion import InversionConfig, invert, preset

REAL_FORMAT = "gan_bridge.directions.real_latents.v1"
PAIRS_FORMAT = "gan_bridge.directions.pairs.v1"
VARY = ("pose", "expression")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> uint8."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def invert_all(G, images: torch.Tensor, config: InversionConfig, batch: int = 8) -> torch.Tensor:
    """images (N, 3, R, R) in [-1, 1] -> W+ codes (N, num_ws, w_dim), inverted ``batch`` at a time."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, 3, R, R) image batch to invert, got {tuple(images.shape)}")
    return torch.cat([invert(G, chunk, config, progress=False).ws.detach().cpu() for chunk in images.split(batch)])


def real_latents(G, images: torch.Tensor, config: InversionConfig, batch: int = 8) -> dict:
    """Inverted codes of real (or stand-in) images (N, 3, R, R) in [-1, 1]: the ``real_latents`` file."""
    return {"format": REAL_FORMAT, "ws": invert_all(G, images, config, batch), "images": to_uint8(images)}


def world_pairs(G, sets: int, views: int, config: InversionConfig, split: str = "train", seed: int = 0,
                start: int = 0, batch: int = 8) -> dict:
    """``sets`` same-identity sets of ``views`` world renders at G's resolution, inverted: the ``paired`` file."""
    from gan_bridge.face.world import FaceWorld, WorldConfig
    if sets < 1 or views < 2:
        raise ValueError(f"need sets >= 1 and views >= 2 per set, got {sets} and {views}")
    world = FaceWorld(WorldConfig(image_size=G.resolution, split=split, seed=seed))
    b = world.identity_sets(range(start, start + sets), views, vary=VARY)
    shape = (sets, views)
    return {"format": PAIRS_FORMAT, "ws": invert_all(G, b.image, config, batch).view(*shape, G.num_ws, G.w_dim),
            "images": to_uint8(b.image).view(*shape, *b.image.shape[1:]),
            "rotation": b.params.rotation.detach().cpu().view(*shape, 3),
            "expression": b.params.expression.detach().cpu().view(*shape, -1),
            "landmarks": b.landmarks_2d.detach().cpu().view(*shape, 68, 2),
            "identity": b.identity.view(shape)[:, 0].cpu(), "split": split, "seed": seed}


def _photos(paths: list[str], size: int, align: str) -> torch.Tensor:
    from gan_bridge.face.photos import load_face_crop
    from gan_bridge.methods.world_cache import load_world_cache, to_float
    images = []
    for p in map(Path, paths):
        if p.suffix == ".pt":
            cached = to_float(load_world_cache(p)["images"])
            if cached.shape[-1] != size:
                cached = torch.nn.functional.interpolate(cached, size=(size, size), mode="area")
            images.append(cached)
            continue
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")) if p.is_dir() else [p]
        images += [load_face_crop(f, size, align).image[None] for f in files]
    if not images:
        raise ValueError("no images given to invert")
    return torch.cat(images)


def main(argv=None) -> int:
    from gan_bridge.face.photos import atomic_write
    from gan_bridge.networks.stylegan2 import load_generator
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.directions.data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("real", help="invert photos (or a world cache .pt) for mixed training")
    r.add_argument("out")
    r.add_argument("inputs", nargs="+", help="photos, folders of photos, or world-cache .pt files")
    r.add_argument("--align", default="ffhq", choices=("ffhq", "none"))
    p = sub.add_parser("pairs", help="invert same-identity world sets for paired fine-tuning / evaluation")
    p.add_argument("out")
    p.add_argument("--sets", type=int, default=100)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--split", default="train", choices=("train", "heldout"))
    p.add_argument("--start", type=int, default=0, help="first set index")
    for q in (r, p):
        q.add_argument("--generator", required=True)
        q.add_argument("--preset", default="image2stylegan", choices=("projector", "image2stylegan", "pie"))
        q.add_argument("--steps", type=float, default=0.1, help="scale of the preset's step counts")
        q.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    G = load_generator(args.generator).requires_grad_(False)
    config = preset(args.preset, seed=args.seed).scaled(args.steps)
    if args.cmd == "real":
        record = real_latents(G, _photos(args.inputs, G.resolution, args.align), config)
    else:
        record = world_pairs(G, args.sets, args.views, config, args.split, args.seed, args.start)
    atomic_write(Path(args.out), lambda tmp: torch.save(record, tmp))
    print(f"{tuple(record['ws'].shape)} latents -> {args.out}")
    return 0


__all__ = ["PAIRS_FORMAT", "REAL_FORMAT", "invert_all", "real_latents", "world_pairs"]

if __name__ == "__main__":
    raise SystemExit(main())
