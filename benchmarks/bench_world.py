"""Rendering throughput of the synthetic face world against morph3d's SyntheticFaces (same process).

Prints images/s for FaceWorld single samples and same-identity sets at each size, each as a ratio to a
SyntheticFaces batch (face + noise background, no hair/clothing) of the same size, and saves a PNG grid
of samples (rows: normal samples; identity sets varying pose/expression/lighting; everything but identity).

    python benchmarks/bench_world.py [--sizes 64 128] [--batch 16] [--repeats 3] [--grid /tmp/world_grid.png]
"""
import argparse

import torch

from gan_bridge.face.world import VIEW_FACTORS, FaceWorld, WorldConfig
from gan_bridge.train import save_grid
from morph3d.render import SyntheticFaces
from timing import median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="open")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", default="/tmp/world_grid.png")
    args = ap.parse_args()
    print(f"batch {args.batch}, {torch.get_num_threads()} threads")
    world = None
    for size in args.sizes:
        world = FaceWorld(WorldConfig(image_size=size, model=args.model),
                          model=None if world is None else world.model)
        base = SyntheticFaces(world.model, image_size=size, batch_size=args.batch, backgrounds="noise")
        counter = iter(range(10 ** 9))  # a new batch every call

        def samples():
            first = next(counter) * args.batch
            return world.samples(range(first, first + args.batch))

        def sets():
            first = next(counter) * (args.batch // 4)
            return world.identity_sets(range(first, first + args.batch // 4), 4)

        rows = [("SyntheticFaces (baseline)", lambda: base.batch(next(counter))),
                ("FaceWorld samples", samples), ("FaceWorld identity sets x4", sets)]
        ref = None
        for name, fn in rows:
            ms = median_ms(fn, args.repeats)
            ref = ref or ms
            print(f"  {size:4d} px  {name:28s} {args.batch / ms * 1000:8.1f} images/s   x{ref / ms:5.2f}")
    grid_world = FaceWorld(WorldConfig(image_size=args.sizes[-1], model=args.model), model=world.model)
    images = torch.cat([grid_world.samples(range(8)).image, grid_world.identity_set(3, 8).image,
                        grid_world.identity_set(4, 8, vary=VIEW_FACTORS).image])
    print(f"grid: {save_grid(images, args.grid, cols=8)}")


if __name__ == "__main__":
    main()
