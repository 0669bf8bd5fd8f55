"""Measures of reenactment in kind with Bounareli et al.'s Tables 1-4, on held-out evaluation pairs.

Three modes (the files of ``gan_bridge.directions.data``):
- ``self``: held-out same-identity world sets; the source is view 0 (its inverted W+ code, the photo for
  p_s), the target view 1 of the same set. CSIM and LPIPS compare with the target (its true image exists).
- ``cross``: the same sets, the target taken from set i + 1 (another identity); CSIM compares with the source.
- ``generated``: generated sources (exact W+ codes, no inversion error) with world targets of known
  parameters (the ``generated`` file); CSIM compares with the source.
Measures of the reenacted image: CSIM (identity network), LPIPS (self only), NME of its landmarks against
the target's true landmarks (normalised by the target's outer-eye-corner distance), head-pose error (mean
|yaw, pitch, roll| difference, degrees) and expression error (mean |difference| of the m_e coefficients)
against the target's true parameters; landmarks and parameters of the reenacted image are read by the
encoder.

References: the source unedited (A = 0), and a baseline: a linear regression from Delta p to Delta w (the
first L layers) fitted by least squares on random generated source / target pairs, the same form as A but
without the losses.

    python -m gan_bridge.directions.evaluate --generator G.pt --pairs heldout_pairs.pt \
        [--generated heldout_generated.pt] A.pt [A2.pt ...] [--out results.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from .model import Directions, load_directions, pose_vector
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


MODES = ("self", "cross", "generated")


@torch.no_grad()
def prepare(G, encoder, pairs: dict, mode: str = "self", identity=None, batch: int = 16) -> list[dict]:
    """What every method's evaluation in ``mode`` shares, per batch of sets: source codes and images, targets,
    the encoder's coefficients of both, the identity features of the CSIM reference (the target in the self
    mode, else the source) and the target's true rotation, expression and landmarks."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    sets = pairs["ws"].shape[0]
    if sets < 2 and mode == "cross":
        raise ValueError("cross-reenactment needs at least 2 sets")
    t = (torch.arange(sets) + 1) % sets if mode == "cross" else torch.arange(sets)
    images = pairs["images"].float() / 127.5 - 1
    out = []
    for idx in torch.arange(sets).split(batch):
        ws = pairs["ws"][idx, 0].float()
        src = G.synthesis(ws, noise_mode="const").clamp(-1, 1) if mode == "generated" else images[idx, 0]
        tgt = images[t[idx], 1]
        b = {"ws": ws, "target": tgt, "c_source": encoder(src), "c_target": encoder(tgt),
             "rotation": pairs["rotation"][t[idx], 1], "expression": pairs["expression"][t[idx], 1],
             "landmarks": pairs["landmarks"][t[idx], 1]}
        if identity is not None:
            ref, c_ref = (tgt, b["c_target"]) if mode == "self" else (src, b["c_source"])
            b["f_ref"] = identity(ref, c_ref.landmarks)
        out.append(b)
    return out


@torch.no_grad()
def evaluate(G, directions: Directions, encoder, pairs: dict, mode: str = "self", identity=None, lpips_fn=None,
             batch: int = 16, prepared: list[dict] | None = None) -> dict[str, float]:
    """The measures (``MEASURES``; csim without ``identity``, lpips without ``lpips_fn`` or outside the self
    mode are NaN) averaged over the sets of ``pairs``; ``mode`` one of ``MODES`` (see the module doc).
    prepared: :func:`prepare`'s result for these pairs and mode (with the same ``identity``), shared by the
    methods of one run."""
    prepared = prepared if prepared is not None else prepare(G, encoder, pairs, mode, identity, batch)
    directions.check_generator(G)
    sums = {k: 0.0 for k in MEASURES}
    m, sets = directions.expression_dims, 0
    for b in prepared:
        q_s = directions.rescale(pose_vector(b["c_source"].rotation, b["c_source"].expression, m))
        q_t = directions.rescale(pose_vector(b["c_target"].rotation, b["c_target"].expression, m))
        reenacted = G.synthesis(directions(b["ws"], q_t - q_s), noise_mode="const").clamp(-1, 1)
        c = encoder(reenacted)
        sets += reenacted.shape[0]
        sums["pose_deg"] += ((c.rotation - b["rotation"]).abs().mean(1) * 180 / math.pi).sum().item()
        sums["expression"] += (c.expression[:, :m] - b["expression"][:, :m]).abs().mean(1).sum().item()
        sums["nme"] += nme(c.landmarks, b["landmarks"]).sum().item()
        if identity is not None:
            sums["csim"] += torch.nn.functional.cosine_similarity(
                b["f_ref"], identity(reenacted, c.landmarks), dim=1).sum().item()
        if lpips_fn is not None and mode == "self":
            sums["lpips"] += lpips_fn(reenacted, b["target"]).sum().item()
    res = {k: v / sets for k, v in sums.items()}
    if identity is None:
        res["csim"] = float("nan")
    if lpips_fn is None or mode != "self":
        res["lpips"] = float("nan")
    return res


