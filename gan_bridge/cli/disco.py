"""``gan-bridge disco sample --weights RUN --identity SEED --out DIR``: DiscoFaceGAN images with chosen factors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import CommandError

ROWS = ("identity", "expression", "lighting", "pose")


def add_parser(sub) -> None:
    p = sub.add_parser("disco", help="DiscoFaceGAN: faces with controllable identity, expression, lighting, pose",
                       description="Generate with a 'gan-bridge train disco' run (Deng et al. 2020).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("sample", help="a grid varying one factor at a time",
                           description="From the face of --identity SEED (all latents drawn from that seed), write "
                                       "DIR/grid.png: one row per factor (identity, expression, lighting, pose), "
                                       "--columns images each, only that row's factor changing (pose: yaw swept "
                                       "over +-YAW_RANGE degrees); also DIR/<factor>_<k>.png and DIR/grid.json.")
    s.add_argument("--weights", required=True, help="'gan-bridge train disco' run folder or ckpt-*.pt")
    s.add_argument("--identity", type=int, default=0, help="seed of the base face (default 0)")
    s.add_argument("--pose", default=None, help="base pose 'yaw,pitch,roll' in degrees (default: drawn)")
    s.add_argument("--columns", type=int, default=5, help="images per row (>= 2, default 5)")
    s.add_argument("--yaw-range", type=float, default=30.0, help="degrees either side for the pose row")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(run=run)


def parse_pose(text: str | None) -> torch.Tensor | None:
    """'yaw,pitch,roll' degrees -> (3,) radians, or None."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise CommandError(f"--pose must be three finite numbers 'yaw,pitch,roll' in degrees, got {text!r}")
    return torch.tensor(values).deg2rad()


@torch.no_grad()
def factor_grid(G, seed: int, columns: int, pose: torch.Tensor | None = None, yaw_range_deg: float = 30.0
                ) -> dict[str, torch.Tensor]:
    """{factor: (columns, 3, R, R) [-1, 1]}: column 0 of each row is the base face of ``seed``; the other
    columns redraw only that factor (pose: yaw set to evenly spaced angles). ``pose``: base (3,) radians."""
    if columns < 2:
        raise CommandError(f"--columns must be >= 2, got {columns}")
    gen = torch.Generator().manual_seed(seed)
    z = G.sample_z(1, gen)
    vaes = G.vaes
    lam = G.mapping.lam(z)
    parts = vaes.split(lam)
    if pose is not None:
        parts["pose"] = pose[None].to(lam)
    eps = z[:, vaes.z_dim:].expand(columns, -1)
    rows = {}
    for factor in ROWS:
        rep = {f: v.expand(columns, -1).clone() for f, v in parts.items()}
        if factor == "pose":
            rep["pose"][:, 0] = torch.linspace(-1, 1, columns) * math.radians(yaw_range_deg)
        else:
            fresh = vaes.split(vaes.decode(G.sample_z(columns, gen)[:, :vaes.z_dim]))[factor]
            rep[factor][1:] = fresh[1:]
        rows[factor] = G.from_lambda(vaes.join(rep), eps).clamp(-1, 1)
    return rows


def run(args) -> int:
    from gan_bridge.disco.method import load_disco
    from gan_bridge.face.photos import save_image, save_sheet
    if not Path(args.weights).exists():
        raise CommandError(f"--weights {args.weights} does not exist; give a 'gan-bridge train disco' run folder")
    G, config, step = load_disco(args.weights)
    rows = factor_grid(G, args.identity, args.columns, parse_pose(args.pose), args.yaw_range)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create --out {out}: {exc.strerror}; choose a writable folder") from None
    panels = []
    for factor, images in rows.items():
        for k, img in enumerate(images):
            save_image(img, out / f"{factor}_{k}.png")
            panels.append((f"{factor} {k}" if k else f"{factor} (base)", img))
    save_sheet(panels, out / "grid.png", columns=args.columns,
               title=f"DiscoFaceGAN step {step}, seed {args.identity}: one factor per row")
    (out / "grid.json").write_text(json.dumps({"weights": str(args.weights), "step": step, "seed": args.identity,
                                               "rows": list(rows), "columns": args.columns}, indent=1))
    print(f"wrote {out / 'grid.png'} ({len(rows)} rows x {args.columns})")
    return 0
