"""Time the renderer's outputs on the CPU against the bare rasterizer.

Prints median milliseconds per batch and the ratio to ``rasterize`` alone (same clip positions,
same process) for: render_face (image, mask, depth, normals, landmarks; forward and forward +
backward), render_flow, region and landmark segmentation, and a SyntheticFaces batch.

    python benchmarks/bench_render.py [--model open] [--batch 8] [--size 224] [--repeats 5]
"""
import argparse

import torch

from morph3d.model import load_model
from morph3d.render import (SyntheticFaces, landmark_segmentation, rasterize, rasterize_face, region_segmentation,
                            render_face, render_flow)
from timing import median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="open")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = load_model(args.model)
    gen = SyntheticFaces(model, image_size=args.size, batch_size=args.batch, seed=0)
    params = gen.sample_params(gen.generator(0), args.batch)
    other = params.clone()
    other.rotation[:, 0] += 0.1
    geo, clip, _ = rasterize_face(model, params)
    clip = clip.detach()
    size = (args.size, args.size)

    def fwd_bwd():
        p = params.clone()
        for t in p.tensors().values():
            t.requires_grad_(True)
        r = render_face(model, p)
        (r.image.sum() + r.mask.sum()).backward()

    lm = geo.landmarks_2d.detach()
    rows = [
        ("rasterize (baseline)", lambda: rasterize(clip, model.triangles, size)),
        ("render_face forward", lambda: render_face(model, params)),
        ("render_face forward+backward", fwd_bwd),
        ("render_flow", lambda: render_flow(model, params, other)),
        ("region_segmentation (params)", lambda: region_segmentation(model, params)),
        ("landmark_segmentation", lambda: landmark_segmentation(lm, size)),
        ("SyntheticFaces batch", lambda: gen.batch(1)),
    ]
    print(f"model {model.name}: {model.num_vertices} vertices, {model.num_triangles} triangles; "
          f"batch {args.batch}, {args.size}x{args.size}, {torch.get_num_threads()} threads")
    base = None
    for name, fn in rows:
        with torch.no_grad() if "backward" not in name else torch.enable_grad():
            ms = median_ms(fn, args.repeats)
        base = base or ms
        print(f"  {name:32s} {ms:9.1f} ms   x{ms / base:6.2f}")


if __name__ == "__main__":
    main()