def markdown_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """{method: {mode: measures}} -> a markdown table (LPIPS only for the self mode)."""
    modes = [m for m in MODES if any(m in r for r in rows.values())]
    cols = [(mode, k) for mode in modes for k in MEASURES if k != "lpips" or mode == "self"]
    head = ["method"] + [f"{mode} {k}" for mode, k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        vals = [r[mode][k] if mode in r else float("nan") for mode, k in cols]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return "\n".join(lines)


@torch.no_grad()
def comparison_sheet(G, methods: dict[str, Directions], encoder, pairs: dict, path, count: int = 6,
                     mode: str = "generated"):
    """A contact sheet: a column per pair (the first ``count`` of ``pairs`` in ``mode``), rows source,
    target and each method's reenactment."""
    from gan_bridge.face.photos import save_sheet
    n = min(count, pairs["ws"].shape[0])
    t = (torch.arange(n) + 1) % pairs["ws"].shape[0] if mode == "cross" else torch.arange(n)
    images = pairs["images"].float() / 127.5 - 1
    ws, tgt = pairs["ws"][:n, 0].float(), images[t, 1]
    src = G.synthesis(ws, noise_mode="const") if mode == "generated" else images[:n, 0]
    panels = [("source", img) for img in src.clamp(-1, 1)] + [("target", img) for img in tgt]
    for name, d in methods.items():
        out = reenact_latents(G, d, encoder, ws, tgt, source_images=None if mode == "generated" else src)
        panels += [(name, img) for img in out.reenacted.clamp(-1, 1)]
    return save_sheet(panels, path, columns=n, title=f"reenactment ({mode} pairs): rows source, target, "
                      + ", ".join(methods))


def main(argv=None) -> int:
    from gan_bridge.networks.stylegan2 import load_generator
    ap = argparse.ArgumentParser(prog="python -m gan_bridge.directions.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("directions", nargs="+", help="directions files to compare")
    ap.add_argument("--generator", required=True)
    ap.add_argument("--pairs", required=True, help="held-out pairs (python -m gan_bridge.directions.data pairs)")
    ap.add_argument("--generated", default=None,
                    help="generated-source pairs (python -m gan_bridge.directions.data generated)")
    ap.add_argument("--encoder", default=None, help="regressor weights (default: morph3d's bundled)")
    ap.add_argument("--baseline-samples", type=int, default=2000, help="pairs for the linear baseline (0: none)")
    ap.add_argument("--no-identity", action="store_true", help="skip CSIM (no dlib identity network)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--sheet", default=None, help="write a contact sheet of the first pairs here (PNG)")
    args = ap.parse_args(argv)
    G = load_generator(args.generator).requires_grad_(False)
    from gan_bridge.face.shape import load_encoder
    encoder = load_encoder(args.encoder)
    files = {"self": args.pairs, "cross": args.pairs, "generated": args.generated}
    data = {mode: torch.load(path, map_location="cpu", weights_only=True) for mode, path in files.items() if path}
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
    shared = {mode: prepare(G, encoder, pairs, mode, identity) for mode, pairs in data.items()}
    rows = {}
    for name, d in tqdm(methods.items(), desc="evaluate", disable=not sys.stderr.isatty()):
        rows[name] = {mode: evaluate(G, d, encoder, pairs, mode, identity, lpips, prepared=shared[mode])
                      for mode, pairs in data.items()}
    print(markdown_table(rows))
    if args.sheet:
        mode = "generated" if "generated" in data else "cross"
        comparison_sheet(G, methods, encoder, data[mode], args.sheet, mode=mode)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


__all__ = ["MEASURES", "MODES", "comparison_sheet", "evaluate", "least_squares_directions", "linear_baseline",
           "markdown_table", "nme", "prepare"]

if __name__ == "__main__":
    raise SystemExit(main())
