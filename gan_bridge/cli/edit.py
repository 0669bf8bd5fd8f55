"""``gan-bridge edit IMAGE --generator CKPT --rignet DIR --yaw 20 --expression smile=1 --light 2=0.5 --out DIR``:
semantic edits of a portrait with StyleRig's RigNets, the photo embedded by PIE."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from . import CommandError
from ._inputs import add_align_argument, latent_source


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help="edit head pose, lighting and expression of a portrait (StyleRig + PIE)",
                       description="Embed IMAGE with PIE (a photo; or a latent .pt from 'gan-bridge invert', or "
                                   "seed:N for a generated face), then edit it with the RigNets of --rignet "
                                   "(pose.pt, lighting.pt, expression.pt) in that order. Writes embedding.pt, "
                                   "projection.png, edit_K_MODE.png per edit, sheet.png and edit.json.")
    p.add_argument("image", help="photo, latent .pt or seed:N")
    p.add_argument("--generator", required=True, help="StyleGAN2 checkpoint")
    p.add_argument("--rignet", required=True, help="folder of RigNets: pose.pt, lighting.pt, expression.pt")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--yaw", type=float, default=0.0, help="turn the head by this many degrees (+: to image right)")
    p.add_argument("--pitch", type=float, default=0.0, help="degrees (+: look down)")
    p.add_argument("--roll", type=float, default=0.0, help="degrees (+: tilt counter-clockwise in the image)")
    p.add_argument("--expression", action="append", default=[], metavar="NAME=V",
                   help="set an expression coefficient (model names, e.g. jaw_open=0.8; smile=1 sets both sides)")
    p.add_argument("--light", action="append", default=[], metavar="K=V",
                   help="set SH coefficient K (1..8) of every channel to V x its constant term")
    p.add_argument("--light-scale", type=float, default=1.0, help="multiply the whole light (brightness)")
    p.add_argument("--config", default=None, help="JSON file of edits {yaw, pitch, roll, expression: {name: v}, "
                                                  "light: {k: v}, light_scale}; command-line edits add to it")
    p.add_argument("--embed-mode", default="pose", choices=("pose", "expression", "lighting"),
                   help="the RigNet whose edit/invariance terms shape the PIE embedding (paper: pose)")
    p.add_argument("--pie-steps", type=float, default=1.0, metavar="FACTOR",
                   help="scale PIE's 2000 + 1000 step counts by FACTOR (e.g. 0.05 for a quick look)")
    p.add_argument("--no-recognition", action="store_true", help="drop E_recog (ablation)")
    p.add_argument("--no-modification", action="store_true", help="drop E_id, E_edit, E_inv (ablation)")
    p.add_argument("--no-feedback", action="store_true", help="no theta_new = theta + (theta - theta_est) correction")
    p.add_argument("--encoder", default=None, help="image -> 3DMM regressor weights (default: morph3d's bundled)")
    p.add_argument("--model", default="open", help="morphable model of the regressor (default: open)")
    p.add_argument("--encoder-box", type=float, nargs=3, default=None, metavar=("LEFT", "TOP", "SIDE"),
                   help="the regressor's first-pass face box in image fractions (default: as RigNet training, "
                        "0.15 0.15 0.7)")
    p.add_argument("--encoder-reframe", type=int, default=None,
                   help="passes re-framed by the previous landmarks (default: as RigNet training, 3)")
    add_align_argument(p)
    p.add_argument("--detector", default="dlib", help="landmark detector for --align ffhq")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi of a seed:N face")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def _pairs(items: list[str], flag: str, key=str) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key(name.strip())] = float(value)
        except ValueError:
            raise CommandError(f"bad {flag} {item!r}: use {flag} NAME=VALUE with a number VALUE") from None
    return out


def edit_spec(args):
    """The edits of --config plus the command line's."""
    from gan_bridge.stylerig.edit import EditSpec
    base = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CommandError(f"edit config {path} does not exist")
        try:
            base = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(base, dict):
            raise CommandError(f"{path} must hold a JSON object of edits")
    spec = EditSpec.from_dict(base)
    spec.yaw += args.yaw
    spec.pitch += args.pitch
    spec.roll += args.roll
    spec.expression.update(_pairs(args.expression, "--expression"))
    spec.light.update(_pairs(args.light, "--light", int))
    spec.light_scale *= args.light_scale
    spec.__post_init__()  # the command line's values are checked too
    if not spec.modes():
        raise CommandError("nothing to edit: give --yaw/--pitch/--roll, --expression, --light or --config")
    return spec


