"""``gan-bridge invert IMAGE --generator CKPT --out DIR``: project a photo into a StyleGAN2's latent space."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import CommandError
from ._inputs import add_align_argument


def add_parser(sub) -> None:
    p = sub.add_parser("invert", help="project photos into a StyleGAN2's W / W+ space",
                       description="Optimise latents whose images match the photos; writes the latent (.pt and "
                                   ".npy), the reconstruction and a side-by-side PNG per photo, and metrics.json.")
    p.add_argument("images", nargs="+", help="photo files")
    p.add_argument("--generator", required=True, help="StyleGAN2 checkpoint (rosinality .pt, NVIDIA .pkl, or "
                                                       "a gan_bridge checkpoint)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--preset", default="pie", choices=("projector", "image2stylegan", "pie"),
                   help="published schedule (default: pie, W then W+)")
    p.add_argument("--steps", type=float, default=None,
                   help="scale every stage's step count by this factor (e.g. 0.1 for a quick look)")
    add_align_argument(p)
    p.add_argument("--detector", default="dlib", help="landmark detector for --align ffhq (dlib or mediapipe)")
    p.add_argument("--landmarks", default=None, help="landmark file (.pts/.npy/.json) instead of detection "
                                                    "(one photo only)")
    p.add_argument("--face-weight", type=float, default=None, metavar="W",
                   help="weight the loss to the face region: W is the weight outside the face (0..1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args) -> int:
    from gan_bridge.face.crops import face_region_weights
    from gan_bridge.face.photos import atomic_write, check_output_dir, load_face_crop, save_image, save_sheet
    from gan_bridge.inversion import preset
    from gan_bridge.inversion import invert as invert_images
    from gan_bridge.networks.stylegan2 import load_generator

    out = check_output_dir(args.out)
    if args.landmarks and len(args.images) > 1:
        raise CommandError("--landmarks gives the landmarks of one photo: pass one photo with it")
    if args.face_weight is not None and not 0 <= args.face_weight <= 1:
        raise CommandError(f"--face-weight must be in [0, 1], got {args.face_weight}")
    if args.steps is not None and not args.steps > 0:
        raise CommandError(f"--steps must be a positive factor, got {args.steps}")
    G = load_generator(args.generator)
    config = preset(args.preset, seed=args.seed)
    if args.steps is not None:
        config = config.scaled(args.steps)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for path in args.images:
        crop = load_face_crop(path, G.resolution, args.align, args.detector, args.landmarks)
        weights = None
        if args.face_weight is not None:
            if crop.landmarks is None:
                raise CommandError("--face-weight needs landmarks: use --align ffhq")
            weights = face_region_weights(torch.as_tensor(crop.landmarks)[None], (G.resolution,) * 2,
                                          background=args.face_weight)
        result = invert_images(G, crop.image[None], config, weights=weights)
        stem = Path(path).stem
        latent = {"ws": result.ws[0], "w": None if result.w is None else result.w[0],
                  "noise": None if result.noise is None else [n[0] for n in result.noise],
                  "config": asdict(config), "metrics": {k: v[0] for k, v in result.metrics.items()},
                  "source": str(path)}
        atomic_write(out / f"{stem}_latent.pt", lambda tmp: torch.save(latent, tmp))
        atomic_write(out / f"{stem}_latent.npy", lambda tmp: np.save(tmp, result.ws[0].numpy()))
        save_image(result.image[0], out / f"{stem}_reconstruction.png")
        m = latent["metrics"]
        note = f"PSNR {m['psnr']:.2f} dB, LPIPS {m['lpips']:.3f}" + (f", SSIM {m['ssim']:.3f}" if "ssim" in m else "")
        save_sheet([("input", crop.image), ("reconstruction", result.image[0])], out / f"{stem}_side_by_side.png",
                   notes=[note])
        summary[stem] = m
        print(f"{path}: {note} -> {out / (stem + '_latent.pt')}")
    atomic_write(out / "metrics.json", json.dumps({"preset": args.preset, "images": summary}, indent=2) + "\n")
    return 0
