"""Time the batched model forward and forward + backward: vertices + albedo + normals + SH shading + landmarks.

Prints milliseconds per batch (default batch 64) for the embedded default model, the Surrey Face
Model when ../shared/models/sfm is present, and any extra model files given on the command line,
and the forward + backward / forward ratio. Each model is timed twice in the same process: with
the fused vertex-normal and SH irradiance kernels (``now``), and with the pure-torch code they
replaced (``before``: gathers + index_add normals, nine SH basis functions; ``reference_paths.py``),
interleaved, so the speed-ups are ratios measured under the same machine load.

    python benchmarks/bench_model_forward.py [--batch 64] [--repeats 20] [--threads T] [MODEL ...]
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from morph3d.model import load_model
from reference_paths import reference_paths

REPO = Path(__file__).resolve().parents[1]
SFM = REPO.parent / "shared" / "models" / "sfm" / "sfm_shape_3448.bin"


def interleaved_median_ms(fns: dict, repeats: int) -> dict:
    """Median milliseconds of each callable, timed in turns (one call of each per round, after a warm-up
    round) so that a change of machine load during the run hits all of them alike."""
    times = {name: [] for name in fns}
    for r in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: 1000.0 * statistics.median(t) for name, t in times.items()}


def model_calls(model, batch: int) -> dict:
    """Forward and forward + backward of a random batch, each with the current and the reference paths."""
    g = torch.Generator().manual_seed(0)
    params = model.default_params(batch=batch)
    params.identity.copy_(torch.randn(params.identity.shape, generator=g))
    params.expression.copy_(torch.rand(params.expression.shape, generator=g) * 0.3)
    params.texture.copy_(torch.randn(params.texture.shape, generator=g))
    params.rotation.copy_((torch.rand(batch, 3, generator=g) - 0.5) * 0.6)

    def fwd():
        out = model(params)
        return out.colors.sum() + out.landmarks_2d.nan_to_num().sum()

    def forward():
        with torch.no_grad():
            fwd()

    def fwd_bwd():
        for t in params.tensors().values():
            t.requires_grad_(True)
            t.grad = None
        fwd().backward()
        for t in params.tensors().values():
            t.requires_grad_(False)

    def before(fn):
        def run():
            with reference_paths():
                fn()
        return run

    return {("before", "fwd"): before(forward), ("before", "both"): before(fwd_bwd),
            ("now", "fwd"): forward, ("now", "both"): fwd_bwd}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="extra model files (any supported format)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all CPUs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources = ["open"] + ([str(SFM)] if SFM.exists() else []) + args.models
    print(f"batched forward, batch {args.batch}, {torch.get_num_threads()} threads, float32, CPU")
    print(f"{'model':<28}{'path':>8}{'vertices':>10}{'fwd ms':>10}{'fwd+bwd ms':>12}{'ratio':>8}{'ms/face':>10}")
    for src in sources:
        model = load_model(src)
        ms = interleaved_median_ms(model_calls(model, args.batch), args.repeats)
        for path in ("before", "now"):
            fwd, both = ms[path, "fwd"], ms[path, "both"]
            print(f"{model.name[:27]:<28}{path:>8}{model.num_vertices:>10}{fwd:>10.2f}{both:>12.2f}"
                  f"{both / fwd:>8.2f}{fwd / args.batch:>10.3f}")
        print(f"{'':<28}{'speed-up':>8}{'':>10}{ms['before', 'fwd'] / ms['now', 'fwd']:>9.2f}x"
              f"{ms['before', 'both'] / ms['now', 'both']:>11.2f}x")


if __name__ == "__main__":
    main()
