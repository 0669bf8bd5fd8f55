"""Benchmark of the StyleGAN2 generator (grouped-conv modulated convs, transposed-conv FIR upsampling)
against a straightforward composition of the same network run in the same process.

The baseline uses the generator's own weights but computes each modulated conv per sample (a Python loop
of ``F.conv2d`` calls with that sample's modulated kernel) and upsamples by zero insertion followed by a
plain convolution and a separate blur convolution. It is checked to give the same image first.

Measured at 64 and 256 px (batch 8, CPU, a small channel configuration): forward (no grad) and
forward + backward (gradients of all generator parameters). Prints median ms and the speed-up
(baseline / ours).

    python benchmarks/bench_stylegan2.py [--repeats 3] [--threads 1] [--batch 8] [--sizes 64 256]

Times on shared machines are noisy: repeat the run and compare the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402

from gan_bridge.networks.stylegan2 import Generator  # noqa: E402


def _zero_insert(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W) with x at even positions and zeros elsewhere."""
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, 2 * h, 2 * w)
    out[:, :, ::2, ::2] = x
    return out


def _blur(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Depthwise FIR filter via F.conv2d with (before, after) padding on both axes."""
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, f.flip([0, 1])[None, None].expand(x.shape[1], 1, *f.shape), groups=x.shape[1])


def _ref_layer(layer, x, w, noise):
    styles = layer.affine(w)
    f = layer.resample_filter
    outs = []
    for i in range(x.shape[0]):  # one kernel per sample
        k = layer.weight * styles[i].reshape(1, -1, 1, 1)
        k = k * (k.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        xi = x[i:i + 1]
        if layer.up == 2:
            y = F.conv2d(_zero_insert(xi)[:, :, :-1, :-1], k.flip([2, 3]), padding=2)
            y = _blur(y, f * 4, (1, 1))
        else:
            y = F.conv2d(xi, k, padding=1)
        outs.append(y)
    x = torch.cat(outs) + noise * layer.noise_strength
    return F.leaky_relu(x + layer.bias.reshape(1, -1, 1, 1), 0.2) * 2 ** 0.5


def _ref_torgb(layer, x, w):
    styles = layer.affine(w) * layer.weight_gain
    outs = [F.conv2d(x[i:i + 1], layer.weight * styles[i].reshape(1, -1, 1, 1)) for i in range(x.shape[0])]
    return torch.cat(outs) + layer.bias.reshape(1, -1, 1, 1)


def reference_synthesis(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """The generator's synthesis with noise 'const', written the straightforward way."""
    x = img = None
    w_idx = 0
    for block in G.synthesis.blocks():
        if block.in_channels == 0:
            x = block.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        for j, layer in enumerate(block.layers()):
            x = _ref_layer(layer, x, ws[:, w_idx + j], layer.noise_const)
        y = _ref_torgb(block.torgb, x, ws[:, w_idx + block.num_conv])
        img = y if img is None else _blur(_zero_insert(img), block.resample_filter * 4, (2, 1)) + y
        w_idx += block.num_conv
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--channel-base", type=int, default=4096)
    parser.add_argument("--channel-max", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"channel_base {args.channel_base}, channel_max {args.channel_max}")
    print(f"{'size':>5} {'pass':>12} {'ours ms':>9} {'baseline ms':>12} {'speed-up':>9}")
    for size in args.sizes:
        torch.manual_seed(0)
        G = Generator(size, z_dim=128, w_dim=128, channel_base=args.channel_base, channel_max=args.channel_max)
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.data.fill_(0.1)
        with torch.no_grad():
            ws = G.mapping(torch.randn(args.batch, 128))
            err = (G.synthesis(ws, noise_mode="const") - reference_synthesis(G, ws)).abs().max().item()
        if err > 1e-3:
            raise SystemExit(f"baseline and generator disagree at {size} px (max abs {err:.2e})")

        def fwd(fn):
            with torch.no_grad():
                fn()

        def fwd_bwd(fn):
            G.zero_grad(set_to_none=True)
            fn().square().mean().backward()

        ours = lambda: G.synthesis(ws, noise_mode="const")  # noqa: E731
        base = lambda: reference_synthesis(G, ws)  # noqa: E731
        for name, run in (("forward", fwd), ("fwd+bwd", fwd_bwd)):
            t_ours = median_ms(lambda: run(ours), args.repeats)
            t_base = median_ms(lambda: run(base), args.repeats)
            print(f"{size:>5} {name:>12} {t_ours:>9.1f} {t_base:>12.1f} {t_base / t_ours:>8.2f}x")
        print(f"{'':>5} {'max |diff|':>12} {err:.1e}  params {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M")


if __name__ == "__main__":
    main()
