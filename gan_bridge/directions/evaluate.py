"""Measures of reenactment in kind with Bounareli et al.'s Tables 1-4, on held-out same-identity world sets.

For each set i the source is view 0 (its inverted W+ code, the photo for p_s) and the target is view 1 of
set i (self-reenactment) or of set i + 1 (cross-reenactment). Measures of the reenacted image:
CSIM with the source (identity network), LPIPS against the target (self only: the true image), NME of
its landmarks against the target's true landmarks (normalised by the target's outer-eye-corner distance),
head-pose error (mean |yaw, pitch, roll| difference, degrees) and expression error (mean |difference| of the
m_e coefficients) against the target's true parameters; pose and landmarks of the reenacted image are
read by the encoder.

References: the source unedited (A = 0), and a baseline: a linear regression from Delta p to Delta w (the
first L layers) fitted by least squares on random generated source / target pairs, the same form as A but
without the losses.

    python -m gan_bridge.directions.evaluate --generator G.pt --pairs heldout_pairs.pt A.pt [A2.pt ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch

from .model import Directions, load_directions
from .reenact import reenact_latents, rescaled_pose

MEASURES = ("csim", "lpips", "nme", "pose_deg", "expression")


def least_squares_directions(delta_p: torch.Tensor, delta_w: torch.Tensor) -> torch.Tensor:
    """A (D, k) minimising |delta_p A^T - delta_w|^2: delta_p (N, k) rescaled, delta_w (N, D = L * w_dim)."""
    if delta_p.shape[0] < delta_p.shape[1]:
        raise ValueError(f"need at least k={delta_p.shape[1]} pairs to fit the baseline, got {delta_p.shape[0]}")
    return torch.linalg.lstsq(delta_p.double(), delta_w.double()).solution.T.float()


@torch.no_grad()
def linear_baseline(G, directions: Directions, encoder, n: int, batch: int = 64, seed: int = 0,
                    truncation_psi: float = 1.0) -> Directions:
    """A copy of ``directions`` (same L, m_e, range) whose A is the least-squares Delta p -> Delta w map
    over ``n`` random generated pairs."""
    gen = torch.Generator().manual_seed(seed)
    dps, dws = [], []
    L = directions.num_layers
    for start in range(0, n, batch):
        m = min(batch, n - start)
        ws = G.mapping(torch.randn(2 * m, G.z_dim, generator=gen), truncation_psi=truncation_psi)
        q = rescaled_pose(directions, encoder, G.synthesis(ws, noise_mode="const"))
        dps.append(q[m:] - q[:m])
        dws.append((ws[m:, :L] - ws[:m, :L]).flatten(1))
    out = copy.deepcopy(directions)
    out.A.copy_(least_squares_directions(torch.cat(dps), torch.cat(dws)))
    return out


def nme(landmarks: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Normalised mean error (B,): mean point distance / the truth's outer-eye-corner (36-45) distance."""
    norm = (truth[:, 36] - truth[:, 45]).norm(dim=-1).clamp_min(1e-6)
    return (landmarks - truth).norm(dim=-1).mean(1) / norm


@torch.no_grad()
def evaluate(G, directions: Directions, encoder, pairs: dict, cross: bool = False, identity=None, lpips_fn=None,
             batch: int = 16) -> dict[str, float]:
    """The measures (``MEASURES``; csim without ``identity``, lpips without ``lpips_fn`` or in cross mode are
    NaN) averaged over the sets of ``pairs`` (the file of ``gan_bridge.directions.data.world_pairs``)."""
    sets = pairs["ws"].shape[0]
    if sets < 2 and cross:
        raise ValueError("cross-reenactment needs at least 2 sets")
    t = (torch.arange(sets) + 1) % sets if cross else torch.arange(sets)
    images = pairs["images"].float() / 127.5 - 1
    sums = {k: 0.0 for k in MEASURES}
    m = directions.expression_dims
    for idx in torch.arange(sets).split(batch):
        src, tgt = images[idx, 0], images[t[idx], 1]
        out = reenact_latents(G, directions, encoder, pairs["ws"][idx, 0].float(), tgt, source_images=src)
        c = encoder(out.reenacted)
        rot_t, expr_t = pairs["rotation"][t[idx], 1], pairs["expression"][t[idx], 1]
        sums["pose_deg"] += ((c.rotation - rot_t).abs().mean(1) * 180 / math.pi).sum().item()
        sums["expression"] += (c.expression[:, :m] - expr_t[:, :m]).abs().mean(1).sum().item()
        sums["nme"] += nme(c.landmarks, pairs["landmarks"][t[idx], 1]).sum().item()
        if identity is not None:
            cs = encoder(src)
            sums["csim"] += torch.nn.functional.cosine_similarity(
                identity(src, cs.landmarks), identity(out.reenacted, c.landmarks), dim=1).sum().item()
        if lpips_fn is not None and not cross:
            sums["lpips"] += lpips_fn(out.reenacted.clamp(-1, 1), tgt).sum().item()
    res = {k: v / sets for k, v in sums.items()}
    if identity is None:
        res["csim"] = float("nan")
    if lpips_fn is None or cross:
        res["lpips"] = float("nan")
    return res


def markdown_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """{method: {"self"|"cross": measures}} -> a markdown table."""
    head = ["method"] + [f"self {k}" for k in MEASURES] + [f"cross {k}" for k in MEASURES if k != "lpips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        vals = [r["self"][k] for k in MEASURES] + [r["cross"][k] for k in MEASURES if k != "lpips"]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.networks.stylegan2 import load_generator
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.directions.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("directions", nargs="+", help="directions files to compare")
    ap.add_argument("--generator", required=True)
    ap.add_argument("--pairs", required=True, help="held-out pairs (python -m gan_bridge.directions.data pairs)")
    ap.add_argument("--encoder", default=None, help="regressor weights (default: morph3d's bundled)")
    ap.add_argument("--baseline-samples", type=int, default=2000, help="pairs for the linear baseline (0: none)")
    ap.add_argument("--no-identity", action="store_true", help="skip CSIM (no dlib identity network)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    G = load_generator(args.generator).requires_grad_(False)
    encoder = load_encoder(args.encoder)
    pairs = torch.load(args.pairs, map_location="cpu", weights_only=True)
    identity = None
    if not args.no_identity:
        from gan_bridge.face.identity import identity_embedding
        identity = identity_embedding
    from gan_bridge.networks.perceptual import lpips
    methods = {}
    for path in args.directions:
        d = load_directions(path)
        d.check_generator(G)
        methods[Path(path).stem] = d
    first = next(iter(methods.values()))
    if args.baseline_samples:
        methods["linear baseline"] = linear_baseline(G, first, encoder, args.baseline_samples)
    methods["no edit (A = 0)"] = copy.deepcopy(first)
    with torch.no_grad():
        methods["no edit (A = 0)"].A.zero_()
    rows = {name: {mode: evaluate(G, d, encoder, pairs, mode == "cross", identity, lpips)
                   for mode in ("self", "cross")} for name, d in methods.items()}
    print(markdown_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


__all__ = ["MEASURES", "evaluate", "least_squares_directions", "linear_baseline", "markdown_table", "nme"]

if __name__ == "__main__":
    raise SystemExit(main())
