"""``gan-bridge reenact SOURCE TARGET... --generator CKPT --directions A.pt --out DIR``: face reenactment with
learned latent directions (Bounareli et al.)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from . import CommandError
from ._inputs import VIDEO_SUFFIXES, add_align_argument, extract_video_frames, image_files, latent_source

SHEET_FRAMES = 8


def add_parser(sub) -> None:
    p = sub.add_parser("reenact", help="give a source face the head pose and expression of target faces",
                       description="Reenact SOURCE in the pose and expression of each TARGET with the directions "
                                   "A of a StyleGAN2: w_r = w_s + A (p_t - p_s). SOURCE is a photo (inverted into "
                                   "the generator), a latent .pt from 'gan-bridge invert', or seed:N (a generated "
                                   "face). TARGETs are photos, folders of frames or videos (a driving sequence). Writes "
                                   "frame_NNNNN.png per target, source.png, sheet.png and reenact.json.")
    p.add_argument("source", help="photo, latent .pt (gan-bridge invert) or seed:N")
    p.add_argument("targets", nargs="+", help="target photos, folders of frames (sorted by name) and/or videos "
                                              f"({', '.join(VIDEO_SUFFIXES)}; read with OpenCV)")
    p.add_argument("--generator", required=True, help="StyleGAN2 checkpoint")
    p.add_argument("--directions", required=True, help="directions A.pt (python -m gan_bridge.directions.method "
                                                        "export) or a directions run checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--encoder", default=None, help="image -> 3DMM regressor weights (default: morph3d's bundled)")
    p.add_argument("--model", default="open", help="morphable model of the regressor (default: open)")
    add_align_argument(p)
    p.add_argument("--detector", default="dlib", help="landmark detector for --align ffhq")
    p.add_argument("--relative", action="store_true",
                   help="apply the motion relative to the first target frame (drive a source of another person)")
    p.add_argument("--invert-preset", default="projector", choices=("projector", "image2stylegan", "pie"),
                   help="inversion schedule for a photo SOURCE (default: projector)")
    p.add_argument("--invert-steps", type=float, default=None, metavar="FACTOR",
                   help="scale the inversion's step counts by FACTOR (e.g. 0.1 for a quick look)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi of a seed:N source")
    p.set_defaults(run=run)


def target_files(targets: list[str], frames: Path) -> list[tuple[Path, str]]:
    """Target arguments -> (image file, name for the record) in order: a folder contributes its images sorted
    by name, a video its frames (extracted into the folder ``frames``, named ``VIDEO#N``)."""
    files = []
    for t in targets:
        path = Path(t)
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            files += [(f, f"{path}#{i}") for i, f in enumerate(extract_video_frames(path, frames))]
        else:
            files += [(f, str(f)) for f in image_files([t], what="target")]
    return files


def _source(args, G, load_crop):
    """-> (ws (1, num_ws, w_dim), the image p_s is read from (1, 3, R, R) or None, description)."""
    found = latent_source(args.source, G, args.truncation)
    if found is not None:
        return found[0], None, found[1]
    path = Path(args.source)
    from gan_bridge.inversion import invert, preset
    crop = load_crop(path)
    config = preset(args.invert_preset)
    if args.invert_steps is not None:
        if not args.invert_steps > 0:
            raise CommandError(f"--invert-steps must be a positive factor, got {args.invert_steps}")
        config = config.scaled(args.invert_steps)
    result = invert(G, crop.image[None], config)
    return result.ws, crop.image[None], f"photo {path.name} inverted ({args.invert_preset})"


def run(args) -> int:
    from gan_bridge.face.photos import check_output_dir

    out = check_output_dir(args.out)
    with tempfile.TemporaryDirectory(prefix="gan-bridge-frames-") as frames:
        return _run(args, out, target_files(args.targets, Path(frames)))


def _run(args, out: Path, targets: list[tuple[Path, str]]) -> int:
    from gan_bridge.directions import load_directions, reenact_latents
    from gan_bridge.face.photos import atomic_write, load_face_crop, save_image, save_sheet
    from gan_bridge.face.shape import load_encoder
    from gan_bridge.networks.stylegan2 import load_generator
    if not Path(args.generator).is_file():
        raise CommandError(f"generator checkpoint {args.generator} does not exist")
    G = load_generator(args.generator).requires_grad_(False)
    directions = load_directions(args.directions)
    directions.check_generator(G)
    encoder = load_encoder(args.encoder, args.model)
    size = G.resolution

    def load_crop(path):
        return load_face_crop(path, size, args.align, args.detector)

    named, files = targets, [f for f, _ in targets]
    targets = torch.stack([load_crop(f).image for f in files])  # before the slow inversion: fail early
    ws_s, source_image, what = _source(args, G, load_crop)  # a photo is inverted: needs gradients
    with torch.no_grad():
        ws_s = ws_s.detach()
        reference = targets[:1] if args.relative else None
        result = reenact_latents(G, directions, encoder, ws_s, targets, reference=reference,
                                 source_images=source_image)
    out.mkdir(parents=True, exist_ok=True)
    save_image(result.source[0], out / "source.png")
    for i, image in enumerate(result.reenacted):
        save_image(image, out / f"frame_{i:05d}.png")
    shown = sorted({round(i * (len(files) - 1) / max(1, SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)})
    src = ("source", result.source[0])
    panels = ([src] + [(f"target {i}", targets[i]) for i in shown]
              + [src] + [(f"reenacted {i}", result.reenacted[i]) for i in shown])
    save_sheet(panels, out / "sheet.png", columns=len(shown) + 1, title=f"source: {what}",
               notes=[f"{len(files)} target(s); {'relative to the first frame' if args.relative else 'absolute'} "
                      "pose and expression"])
    record = {"source": args.source, "source_kind": what, "targets": [name for _, name in named],
              "relative": args.relative, "directions": directions.config(),
              "delta": result.delta.tolist()}
    atomic_write(out / "reenact.json", json.dumps(record, indent=1) + "\n")
    print(f"{len(files)} frame(s) of {what} -> {out} (sheet.png)")
    return 0
