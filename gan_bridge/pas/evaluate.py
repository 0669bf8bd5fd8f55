"""The PAS ablation on held-out same-identity pose pairs of the synthetic world: L1, SSIM, LPIPS against the true
target and identity CSIM, for (a) the plain 3DMM warp, (b) PAS without inpainting, (c) inpainting without PAS and
(d) the full method (trained runs of the variants 'pas_only', 'inpaint_only', 'full').

    python -m gan_bridge.pas.evaluate --full runs/pas --pas-only runs/pas_b --inpaint-only runs/pas_c --pairs 500
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch

from gan_bridge.face.pas_prep import flow_warp, landmarks_3d
from gan_bridge.face.world import FaceWorld, WorldBatch, WorldConfig

from .edit import PasEditor

# A method maps (world, a set-major batch of 2-view sets) -> images (B, 3, H, W) of view 0 turned to view 1.
PairMethod = Callable[[FaceWorld, WorldBatch], torch.Tensor]
METRICS = ("l1", "ssim", "lpips", "csim")


def warp_method(world: FaceWorld, batch: WorldBatch) -> torch.Tensor:
    """(a) the source image warped by the exact 3DMM flow (the world's true parameters)."""
    b = len(batch) // 2
    src = torch.arange(b) * 2
    return flow_warp(world.model, batch.image[src], _select(batch, src), _select(batch, src + 1))


def _select(batch: WorldBatch, idx: torch.Tensor):
    from morph3d.model import Camera, FaceParams
    p = batch.params
    cam = Camera(p.camera.focal[idx], p.camera.principal[idx], p.camera.image_size, p.camera.kind)
    return FaceParams(identity=p.identity[idx], expression=p.expression[idx], texture=p.texture[idx],
                      rotation=p.rotation[idx], translation=p.translation[idx], lighting=p.lighting[idx],
                      camera=cam, articulation=None if p.articulation is None else p.articulation[idx])


def editor_method(editor: PasEditor) -> PairMethod:
    """A trained PAS variant as a pair method (its final output)."""
    def run(world: FaceWorld, batch: WorldBatch) -> torch.Tensor:
        lm = landmarks_3d(world.model, batch.params).float()
        return editor.edit(batch.image[0::2].float(), lm[0::2], lm[1::2]).final
    return run


@torch.no_grad()
def evaluate(methods: dict[str, PairMethod], world: FaceWorld, pairs: int, batch_size: int = 16,
             vary=("pose",), csim: bool = True) -> dict[str, dict[str, float]]:
    """Mean metrics per method over held-out pairs 0..pairs-1 of ``world`` (its held-out split).

    l1: mean |fake - J| in [-1, 1] units; ssim: ``gan_bridge.metrics.image.ssim``; lpips: AlexNet LPIPS v0.1;
    csim: dlib identity cosine similarity of fake and J, both aligned by J's landmarks (``csim=False`` skips it)."""
    from gan_bridge.metrics.image import ssim
    from gan_bridge.networks.perceptual import lpips
    if pairs < 1 or not methods:
        raise ValueError("evaluate needs at least one pair and one method")
    held = world.heldout()
    sums = {name: dict.fromkeys(METRICS, 0.0) for name in methods}
    for start in range(0, pairs, batch_size):
        batch = held.identity_sets(range(start, min(pairs, start + batch_size)), 2, vary)
        target, lm_t = batch.image[1::2].float(), batch.landmarks_2d[1::2].float()
        for name, method in methods.items():
            fake = method(held, batch).float().clamp(-1, 1)
            s = sums[name]
            s["l1"] += float((fake - target).abs().mean((1, 2, 3)).sum())
            s["ssim"] += float(ssim(fake, target).sum())
            s["lpips"] += float(lpips(fake, target).sum())
            if csim:
                from gan_bridge.face.identity import image_csim
                s["csim"] += float(image_csim(fake, lm_t, target, lm_t).sum())
    return {name: {k: v / pairs for k, v in s.items() if csim or k != "csim"} for name, s in sums.items()}


def source_method(world: FaceWorld, batch: WorldBatch) -> torch.Tensor:
    """Reference: the source image unchanged (what every method must improve on)."""
    return batch.image[0::2]


@torch.no_grad()
def comparison_sheet(methods: dict[str, PairMethod], world: FaceWorld, path, pairs: int = 6, first: int = 1000,
                     vary=("pose",)):
    """A contact sheet of held-out pairs ``first``.. (apart from the scored ones), one per row: source, true
    target, then every method's output."""
    from gan_bridge.face.photos import save_sheet
    held = world.heldout()
    batch = held.identity_sets(range(first, first + pairs), 2, vary)
    outputs = {name: method(held, batch).float().clamp(-1, 1) for name, method in methods.items()}
    panels = []
    for i in range(pairs):
        panels += [("source", batch.image[2 * i]), ("target", batch.image[2 * i + 1])]
        panels += [(name, out[i]) for name, out in outputs.items()]
    return save_sheet(panels, path, columns=2 + len(methods), title="PAS pose editing on held-out world pairs",
                      notes=["per row: source, the same identity in the target pose, then each method"])


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`evaluate`'s results."""
    cols = [m for m in METRICS if any(m in r for r in results.values())]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |" for name, r in results.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.pas.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", help="run folder / checkpoint of variant 'full' (d)")
    ap.add_argument("--pas-only", help="run of variant 'pas_only' (b)")
    ap.add_argument("--inpaint-only", help="run of variant 'inpaint_only' (c)")
    ap.add_argument("--pairs", type=int, default=500, help="held-out pairs (default 500)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-csim", action="store_true", help="skip the dlib identity similarity")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    ap.add_argument("--sheet", default=None, help="also write a comparison sheet of 6 other held-out pairs here")
    args = ap.parse_args(argv)
    methods: dict[str, PairMethod] = {"(a) 3DMM warp": warp_method}
    config = None
    for label, path in (("(b) PAS only", args.pas_only), ("(c) inpainting only", args.inpaint_only),
                        ("(d) PAS + inpainting", args.full)):
        if path:
            editor = PasEditor.load(path)
            if config is not None and editor.config.image_size != config.image_size:
                raise SystemExit("all runs must have the same image_size")
            config = editor.config
            methods[label] = editor_method(editor)
    c = config
    world = FaceWorld(WorldConfig(image_size=c.image_size, seed=c.world_seed, model=c.world_model,
                                  train_identities=c.world_identities) if c else WorldConfig())
    vary = c.vary if c else ("pose",)
    results = evaluate({**methods, "source, unchanged (reference)": source_method}, world, args.pairs, args.batch,
                       vary, not args.no_csim)
    print(table(results))
    if args.out:
        import json
        from pathlib import Path
        record = {"runs": {"full": args.full, "pas_only": args.pas_only, "inpaint_only": args.inpaint_only},
                  "pairs": args.pairs, "results": results}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.sheet:
        print(comparison_sheet(methods, world, args.sheet, vary=vary))
    return 0


__all__ = ["METRICS", "comparison_sheet", "editor_method", "evaluate", "source_method", "table", "warp_method"]

if __name__ == "__main__":
    raise SystemExit(main())
