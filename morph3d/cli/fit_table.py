"""``morph3d fit-table OUT -o TABLE.npz``: one parameter table from the results of ``morph3d fit``.

Run it once every shard has finished (``morph3d fit --shard I/N`` or ``torchrun``). Exit status: 0 when
the table was written and every input image is in it or was reported as failed, 1 when the checks found
problems (then the table is written only with ``--allow-missing``), 2 for unusable arguments.
"""
from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser("fit-table", help="gather the results of morph3d fit into one parameter table (.npz)",
                       description="Gather every <stem>.json that morph3d fit wrote under OUT (all shards) into "
                                   "one .npz table: ids, flat parameter vectors with their layout, pose, input "
                                   "and fitted landmarks, fit quality, image size, camera. Checks that every "
                                   "shard reported and that no image is missing or duplicated.")
    p.add_argument("out", metavar="OUT", help="the --out folder of morph3d fit")
    p.add_argument("-o", "--output", required=True, metavar="NPZ", help="the table file to write (.npz)")
    p.add_argument("--input", metavar="DIR",
                   help="the photo folder to check completeness against (default: the one the shard reports "
                        "name)")
    p.add_argument("--allow-missing", action="store_true",
                   help="write the table even when images are missing or duplicated (still exit 1)")
    p.set_defaults(run=run)


def print_table_report(report) -> bool:
    """Print a :class:`~morph3d.fitting.table.TableReport`; True when the table was written without problems."""
    for note in report.notes:
        print(f"  NOTE {note}", file=sys.stderr)
    if report.failed:
        print(f"  {len(report.failed)} image(s) failed to fit and are not in the table (see the shard "
              f"reports), e.g. {report.failed[0][0]}: {report.failed[0][1]}", file=sys.stderr)
    for problem in report.problems:
        print(f"  PROBLEM {problem}", file=sys.stderr)
    if report.written is not None:
        print(f"table: {report.rows} face(s) of {report.images} image(s) -> {report.written}")
    else:
        print("table not written (fix the problems above, or pass --allow-missing)", file=sys.stderr)
    return report.written is not None and not report.problems


def run(args) -> int:
    from morph3d.fitting.table import build_table
    return 0 if print_table_report(build_table(args.out, args.output, input_dir=args.input,
                                               allow_missing=args.allow_missing)) else 1
