"""``morph3d convert SRC DST.npz``: convert any supported model file to the canonical format."""
from pathlib import Path

from morph3d.cli import CommandError


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a model file to the canonical .npz format")
    p.add_argument("src", help="model file (BFM .mat, FLAME .pkl, SFM .bin, canonical .npz) or 'open'")
    p.add_argument("dst", help="output .npz")
    p.set_defaults(run=run)


def run(args) -> int:
    from morph3d.io import check_output_file
    from morph3d.model import canonical
    from morph3d.model.loaders import load_canonical
    dst = Path(args.dst)
    if dst.suffix != ".npz":
        raise CommandError(f"{dst}: the canonical format is written as .npz")
    check_output_file(dst, "DST")  # before the (possibly slow) conversion
    canonical.save(load_canonical(args.src), dst)
    print(f"wrote {dst}")
    return 0
