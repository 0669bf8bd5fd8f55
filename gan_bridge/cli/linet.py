"""``gan-bridge linet reenact SOURCE DRIVING --weights RUN --out DIR``: LI-Net face reenactment."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import CommandError
from ._inputs import add_align_argument, image_files, sidecar_landmarks


def add_parser(sub) -> None:
    p = sub.add_parser("linet", help="large-pose face reenactment (LI-Net)",
                       description="Face reenactment with LI-Net (landmark transformer, face rotation module, "
                                   "expression enhancing generator).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("reenact", help="give the source face the pose and expression of driving faces",
                           description="Reenact the face of SOURCE with the pose and expression of DRIVING (a photo "
                                       "or a folder of frames). Landmarks come from a file beside each image with "
                                       "the same name (.npy/.pts/.json, 68 points) or are detected. Writes "
                                       "DIR/frames/<frame>.png (reenacted), DIR/rotated/<frame>.png (R's output), "
                                       "DIR/sheet.png and DIR/linet.json.")
    r.add_argument("source", help="source photo (the identity), or a folder of them: then DIR/frames/<source>/ per source and a grid sheet")
    r.add_argument("driving", help="driving photo or folder of frames (pose and expression)")
    r.add_argument("--weights", default=None, help="'gan-bridge train linet' run folder, ckpt-*.pt or export "
                                                   "(default: the bundled 32 px world model world_linet_32.pt)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--no-transformer", action="store_true",
                   help="drive R and G with the driving landmarks directly (the ablation without T)")
    r.add_argument("--detector", default="dlib", help="landmark detector when no landmark file is given")
    add_align_argument(r, default="world", needs_landmarks=True)
    r.set_defaults(run=run)


def _face(path: Path, size: int, args):
    """-> (crop (1, 3, S, S) in [-1, 1], landmarks (1, 68, 2) crop pixels)."""
    from gan_bridge.face.photos import load_face_crop
    crop = load_face_crop(path, size, args.align, args.detector, landmarks=sidecar_landmarks(path))
    return crop.image[None], torch.as_tensor(np.asarray(crop.landmarks), dtype=torch.float32)[None]


def run(args) -> int:
    from gan_bridge.face.photos import atomic_write, check_output_dir, save_image, save_sheet
    from gan_bridge.linet.reenact import Reenactor

    source = Path(args.source)
    if not source.exists():
        raise CommandError(f"source {source} does not exist; give a photo of the identity or a folder of them")
    sources = image_files([args.source], "source")
    frames = image_files([args.driving], "driving")
    if args.weights is None:
        from gan_bridge.assets import asset_path
        args.weights = str(asset_path("world_linet_32.pt"))
    if not Path(args.weights).exists():
        raise CommandError(f"weights {args.weights} do not exist; train with 'gan-bridge train linet'")
    model = Reenactor.load(args.weights)
    out = check_output_dir(args.out)
    use_t = not args.no_transformer
    drivers = [(frame, *_face(frame, model.size, args)) for frame in frames]
    many = source.is_dir()
    panels, grid = [], [("driving:", torch.zeros(3, model.size, model.size))]
    grid += [(frame.stem[:14], driving[0]) for frame, driving, _ in drivers]
    for src in sources:
        image, lm = _face(src, model.size, args)
        sub = Path(src.stem) if many else Path()
        for folder in ("frames", "rotated"):
            (out / folder / sub).mkdir(parents=True, exist_ok=True)
        grid.append((src.stem[:14], image[0]))
        for frame, driving, lm_d in drivers:
            result = model(image, lm, lm_d, use_transformer=use_t)
            save_image(result.final[0], out / "frames" / sub / f"{frame.stem}.png")
            save_image(result.rotated[0], out / "rotated" / sub / f"{frame.stem}.png")
            panels += [("source", image[0]), (frame.stem[:14], driving[0]),
                       ("landmarks", result.landmarks[0].expand(3, -1, -1) * 2 - 1),
                       ("rotated", result.rotated[0]), ("reenacted", result.final[0])]
            grid.append(("reenacted", result.final[0]))
            print(f"{src.name} x {frame.name} -> {out / 'frames' / sub / (frame.stem + '.png')}")
    suffix = "" if use_t else " (without T)"
    if many:
        save_sheet(grid, out / "sheet.png", columns=len(drivers) + 1,
                   title=f"LI-Net: {source.name} driven by {Path(args.driving).name}{suffix}",
                   notes=["top row: driving faces; each further row: a source, then it reenacted by each driving face"])
    else:
        save_sheet(panels, out / "sheet.png", columns=5,
                   title=f"LI-Net: {source.name} driven by {Path(args.driving).name}{suffix}",
                   notes=["per frame: source, driving, landmarks driving R and G, rotated (R), reenacted (G)"])
    record = {"source": [str(f) for f in sources] if many else str(source), "driving": [str(f) for f in frames],
              "weights": str(args.weights), "transformer": use_t, "image_size": model.size}
    atomic_write(out / "linet.json", json.dumps(record, indent=1) + "\n")
    return 0
