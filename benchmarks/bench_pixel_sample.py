"""Benchmark of morph3d.ops.pixel_sample against torch.nn.functional.grid_sample.

The Pixel Attention Sampling case: an aligned face image (B, 3, S, S) and its one-hot segmentation
(B, 19, S, S) sampled with one grid (B, S, S, 2) (identity plus a smooth warp, partly outside the
image). pixel_sample does both in one fused call; the baseline, run in the same process, calls
grid_sample on each input. Three measurements, each interleaved between the two methods:

  - forward;
  - forward + backward with gradients w.r.t. image, segmentation and grid;
  - forward + backward w.r.t. the grid only (the sampling map is learnt, the images are data).

Prints the median and best time of the repeats in ms and the speed-up (baseline / pixel_sample,
of the medians). On CUDA the same runs follow, plus a check that repeated backward passes give
bit-identical gradients (pixel_sample) and whether grid_sample's do.

    python benchmarks/bench_pixel_sample.py [--repeats 10] [--threads N] [--batch 8] [--size 256]

Times on shared machines are noisy: repeat the run and compare the ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from morph3d.ops import pixel_sample


def make_data(batch: int, size: int, classes: int, device: str):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=gen)
    labels = torch.randint(0, classes, (batch, size // 8, size // 8), generator=gen)
    labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    seg = F.one_hot(labels, classes).permute(0, 3, 1, 2).float().contiguous()
    lin = torch.linspace(-1, 1, size)
    ys, xs = torch.meshgrid(lin, lin, indexing="ij")
    identity = torch.stack([xs, ys], -1).expand(batch, size, size, 2)
    shift = torch.rand(batch, 1, 1, 2, generator=gen) * 0.1 - 0.05
    warp = 0.03 * torch.sin(3.0 * identity.flip(-1) + torch.rand(batch, 1, 1, 2, generator=gen) * 6)
    grid = (identity * 1.05 + shift + warp).contiguous()
    grads = [torch.randn(batch, 3, size, size, generator=gen), torch.randn(batch, classes, size, size, generator=gen)]
    return [t.to(device) for t in (image, seg, grid, *grads)]


def fused(image, seg, grid, grads, backward: bool):
    outs = pixel_sample([image, seg], grid)
    if backward:
        torch.autograd.backward(outs, grads)


def baseline(image, seg, grid, grads, backward: bool):
    outs = [F.grid_sample(x, grid, align_corners=False) for x in (image, seg)]
    if backward:
        torch.autograd.backward(outs, grads)


def interleaved(fns, repeats: int, sync):
    """Times each of `fns` `repeats` times, alternating between them; returns lists of ms."""
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def report(label: str, times: dict) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    gs, ps = "grid_sample", "pixel_sample"
    print(f"{label:<34} {gs} {med[gs]:8.1f} ms (best {best[gs]:7.1f})   {ps} {med[ps]:8.1f} ms (best {best[ps]:7.1f})"
          f"   speed-up x{med[gs] / med[ps]:.2f} (best-of x{best[gs] / best[ps]:.2f})")


def run_device(device: str, args) -> None:
    image, seg, grid, g_img, g_seg = make_data(args.batch, args.size, args.classes, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"\n[{device}] image {tuple(image.shape)} + one-hot {tuple(seg.shape)}, grid {tuple(grid.shape)}, "
          f"{args.repeats} repeats")
    cases = [
        ("forward", (), False),
        ("forward + backward (all grads)", ("image", "seg", "grid"), True),
        ("forward + backward (grid grad)", ("grid",), True),
    ]
    for label, needs_grad, backward in cases:
        tensors = {"image": image, "seg": seg, "grid": grid}
        tensors = {k: v.detach().requires_grad_(k in needs_grad) for k, v in tensors.items()}
        args_ = (tensors["image"], tensors["seg"], tensors["grid"], [g_img, g_seg], backward)
        times = interleaved({"grid_sample": lambda: baseline(*args_), "pixel_sample": lambda: fused(*args_)},
                            args.repeats, sync)
        report(label, times)
    if device == "cuda":
        check_determinism(image, seg, grid, [g_img, g_seg])


def check_determinism(image, seg, grid, grads, runs: int = 5) -> None:
    for name, sample in (("pixel_sample", fused), ("grid_sample", baseline)):
        results = []
        for _ in range(runs):
            tensors = [t.detach().requires_grad_() for t in (image, seg, grid)]
            sample(*tensors, grads, True)
            results.append([t.grad for t in tensors])
        same = all(torch.equal(a, b) for other in results[1:] for a, b in zip(results[0], other))
        print(f"{name}: backward bit-identical over {runs} runs: {same}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    run_device("cpu", args)
    if torch.cuda.is_available() and not args.cpu_only:
        run_device("cuda", args)


if __name__ == "__main__":
    main()
