"""Fréchet distance (VGG16 space) of a StyleGAN2 world run's G_ema over its checkpoints.

For each ``ckpt-*.pt`` of RUN_DIR (those at multiples of ``--every`` steps, if given): ``n`` G_ema
images at fixed latents (const noise) against the first ``n`` held-out world renders (held-out
identities, never trained on), both at the run's resolution and compared at 64 px
(``gan_bridge.methods.fd_probe``). The baseline is the first checkpoint, evaluated in the same
process: the ratio column is FD / FD(first); a run that learns has ratios falling well below 1.
As a floor, the FD of ``n`` *train* renders against the same held-out renders is printed too (what
a generator that had learnt the world exactly would score with this many samples).

    python benchmarks/stylegan2_world_fd.py RUN_DIR [--heldout CACHE.pt] [--train CACHE.pt] [--n 256]
        [--every K] [--json OUT]

Defaults for the caches are the run config's ``fd_cache`` / ``data_cache``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gan_bridge.methods.fd_probe import FDProbe, prepare_images
from gan_bridge.methods.stylegan2 import StyleGAN2TrainConfig, generator_from_checkpoint
from gan_bridge.methods.world_cache import load_world_cache
from gan_bridge.metrics.frechet import frechet_distance
from gan_bridge.train import from_dict, list_checkpoints, load_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--heldout", help="held-out world cache (default: the run's fd_cache)")
    p.add_argument("--train", help="train world cache for the floor row (default: the run's data_cache)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--every", type=int, default=0, help="only checkpoints whose step is a multiple of this")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the table as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ckpts = [(s, c) for s, c in list_checkpoints(a.run_dir) if a.every <= 0 or s % a.every == 0]
    if not ckpts:
        raise SystemExit(f"no checkpoints in {a.run_dir}/checkpoints")
    config = from_dict(StyleGAN2TrainConfig, load_checkpoint(ckpts[-1][1])["config"])
    held = load_world_cache(a.heldout or config.cache_path("heldout"))["images"]
    probe = FDProbe(held, config.resolution, a.n, seed=12345)

    rows = []
    print(f"run {a.run_dir}: {config.resolution} px, {a.n} samples per side, VGG16 relu5_3 (avg) at 64 px")
    print(f"{'step':>6} {'kimg':>7} {'FD':>9} {'ratio':>6} {'s':>5}")
    for step, path in ckpts:
        t = time.time()
        G, _ = generator_from_checkpoint(path)
        fd = probe(G)
        base = rows[0]["fd"] if rows else fd
        rows.append({"step": step, "kimg": step * config.batch_size / 1000, "fd": fd})
        print(f"{step:6d} {step * config.batch_size / 1000:7.1f} {fd:9.2f} {fd / base:6.3f} {time.time() - t:5.1f}",
              flush=True)
    train_cache = a.train or config.cache_path("train")
    if Path(train_cache).is_file():
        real = load_world_cache(train_cache)["images"][:a.n]
        floor = frechet_distance(probe.space.extract(prepare_images(real, config.resolution, probe.feature_size)),
                                 probe.reference)
        print(f"floor (train renders vs held-out renders): FD {floor:.2f}")
        rows.append({"step": None, "floor": floor})
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
