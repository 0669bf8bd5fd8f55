"""LI-Net on held-out identities of the synthetic world's grid: SSIM and a Fréchet distance against the true reenacted
faces I_s,q, landmark NME and pose error of the result against the driving face, identity CSIM against the source.

    python -m gan_bridge.linet.evaluate --weights runs/linet --examples 500
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch

from gan_bridge.face.world import FaceWorld, WorldConfig

from .method import LinetMethod
from .reenact import Reenactor

# A method maps an examples dict (LinetMethod.examples) to reenacted faces (B, 3, H, W) in [-1, 1].
ReenactMethod = Callable[[dict], torch.Tensor]
METRICS = ("ssim", "fd", "nme", "pose_deg", "csim")


def reenactor_method(model: Reenactor, use_transformer: bool = True) -> ReenactMethod:
    """A trained LI-Net (or its ablation without T) as a method."""
    def run(x: dict) -> torch.Tensor:
        return model(x["I_sp"], x["lm_sp"], x["lm_dq"], use_transformer).final
    return run


def baseline_method(model: Reenactor) -> ReenactMethod:
    """The pix2pix baseline of a run trained with the 'pix2pix' stage."""
    def run(x: dict) -> torch.Tensor:
        return model.baseline(x["I_sp"], x["lm_dq"])
    return run


def nme(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean point error (B, 68, 2) -> (B,), normalised by the target's outer-eye-corner distance (points 36, 45)."""
    scale = (target[:, 36] - target[:, 45]).norm(dim=-1).clamp_min(1e-6)
    return (predicted - target).norm(dim=-1).mean(1) / scale


