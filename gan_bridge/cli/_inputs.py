"""Inputs shared by the gan-bridge commands: image files and folders, and latent sources."""
from __future__ import annotations

from pathlib import Path

import torch

from . import CommandError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MAX_VIDEO_FRAMES = 10000
LANDMARK_SUFFIXES = (".npy", ".pts", ".json")
ALIGN_CHOICES = ("ffhq", "world", "none")  # gan_bridge.face.photos.ALIGNMENTS, without importing it at start-up
ALIGN_HELP = {"ffhq": "ffhq (FFHQ's square, for generators trained on FFHQ)",
              "world": "world (framed as the synthetic world frames faces, for networks trained on it)",
              "none": "none (resize the whole photo)"}


def add_align_argument(parser, default: str = "ffhq", needs_landmarks: bool = False) -> None:
    """The ``--align`` option of the commands that crop photos; ``needs_landmarks`` leaves out 'none', for
    commands that use every face's 68 landmarks."""
    choices = [a for a in ALIGN_CHOICES if not (needs_landmarks and a == "none")]
    text = ", ".join(ALIGN_HELP[a] for a in choices[:-1]) + " or " + ALIGN_HELP[choices[-1]]
    parser.add_argument("--align", default=default, choices=choices,
                        help=f"photo crop from the 68 landmarks: {text}; default {default}")


def sidecar_landmarks(image: Path) -> Path | None:
    """The 68-point landmark file beside ``image`` with the same stem (.npy/.pts/.json), if any."""
    for suffix in LANDMARK_SUFFIXES:
        candidate = image.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def image_files(items: list[str], what: str = "image") -> list[Path]:
    """Arguments -> image files in order; a folder contributes its images sorted by name.
    ``what`` names the arguments in errors ('image', 'target', ...)."""
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CommandError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{what} {path} does not exist")
    return files


def extract_video_frames(video: Path, folder: Path, max_frames: int = MAX_VIDEO_FRAMES) -> list[Path]:
    """Every frame of ``video`` as ``folder/<stem>_NNNNN.png`` (read with OpenCV, the ``mediapipe`` extra's
    dependency); one-line errors for a missing OpenCV, an unreadable video, or one over ``max_frames``."""
    try:
        import cv2
    except ImportError:
        raise CommandError(f"{video}: reading videos needs OpenCV (pip install opencv-python-headless), or "
                           f"extract the frames first (ffmpeg -i {video.name} frames/%05d.png) and pass the "
                           "folder") from None
    capture = cv2.VideoCapture(str(video))
    files = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if len(files) == max_frames:
                raise CommandError(f"{video}: more than {max_frames} frames; pass a shorter clip or a frame folder")
            files.append(folder / f"{video.stem}_{len(files):05d}.png")
            if not cv2.imwrite(str(files[-1]), frame):
                raise CommandError(f"cannot write the frames of {video} to {folder}")
    finally:
        capture.release()
    if not files:
        raise CommandError(f"{video}: no frames could be read (corrupt file or an unsupported codec); "
                           "extract them with ffmpeg and pass the folder")
    return files


def latent_source(spec: str, G, truncation: float, what: str = "source"):
    """A ``seed:N`` face or a latent ``.pt`` (``gan-bridge invert``) -> (ws (1, num_ws, w_dim), description);
    None when ``spec`` is a photo, which the caller embeds its own way. Raises one-line errors."""
    if spec.startswith("seed:"):
        try:
            seed = int(spec[5:])
        except ValueError:
            raise CommandError(f"bad {what} {spec!r}: use seed:N with an integer N") from None
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        return G.mapping(z, truncation_psi=truncation), f"generated face, seed {seed}"
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"{what} {path} does not exist")
    if path.suffix != ".pt":
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CommandError(f"{path} is corrupt or not a latent file ({type(exc).__name__})") from None
    ws = record.get("ws") if isinstance(record, dict) else None
    if not isinstance(ws, torch.Tensor) or ws.shape[-2:] != (G.num_ws, G.w_dim):
        raise CommandError(f"{path}: no W+ latent 'ws' of shape ({G.num_ws}, {G.w_dim}) for this generator; "
                           "invert the source with the same generator (gan-bridge invert)")
    return ws.reshape(1, G.num_ws, G.w_dim).float(), f"latent {path.name}"
