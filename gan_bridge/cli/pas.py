"""``gan-bridge pas rotate IMAGE... --weights RUN --yaw 30 --out DIR``: face pose editing with PAS + inpainting."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import CommandError
from ._inputs import add_align_argument, image_files, sidecar_landmarks



def add_parser(sub) -> None:
    p = sub.add_parser("pas", help="face pose editing by pixel attention sampling and inpainting",
                       description="Face pose editing (PAS, Sec. 3 of 'pose editing by pixel attention sampling').")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("rotate", help="turn faces to a new pose",
                           description="Turn each face to the pose given by --yaw/--pitch/--roll (degrees, added to "
                                       "the fitted pose) or by the face in --target. IMAGEs are photos or folders of "
                                       "photos. Writes, per image, DIR/<name>/input.png, preprocessed.png (I_tf), "
                                       "sampled.png (PAS), final.png (inpainted), sheet.png and pas.json.")
    r.add_argument("images", nargs="+", help="photos and/or folders of photos")
    r.add_argument("--weights", default=None, help="'gan-bridge train pas' run folder, ckpt-*.pt or export "
                                                   "(default: the bundled 32 px world model world_pas_32.pt)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--yaw", type=float, default=0.0, help="degrees; > 0 turns the nose to the image right")
    r.add_argument("--pitch", type=float, default=0.0, help="degrees")
    r.add_argument("--roll", type=float, default=0.0, help="degrees")
    r.add_argument("--absolute", action="store_true", help="the angles are the target pose, not a change")
    r.add_argument("--target", default=None, help="a photo whose face pose is the target (instead of angles)")
    r.add_argument("--landmarks", default=None, help="68-point landmark file of a single IMAGE (.pts/.npy/.json); "
                                                     "default: a file of the image's name beside it, else detected")
    r.add_argument("--detector", default="dlib", help="landmark detector (default: dlib)")
    add_align_argument(r, default="world", needs_landmarks=True)
    r.add_argument("--model", default="open", help="morphable model of the 3D fit (default: open)")
    r.set_defaults(run=run)


def _fitted_face(path, size, args, model, landmarks=None):
    """-> (crop (1, 3, S, S), 2D landmarks (1, 68, 2) crop pixels, FaceParams of the crop)."""
    from gan_bridge.face.pas_prep import fit_photo
    from gan_bridge.face.photos import load_face_crop
    crop = load_face_crop(path, size, args.align, args.detector, landmarks=landmarks)
    pixels = ((crop.image.permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
    params = fit_photo(model, pixels, crop.landmarks)
    lm2d = torch.as_tensor(np.asarray(crop.landmarks), dtype=torch.float32)[None]
    return crop.image[None], lm2d, params


def run(args) -> int:
    from morph3d.model import load_model

    from gan_bridge.face.pas_prep import landmarks_3d, posed_landmarks
    from gan_bridge.face.photos import atomic_write, check_output_dir, save_image, save_sheet
    from gan_bridge.pas.edit import PasEditor

    out = check_output_dir(args.out)
    files = image_files(args.images)
    if args.landmarks and len(files) != 1:
        raise CommandError("--landmarks goes with a single IMAGE; leave it out to detect landmarks in a batch")
    if args.weights is None:
        from gan_bridge.assets import asset_path
        args.weights = str(asset_path("world_pas_32.pt"))
    if not Path(args.weights).exists():
        raise CommandError(f"weights {args.weights} do not exist; train with 'gan-bridge train pas'")
    editor = PasEditor.load(args.weights)
    model = load_model(args.model)
    size = editor.size
    target_lm = None
    if args.target:
        if not Path(args.target).is_file():
            raise CommandError(f"target {args.target} does not exist")
        _, _, t_params = _fitted_face(args.target, size, args, model, sidecar_landmarks(Path(args.target)))
        with torch.no_grad():
            target_lm = landmarks_3d(model, t_params).float()
    panels = []
    for path in files:
        image, lm2d, params = _fitted_face(path, size, args, model, args.landmarks or sidecar_landmarks(path))
        with torch.no_grad():
            lm_src = landmarks_3d(model, params).float()
            lm_tgt = target_lm if target_lm is not None else posed_landmarks(
                model, params, args.yaw, args.pitch, args.roll, args.absolute).float()
        result = editor.edit(image, lm_src, lm_tgt, landmarks_source_2d=lm2d)
        folder = out / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        shown = [("input", image[0]), ("preprocessed", result.inputs.image_tf[0]), ("sampled", result.sampled[0]),
                 ("final", result.final[0])]
        for name, img in shown:
            save_image(img, folder / f"{name}.png")
        pose = (f"target {Path(args.target).name}" if args.target else
                f"{'pose' if args.absolute else 'turn'} yaw {args.yaw:g}, pitch {args.pitch:g}, roll {args.roll:g}")
        save_sheet(shown, folder / "sheet.png", title=f"{path.name}: {pose}",
                   notes=[f"aligned side: {('right', 'left')[int(result.inputs.side[0])]}",
                          f"fitted pose (deg): {[round(float(np.degrees(a)), 1) for a in params.rotation[0]]}"])
        record = {"image": str(path), "target": args.target, "yaw": args.yaw, "pitch": args.pitch, "roll": args.roll,
                  "absolute": args.absolute, "weights": str(args.weights), "side": int(result.inputs.side[0])}
        atomic_write(folder / "pas.json", json.dumps(record, indent=1) + "\n")
        panels += [(f"{path.stem[:16]}", image[0]), ("final", result.final[0])]
        print(f"{path.name} -> {folder}")
    if len(files) > 1:
        save_sheet(panels, out / "sheet.png", columns=min(8, len(panels)), title="PAS pose editing: input, final")
    return 0
