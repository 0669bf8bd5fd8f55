"""Latents for mixed (Sec. 3.2) and paired (Sec. 3.3) training: images inverted into the generator's W+.

- ``real`` latents: ``{"format", "ws": (N, num_ws, w_dim), "images": (N, 3, R, R) uint8}`` from photos
  (FFHQ-cropped), or from a world cache (``gan_bridge.methods.world_cache``) standing in for real frames;
- ``pairs``: same-identity sets of the synthetic world (views differ in pose and expression, the stand-in
  for frames of one video): ``{"format", "ws": (S, V, num_ws, w_dim), "images": (S, V, 3, R, R) uint8,
  "rotation": (S, V, 3) radians, "expression": (S, V, Ke), "landmarks": (S, V, 68, 2) px, "identity": (S,)}``
  (the true parameters are for evaluation). With ``--sources-only`` only view 0 is inverted (ws (S, 1, ...)):
  enough for evaluation, which reenacts view 0 only.
- ``generated``: evaluation pairs whose source is a generated image (its exact W+ code, no inversion error)
  and whose target is a world render with known parameters: the same format, ws (S, 1, ...), view 0 =
  ``G(ws)``, view 1 = the world render; the parameters of view 0 are NaN (unknown).

    python -m gan_bridge.directions.data real OUT.pt --generator G.pt PHOTO_OR_FOLDER... [--world N] [--steps 0.2]
    python -m gan_bridge.directions.data pairs OUT.pt --generator G.pt --sets 200 --views 2 [--split heldout]
    python -m gan_bridge.directions.data generated OUT.pt --generator G.pt --sets 1000 --split heldout
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


def _world_sets(G, sets: int, views: int, split: str, seed: int, start: int):
    from gan_bridge.face.world import FaceWorld, WorldConfig
    if sets < 1 or views < 2:
        raise ValueError(f"need sets >= 1 and views >= 2 per set, got {sets} and {views}")
    world = FaceWorld(WorldConfig(image_size=G.resolution, split=split, seed=seed))
    b = world.identity_sets(range(start, start + sets), views, vary=VARY)
    shape = (sets, views)
    record = {"format": PAIRS_FORMAT, "images": b.image.view(*shape, *b.image.shape[1:]),
              "rotation": b.params.rotation.detach().cpu().view(*shape, 3),
              "expression": b.params.expression.detach().cpu().view(*shape, -1),
              "landmarks": b.landmarks_2d.detach().cpu().view(*shape, 68, 2),
              "identity": b.identity.view(shape)[:, 0].cpu(), "split": split, "seed": seed}
    return record


def world_pairs(G, sets: int, views: int, config: InversionConfig, split: str = "train", seed: int = 0,
                start: int = 0, batch: int = 8, sources_only: bool = False) -> dict:
    """``sets`` same-identity sets of ``views`` world renders at G's resolution, inverted: the ``paired`` file
    (``sources_only``: view 0 alone is inverted, ws (S, 1, num_ws, w_dim))."""
    record = _world_sets(G, sets, views, split, seed, start)
    images = record["images"]
    todo = images[:, :1] if sources_only else images
    record["ws"] = invert_all(G, todo.flatten(0, 1), config, batch).view(*todo.shape[:2], G.num_ws, G.w_dim)
    record["images"] = to_uint8(images)
    return record


@torch.no_grad()
def generated_pairs(G, sets: int, split: str = "heldout", seed: int = 0, start: int = 0,
                    truncation_psi: float = 1.0, batch: int = 64) -> dict:
    """``sets`` evaluation pairs: a generated source (z seeded by ``seed`` + 1,000,003 + ``start``, disjoint
    from training draws) and a world render of set ``start + i`` as the target (the ``generated`` file)."""
    record = _world_sets(G, sets, 2, split, seed, start)
    gen = torch.Generator().manual_seed(seed + 1_000_003 + start)
    ws = torch.cat([G.mapping(torch.randn(min(batch, sets - i), G.z_dim, generator=gen), truncation_psi=truncation_psi)
                    for i in range(0, sets, batch)])
    sources = torch.cat([G.synthesis(w, noise_mode="const") for w in ws.split(batch)])
    record["images"] = to_uint8(torch.stack([sources, record["images"][:, 1]], 1))
    for key in ("rotation", "expression", "landmarks"):
        record[key][:, 0] = float("nan")
    record["ws"] = ws[:, None]
    return record


def world_images(size: int, count: int, split: str = "train", seed: int = 0) -> torch.Tensor:
    """``count`` world renders (view 0 of sets 0..count-1) at ``size`` px in [-1, 1]: stand-ins for real frames."""
    from gan_bridge.face.world import FaceWorld, WorldConfig
    world = FaceWorld(WorldConfig(image_size=size, split=split, seed=seed))
    return torch.cat([world.identity_sets(range(i, min(i + 64, count)), 1, vary=VARY).image
                      for i in range(0, count, 64)])


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
    from gan_bridge.face.photos import ALIGNMENTS, atomic_write
    from gan_bridge.networks.stylegan2 import load_generator
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.directions.data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("real", help="invert photos (or a world cache .pt) for mixed training")
    r.add_argument("out")
    r.add_argument("inputs", nargs="*", help="photos, folders of photos, or world-cache .pt files")
    r.add_argument("--world", type=int, default=0, metavar="N", help="also N train-split world renders")
    r.add_argument("--align", default="ffhq", choices=ALIGNMENTS)
    p = sub.add_parser("pairs", help="invert same-identity world sets for paired fine-tuning / evaluation")
    p.add_argument("out")
    p.add_argument("--sets", type=int, default=100)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--split", default="train", choices=("train", "heldout"))
    p.add_argument("--start", type=int, default=0, help="first set index")
    p.add_argument("--sources-only", action="store_true", help="invert view 0 only (evaluation files)")
    g = sub.add_parser("generated", help="generated sources + world targets with known parameters (evaluation)")
    g.add_argument("out")
    g.add_argument("--sets", type=int, default=1000)
    g.add_argument("--split", default="heldout", choices=("train", "heldout"))
    g.add_argument("--start", type=int, default=0, help="first set index")
    for q in (r, p, g):
        q.add_argument("--generator", required=True)
        q.add_argument("--preset", default="image2stylegan", choices=("projector", "image2stylegan", "pie"))
        q.add_argument("--steps", type=float, default=0.1, help="scale of the preset's step counts")
        q.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    G = load_generator(args.generator).requires_grad_(False)
    config = preset(args.preset, seed=args.seed).scaled(args.steps)
    if args.cmd == "real":
        images = [world_images(G.resolution, args.world, seed=args.seed)] if args.world > 0 else []
        if args.inputs or not images:
            images.append(_photos(args.inputs, G.resolution, args.align))
        record = real_latents(G, torch.cat(images), config)
    elif args.cmd == "pairs":
        record = world_pairs(G, args.sets, args.views, config, args.split, args.seed, args.start,
                             sources_only=args.sources_only)
    else:
        record = generated_pairs(G, args.sets, args.split, args.seed, args.start)
    atomic_write(Path(args.out), lambda tmp: torch.save(record, tmp))
    print(f"{tuple(record['ws'].shape)} latents -> {args.out}")
    return 0


__all__ = ["PAIRS_FORMAT", "REAL_FORMAT", "generated_pairs", "invert_all", "real_latents", "world_images", "world_pairs"]

if __name__ == "__main__":
    raise SystemExit(main())
