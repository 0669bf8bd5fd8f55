"""Measurements of RigNet edits and PIE embeddings (PIE Table 2 in kind), in the synthetic world.

For each embedding method (:data:`VARIANTS`: PIE and the paper's ablations, and plain Image2StyleGAN W+
inversion) and on held-out latents:

- reconstruction PSNR (dB) / SSIM of the projection (photos only);
- editing error: for pose, the angle (degrees) of the rotation between the desired and the estimated
  head pose of the edited image; for expression, the mean absolute coefficient error; for lighting, the
  RMS error of the SH coefficients relative to the constant term;
- recognition error: ||Psi(I) - Psi(I_edit)||^2 with the identity network (Eq. 14's distance);
- changes of what was not edited: mean absolute change of the other blocks (identity, expression,
  rotation in degrees, lighting) against the unedited face's estimate ('changed_*'), and for photos also
  against the world's true parameters ('vs_truth_*').

Edit targets are the tau-parameters of held-out generated faces, as PIE's edit energy samples them.

    python -m gan_bridge.stylerig.evaluate --generator G.pt --rignet rignets/ --mode pose --photos 50 \
        --latents 200 --edits 4 --out stylerig_eval.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from gan_bridge.face.rig import MODE_FIELD, RigFace, tau

from .config import PIEConfig
from .edit import apply_edit
from .pie import embed

VARIANTS = {
    "pie": {},
    "no_recognition": {"recognition": False},
    "no_modification": {"modification": False},
    "direct_w+": {"hierarchical": False},
    "image2stylegan": {"preset": "image2stylegan", "modification": False, "recognition": False},
}
BLOCKS = ("identity", "expression", "rotation", "lighting")


def rotation_angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (B,) in degrees of the rotation between Euler rotations a, b (B, 3) radians."""
    from morph3d.model import euler_to_matrix
    rel = euler_to_matrix(a).transpose(1, 2) @ euler_to_matrix(b)
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def edit_error(mode: str, target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per-sample error (B,) of an edit (see the module docstring for units)."""
    if mode == "pose":
        return rotation_angle_deg(target, estimate)
    if mode == "expression":
        return (target - estimate).abs().mean(1)
    t, e = target.view(-1, 3, 9), estimate.view(-1, 3, 9)
    return ((t - e) / t[..., :1].abs().clamp_min(1e-3)).square().mean((1, 2)).sqrt()


def block_changes(before, after, mode: str) -> dict[str, torch.Tensor]:
    """Mean absolute change (B,) of every block of FaceParams that ``mode`` does not edit."""
    out = {}
    for block in BLOCKS:
        if block == MODE_FIELD[mode]:
            continue
        if block == "rotation":
            out[block] = rotation_angle_deg(before.rotation, after.rotation)
        else:
            out[block] = (getattr(before, block) - getattr(after, block)).abs().mean(1)
    return out


def sample_targets(G, face: RigFace, mode: str, n: int, seed: int, truncation_psi: float = 0.7) -> torch.Tensor:
    """tau-parameters (n, P) of n held-out generated faces (seeds far from training's)."""
    gen = torch.Generator().manual_seed(10_000_019 + seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=gen), truncation_psi=truncation_psi)
        return tau(face.estimate(G.synthesis(ws, noise_mode="const").clamp(-1, 1)).params, mode)


@torch.no_grad()
def measure_edits(G, rignet, face: RigFace, ws: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor,
                  truth=None, identity=None, feedback: bool = True, edit: bool = True) -> dict[str, list[float]]:
    """Edit every code of ``ws`` (B, num_ws, w_dim) to every target (K, P); per-edit lists of 'edit_error',
    'recognition' (vs ``reference`` (B, 3, H, W)), 'changed_<block>' (vs the estimate of the unedited codes'
    image: what the edit changed beyond its own block) and, given ``truth`` FaceParams, 'vs_truth_<block>'
    (vs the true parameters: the edit, the projection and the regressor's errors together). ``edit=False``
    keeps the codes unchanged: the 'no edit' baseline, whose edit error is how far the targets are from the
    faces as they are."""
    from gan_bridge.face.identity import identity_embedding
    identity = identity or identity_embedding
    mode = rignet.mode
    ref_c = face.estimate(reference.clamp(-1, 1))
    base = face.estimate(G.synthesis(ws, noise_mode="const").clamp(-1, 1)).params
    psi_ref = identity(reference.clamp(-1, 1), ref_c.landmarks)
    out: dict[str, list[float]] = {"edit_error": [], "recognition": []}
    for k in range(targets.shape[0]):
        target = targets[k:k + 1].expand(ws.shape[0], -1)
        edited = ws
        if edit:
            with torch.enable_grad():  # the feedback estimate runs the encoder; no gradients are taken
                edited = apply_edit(G, rignet, face, ws, target, feedback)
        image = G.synthesis(edited, noise_mode="const").clamp(-1, 1)
        c = face.estimate(image)
        out["edit_error"] += edit_error(mode, target, tau(c.params, mode)).tolist()
        out["recognition"] += (identity(image, c.landmarks) - psi_ref).square().sum(1).tolist()
        for block, change in block_changes(base, c.params, mode).items():
            out.setdefault(f"changed_{block}", []).extend(change.tolist())
        if truth is not None:
            for block, change in block_changes(truth, c.params, mode).items():
                out.setdefault(f"vs_truth_{block}", []).extend(change.tolist())
    return out


def summarize(values: dict[str, list[float]]) -> dict[str, float]:
    return {k: sum(v) / len(v) for k, v in values.items() if v}


def evaluate_photos(G, rignet, face: RigFace, images: torch.Tensor, truth, targets: torch.Tensor,
                    variants=tuple(VARIANTS), steps_scale: float = 1.0, identity=None, seed: int = 0,
                    progress: bool = False) -> dict[str, dict[str, float]]:
    """Embed ``images`` (B, 3, H, W) with every variant, then edit: {variant: averaged measures}."""
    results = {}
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        config = replace(PIEConfig(steps_scale=steps_scale, seed=seed), **VARIANTS[name])
        result = embed(G, rignet, face, images, config, identity=identity, progress=progress)
        row = {"psnr": sum(result.metrics["psnr"]) / len(images)}
        if "ssim" in result.metrics:
            row["ssim"] = sum(result.metrics["ssim"]) / len(images)
        row.update(summarize(measure_edits(G, rignet, face, result.ws, images, targets, truth, identity)))
        results[name] = row
    return results


def evaluate_latents(G, rignet, face: RigFace, n: int, targets: torch.Tensor, seed: int = 0,
                     truncation_psi: float = 0.7, identity=None, edit: bool = True) -> dict[str, float]:
    """Edits of ``n`` held-out generated faces (no embedding): averaged measures (``edit=False``: the
    'no edit' baseline on the same faces and targets)."""
    gen = torch.Generator().manual_seed(20_000_003 + seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=gen), truncation_psi=truncation_psi)
        images = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    return summarize(measure_edits(G, rignet, face, ws, images, targets, None, identity, edit=edit))


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    """{row name: {measure: value}} -> a Markdown table (measures in first-seen order)."""
    cols = list(dict.fromkeys(k for r in rows.values() for k in r))
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if c in r else "" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.face.world import FaceWorld, WorldConfig
    from gan_bridge.networks.stylegan2 import load_generator

    from .rignet import load_rignets
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.stylerig.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--generator", required=True)
    ap.add_argument("--rignet", required=True, help="folder of RigNets (<mode>.pt)")
    ap.add_argument("--mode", default="pose", choices=("pose", "expression", "lighting"))
    ap.add_argument("--photos", type=int, default=20, help="held-out synthetic photos to embed")
    ap.add_argument("--latents", type=int, default=100, help="held-out generated faces to edit")
    ap.add_argument("--edits", type=int, default=4, help="edit targets per face")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="scale PIE's step counts")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    G = load_generator(args.generator).eval().requires_grad_(False)
    rignets = load_rignets(args.rignet)
    if args.mode not in rignets:
        raise SystemExit(f"{args.rignet} has no {args.mode}.pt")
    rignet = rignets[args.mode]
    rignet.check_generator(G)
    face = RigFace(load_encoder(args.encoder, "open"))  # framed as RigNet training frames by default
    targets = sample_targets(G, face, args.mode, args.edits, args.seed)
    rows = {}
    if args.latents:
        rows["held-out latents, no edit"] = evaluate_latents(G, rignet, face, args.latents, targets, args.seed,
                                                             edit=False)
        rows["held-out latents, RigNet"] = evaluate_latents(G, rignet, face, args.latents, targets, args.seed)
    if args.photos:
        world = FaceWorld(WorldConfig(image_size=G.resolution, split="heldout", seed=args.seed))
        batch = world.samples(range(args.photos))
        rows.update(evaluate_photos(G, rignet, face, batch.image, batch.params, targets,
                                    args.variants.split(","), args.steps_scale, seed=args.seed, progress=True))
    print(markdown_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"mode": args.mode, "rows": rows, "args": vars(args)}, indent=1) + "\n")
    return 0


__all__ = ["BLOCKS", "VARIANTS", "block_changes", "edit_error", "evaluate_latents", "evaluate_photos",
           "markdown_table", "measure_edits", "rotation_angle_deg", "sample_targets", "summarize"]

if __name__ == "__main__":
    raise SystemExit(main())