def encoder_framing(args) -> tuple:
    """(box, reframe passes) of the encoder: the command line's, else StyleRig training's defaults."""
    from gan_bridge.stylerig.config import StyleRigConfig
    defaults = StyleRigConfig()
    box = tuple(args.encoder_box) if args.encoder_box else defaults.encoder_box
    reframe = defaults.encoder_reframe if args.encoder_reframe is None else args.encoder_reframe
    if not box[2] > 0 or reframe < 0:
        raise CommandError("--encoder-box needs SIDE > 0 and --encoder-reframe >= 0")
    return box, reframe


def _embedding(args, G, rignets, face):
    """-> (ws (1, num_ws, w_dim), the input image (1, 3, R, R) or None, description, metrics)."""
    from gan_bridge.stylerig.config import PIEConfig
    from gan_bridge.stylerig.pie import embed
    found = latent_source(args.image, G, args.truncation, what="image")
    if found is not None:
        return found[0], None, found[1], {}
    path = Path(args.image)
    from gan_bridge.face.photos import load_face_crop
    if args.embed_mode not in rignets:
        raise CommandError(f"PIE embeds with the {args.embed_mode} RigNet but {args.rignet} has no "
                           f"{args.embed_mode}.pt; pass --embed-mode with one it has")
    if not args.pie_steps > 0:
        raise CommandError(f"--pie-steps must be a positive factor, got {args.pie_steps}")
    crop = load_face_crop(path, G.resolution, args.align, args.detector)
    config = PIEConfig(steps_scale=args.pie_steps, recognition=not args.no_recognition,
                       modification=not args.no_modification, seed=args.seed)
    result = embed(G, rignets[args.embed_mode], face, crop.image[None], config)
    metrics = {k: v[0] for k, v in result.metrics.items()}
    return result.ws, crop.image[None], f"photo {path.name} embedded (PIE, {args.embed_mode} RigNet)", \
        {"pie": asdict(config), "projection": metrics}


def run(args) -> int:
    from gan_bridge.face.photos import atomic_write, check_output_dir, save_image, save_sheet
    from gan_bridge.face.rig import RigFace
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.networks.stylegan2 import load_generator
    from gan_bridge.stylerig.edit import sequential_edit
    from gan_bridge.stylerig.rignet import load_rignets

    out = check_output_dir(args.out)
    spec = edit_spec(args)
    if not Path(args.generator).is_file():
        raise CommandError(f"generator checkpoint {args.generator} does not exist")
    G = load_generator(args.generator).eval().requires_grad_(False)
    rignets = load_rignets(args.rignet)
    for net in rignets.values():
        net.check_generator(G)
    missing = [m for m in spec.modes() if m not in rignets]
    if missing:
        raise CommandError(f"the edits change {', '.join(missing)} but {args.rignet} has no "
                           f"{', '.join(m + '.pt' for m in missing)}")
    face = RigFace(load_encoder(args.encoder, args.model, *encoder_framing(args)))
    ws, image, what, record = _embedding(args, G, rignets, face)
    ws = ws.detach()
    steps = sequential_edit(G, rignets, face, ws, spec, feedback=not args.no_feedback)
    with torch.no_grad():
        projection = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "embedding.pt", lambda tmp: torch.save({"ws": ws[0], "source": args.image, **record}, tmp))
    save_image(projection[0], out / "projection.png")
    panels = ([("input", image[0])] if image is not None else []) + [("projection", projection[0])]
    for k, (mode, _, _, edited) in enumerate(steps, 1):
        save_image(edited[0], out / f"edit_{k}_{mode}.png")
        panels.append((f"{k}: {mode}", edited[0]))
    notes = [f"edits: {json.dumps(asdict(spec))}"]
    if "projection" in record:
        notes.append(f"projection PSNR {record['projection']['psnr']:.2f} dB")
    save_sheet(panels, out / "sheet.png", title=what, notes=notes)
    record.update({"image": args.image, "kind": what, "edits": asdict(spec), "feedback": not args.no_feedback,
                   "steps": [{"mode": m, "target": t[0].tolist()} for m, t, _, _ in steps]})
    atomic_write(out / "edit.json", json.dumps(record, indent=1) + "\n")
    print(f"{len(steps)} edit(s) of {what} -> {out} (sheet.png)")
    return 0
