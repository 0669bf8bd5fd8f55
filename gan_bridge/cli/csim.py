"""``gan-bridge csim A.jpg B.jpg [more...]``: identity similarity (CSIM) of each photo against the first.

Each photo's largest face is found by morph3d's detector (dlib by default), aligned as dlib does and
embedded with dlib's face-recognition ResNet; the command prints, per photo after the first, the cosine
of its descriptor with the first one's (CSIM) and dlib's Euclidean distance (same person below 0.6).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from gan_bridge.cli import CommandError
from gan_bridge.networks.identity import csim

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for dlib_face_recognition_resnet_model_v1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("csim", help="identity cosine similarity of photos against the first",
                              description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files; the first is the reference")
    p.add_argument("--detector", default="dlib", choices=("dlib", "auto", "mediapipe"),
                   help="morph3d's landmark detector (default: dlib, the landmarks dlib's network was "
                        "trained with; auto also finds turned and small faces)")
    p.set_defaults(run=run)


def _descriptor(path: str, detector: str) -> torch.Tensor:
    from morph3d.fitting import NoFaceError, load_image

    from gan_bridge.face.align import detect_landmarks
    from gan_bridge.face.identity import identity_embedding

    photo = load_image(path)
    try:
        landmarks = detect_landmarks(photo, source=path, detector=detector)
    except ImportError as exc:  # morph3d's MissingDependencyError names the pip extra
        raise CommandError(str(exc)) from exc
    except NoFaceError as exc:
        hint = "try --detector auto" if detector == "dlib" else "use a photo with a clearly visible face"
        raise CommandError(f"{path}: no face found by the {detector} detector; {hint}") from exc
    image = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return identity_embedding(image, landmarks[None])[0]


def run(args) -> int:
    if len(args.photos) < 2:
        raise CommandError("give at least two photos: the reference first, then the ones to compare")
    descriptors = [_descriptor(p, args.detector) for p in args.photos]
    ref = descriptors[0]
    print(f"reference: {args.photos[0]}")
    print("csim\tdistance\tsame\tphoto")
    for path, d in zip(args.photos[1:], descriptors[1:]):
        cos = float(csim(ref, d))
        dist = float((ref - d).norm())
        same = "yes" if dist < SAME_PERSON_DISTANCE else "no"
        print(f"{cos:.4f}\t{dist:.4f}\t{same}\t{path}")
    return 0
