"""``gan-bridge disco sample --weights RUN --identity SEED --out DIR``: DiscoFaceGAN images with chosen factors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import CommandError
from ._inputs import add_align_argument

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
    e = actions.add_parser("edit", help="embed a photo in W+ and edit one factor (Eq. 11)",
                           description="Embed IMAGE into the generator's W+ (Image2StyleGAN schedule, --steps), "
                                       "read its factors with the 3DMM regressor, and move w+ by Delta w(i, a, b) for "
                                       "each requested edit. Writes DIR/input.png, reconstruction.png, "
                                       "<edit>.png, sheet.png and edit.json.")
    e.add_argument("image", help="a face photo")
    e.add_argument("--weights", required=True, help="'gan-bridge train disco' run folder or ckpt-*.pt")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--pose", default=None, help="target pose 'yaw,pitch,roll' in degrees")
    for f in ("expression", "lighting", "identity"):
        e.add_argument(f"--{f}-seed", type=int, default=None, help=f"target {f}: drawn from its VAE with this seed")
    e.add_argument("--steps", type=int, default=500, help="inversion steps (default 500)")
    add_align_argument(e)
    e.add_argument("--landmarks", default=None, help="68-point landmark file of IMAGE (default: detected)")
    e.set_defaults(run=run_edit)


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


def edit_targets(G, args) -> list[tuple[str, str, torch.Tensor]]:
    """(name, factor, target (1, D_factor)) for each edit asked for on the command line."""
    edits = []
    pose = parse_pose(args.pose)
    if pose is not None:
        edits.append(("pose", "pose", pose[None]))
    for factor in ("expression", "lighting", "identity"):
        seed = getattr(args, f"{factor}_seed")
        if seed is not None:
            z = G.sample_z(1, torch.Generator().manual_seed(seed))[:, :G.vaes.z_dim]
            edits.append((f"{factor}_{seed}", factor, G.vaes.split(G.vaes.decode(z))[factor]))
    if not edits:
        raise CommandError("no edit asked for; give --pose and/or --expression-seed / --lighting-seed / --identity-seed")
    return edits


def run_edit(args) -> int:
    from dataclasses import replace
    from gan_bridge.disco.edit import delta_w, edit_ws
    from gan_bridge.disco.method import load_disco
    from gan_bridge.face.disco import DiscoFace
    from gan_bridge.face.photos import load_face_crop, save_image, save_sheet
    from gan_bridge.inversion import invert, preset
    if args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    if not Path(args.weights).exists():
        raise CommandError(f"--weights {args.weights} does not exist; give a 'gan-bridge train disco' run folder")
    G, config, step = load_disco(args.weights)
    edits = edit_targets(G, args)
    crop = load_face_crop(args.image, G.resolution, args.align, landmarks=args.landmarks)
    image = crop.image[None]
    base = preset("image2stylegan", w_avg_samples=1000)
    inv = invert(G, image, replace(base, stages=(replace(base.stages[0], steps=args.steps),)), progress=False)
    face = DiscoFace(config.shape_model, distance_mm=config.render_distance_mm, focal=config.render_focal,
                     box=config.encoder_box, reframe=config.encoder_reframe, encoder_weights=config.encoder)
    with torch.no_grad():
        _, _, lam = face.estimate(image)
    eps = torch.zeros(1, G.noise_dim)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create --out {out}: {exc.strerror}; choose a writable folder") from None
    panels = [("input", image[0]), ("reconstruction", inv.image[0])]
    for name, factor, target in edits:
        panels.append((name, edit_ws(G, inv.ws, delta_w(G, lam, eps, factor, target))[0]))
    for name, img in panels:
        save_image(img, out / f"{name}.png")
    save_sheet(panels, out / "sheet.png", title=f"DiscoFaceGAN edits of {Path(args.image).name}")
    (out / "edit.json").write_text(json.dumps({"image": str(args.image), "weights": str(args.weights), "step": step,
                                               "edits": [e[0] for e in edits], "metrics": inv.metrics}, indent=1))
    print(f"wrote {out / 'sheet.png'} ({len(edits)} edits)")
    return 0
