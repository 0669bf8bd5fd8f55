"""Time the batched model forward: vertices + albedo + normals + SH shading + landmarks.

Prints milliseconds per batch (default batch 64) for the embedded default model, the Surrey Face
Model when ../shared/models/sfm is present, and any extra model files given on the command line.

    python benchmarks/bench_model_forward.py [--batch 64] [--repeats 20] [MODEL ...]
"""
import argparse
import os
from pathlib import Path

import torch

from morph3d.model import load_model
from timing import median_ms

REPO = Path(__file__).resolve().parents[1]
SFM = REPO.parent / "shared" / "models" / "sfm" / "sfm_shape_3448.bin"


def time_forward(model, batch: int, repeats: int) -> tuple[float, float]:
    """Median milliseconds per batch for forward, and for forward + backward."""
    g = torch.Generator().manual_seed(0)
    params = model.default_params(batch=batch)
    params.identity.copy_(torch.randn(params.identity.shape, generator=g))
    params.expression.copy_(torch.rand(params.expression.shape, generator=g) * 0.3)
    params.texture.copy_(torch.randn(params.texture.shape, generator=g))
    params.rotation.copy_((torch.rand(batch, 3, generator=g) - 0.5) * 0.6)

    def fwd():
        out = model(params)
        return out.colors.sum() + out.landmarks_2d.nan_to_num().sum()

    def fwd_bwd():
        for t in params.tensors().values():
            t.requires_grad_(True)
            t.grad = None
        fwd().backward()
        for t in params.tensors().values():
            t.requires_grad_(False)

    with torch.no_grad():
        forward = median_ms(fwd, repeats)
    return forward, median_ms(fwd_bwd, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="extra model files (any supported format)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    sources = ["open"] + ([str(SFM)] if SFM.exists() else []) + args.models
    print(f"batched forward, batch {args.batch}, {torch.get_num_threads()} threads, float32, CPU")
    print(f"{'model':<28}{'vertices':>10}{'fwd ms':>10}{'fwd+bwd ms':>12}{'ms/face':>10}")
    for src in sources:
        model = load_model(src)
        fwd, both = time_forward(model, args.batch, args.repeats)
        print(f"{model.name[:27]:<28}{model.num_vertices:>10}{fwd:>10.2f}{both:>12.2f}{fwd / args.batch:>10.3f}")


if __name__ == "__main__":
    main()