@torch.no_grad()
def evaluate(methods: dict[str, ReenactMethod], sampler: LinetMethod, examples: int, batch_size: int = 16,
             features: Optional[Callable] = None, encoder: Optional[Callable] = None,
             identity: Optional[Callable] = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean metrics per method over ``examples`` held-out (source, driving) examples drawn by ``sampler``.

    features: images -> (B, D) for the Fréchet distance (e.g. ``gan_bridge.metrics.vgg16_space()``);
    encoder: images -> ``FaceCoefficients`` with landmarks and rotation (``gan_bridge.face.shape.load_encoder``) for
    NME (against the driving face's true landmarks) and pose error (degrees, mean over yaw/pitch/roll, against the
    driving face's true pose); identity: ``(a, lm_a, b, lm_b) -> (B,)`` CSIM against the source (e.g.
    ``gan_bridge.face.identity.image_csim``). A metric whose network is None is left out.
    """
    from gan_bridge.metrics.frechet import frechet_distance
    from gan_bridge.metrics.image import ssim
    if examples < 2 or not methods:
        raise ValueError("evaluate needs at least two examples and one method")
    held = sampler.world.heldout()
    gen = torch.Generator().manual_seed(seed)
    ids = min(held.num_identities, sampler.config.identities)
    sums = {name: dict.fromkeys(METRICS, 0.0) for name in methods}
    feats: dict[str, list] = {name: [] for name in [*methods, "truth"]}
    for start in range(0, examples, batch_size):
        x = sampler.examples(held, sampler.draws(min(batch_size, examples - start), gen, ids))
        truth = x["I_sq"]
        if features is not None:
            feats["truth"].append(features(truth).double().cpu())
        for name, method in methods.items():
            fake = method(x).float().clamp(-1, 1)
            s = sums[name]
            s["ssim"] += float(ssim(fake, truth).sum())
            if features is not None:
                feats[name].append(features(fake).double().cpu())
            if encoder is not None:
                coeffs = encoder(fake)
                s["nme"] += float(nme(coeffs.landmarks.float(), x["lm_dq"]).sum())
                s["pose_deg"] += float(torch.rad2deg((coeffs.rotation.float() - x["pose_dq"]).abs()).mean(1).sum())
            if identity is not None:
                s["csim"] += float(identity(fake, x["lm_sq"], x["I_sp"], x["lm_sp"]).sum())
    out = {}
    for name, s in sums.items():
        row = {"ssim": s["ssim"] / examples}
        if features is not None:
            row["fd"] = frechet_distance(torch.cat(feats[name]).numpy(), torch.cat(feats["truth"]).numpy())
        if encoder is not None:
            row["nme"], row["pose_deg"] = s["nme"] / examples, s["pose_deg"] / examples
        if identity is not None:
            row["csim"] = s["csim"] / examples
        out[name] = row
    return out


@torch.no_grad()
def comparison_sheet(methods: dict[str, ReenactMethod], sampler: LinetMethod, path, examples: int = 6,
                     seed: int = 1):
    """A contact sheet of ``examples`` held-out examples, one per row: source, driving, the true reenacted face,
    then every method's output."""
    from gan_bridge.face.photos import save_sheet
    held = sampler.world.heldout()
    ids = min(held.num_identities, sampler.config.identities)
    x = sampler.examples(held, sampler.draws(examples, torch.Generator().manual_seed(seed), ids))
    outputs = {name: method(x).float().clamp(-1, 1) for name, method in methods.items()}
    panels = []
    for i in range(examples):
        panels += [("source", x["I_sp"][i]), ("driving", x["I_dq"][i]), ("truth", x["I_sq"][i])]
        panels += [(name, out[i]) for name, out in outputs.items()]
    return save_sheet(panels, path, columns=3 + len(methods), title="LI-Net on held-out identities of the world",
                      notes=["per row: source, driving (another identity), the source truly reenacted, then each "
                             "method"])


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`evaluate`'s results."""
    cols = [m for m in METRICS if any(m in r for r in results.values())]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |" for name, r in results.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.linet.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="'gan-bridge train linet' run folder or ckpt-*.pt")
    ap.add_argument("--examples", type=int, default=500, help="held-out examples (default 500)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--regressor", default=None, help="image -> 3DMM regressor weights for NME and pose error "
                                                      "(default: morph3d's bundled regressor)")
    ap.add_argument("--baseline", action="store_true", help="also score the pix2pix baseline (trained in another "
                                                             "stage of the run's lineage)")
    ap.add_argument("--no-csim", action="store_true", help="skip the dlib identity similarity")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=RUN",
                    help="score another LI-Net run (e.g. a fine-tuned G) as 'LI-Net (LABEL)'; repeatable")
    ap.add_argument("--sheet", default=None, help="also write a comparison sheet of 6 held-out examples here")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.metrics.features import vgg16_space
    model = Reenactor.load(args.weights)
    c = model.config
    world = FaceWorld(WorldConfig(image_size=c.image_size, seed=c.world_seed, model=c.world_model,
                                  train_identities=c.identities))
    sampler = LinetMethod(c, world=world)  # draws and renders examples; its networks are not built
    identity = None
    if not args.no_csim:
        from gan_bridge.face.identity import image_csim
        identity = image_csim
    methods = {"LI-Net": reenactor_method(model), "LI-Net without T": reenactor_method(model, False)}
    for item in args.also:
        label, sep, run = item.partition("=")
        if not sep or not label or not run:
            raise SystemExit(f"--also {item!r}: use LABEL=RUN")
        other = Reenactor.load(run)
        if other.size != c.image_size or other.config.world_seed != c.world_seed:
            raise SystemExit(f"--also {run}: trained on another image size or world than {args.weights}")
        methods[f"LI-Net ({label})"] = reenactor_method(other)
    if "P" in model.networks and ("pix2pix" in c.stages or args.baseline):
        methods["pix2pix baseline"] = baseline_method(model)
    references = {"source (no reenactment)": lambda x: x["I_sp"], "truth (ceiling)": lambda x: x["I_sq"]}
    results = evaluate({**methods, **references}, sampler, args.examples, args.batch, vgg16_space(),
                       load_encoder(args.regressor, c.world_model), identity)
    print(table(results))
    if args.out:
        import json
        from pathlib import Path
        record = {"weights": str(args.weights), "examples": args.examples, "results": results}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.sheet:
        print(comparison_sheet(methods, sampler, args.sheet))
    return 0


__all__ = ["METRICS", "baseline_method", "comparison_sheet", "evaluate", "nme", "reenactor_method", "table"]

if __name__ == "__main__":
    raise SystemExit(main())
