"""Compile time of each C++ translation unit of morph3d._C, against torch/extension.h.

Compiles every ``csrc/kernels/*.cpp`` and ``csrc/glue/*.cpp`` one after the other with setup.py's
flags (Python's CFLAGS, torch's include paths, ``-O3 -std=c++17 -fopenmp -DNDEBUG -g0``) into a
temporary folder, and reports the CPU seconds of each (the compiler's user + system time, which
other processes on the machine hardly change, unlike wall time). The baseline, compiled in the
same run, is an empty unit that includes ``<torch/extension.h>``, the header every unit used to
include: each unit's ratio is its time over the baseline's. The total over all units, divided by
the number of cores, estimates the wall time of a full build on an idle machine.

    python benchmarks/bench_build.py [--debug-info]   # --debug-info: with -g, as Python's CFLAGS
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

from torch.utils import cpp_extension

REPO = Path(__file__).resolve().parents[1]


def compile_flags(debug_info: bool) -> list:
    cflags = [*shlex.split(sysconfig.get_config_var("CFLAGS") or ""),
              *shlex.split(sysconfig.get_config_var("CCSHARED") or "")]
    includes = [REPO / "csrc", *cpp_extension.include_paths(), sysconfig.get_paths()["include"]]
    return [*cflags, *[f"-I{p}" for p in includes], "-O3", "-std=c++17", "-fopenmp", "-DNDEBUG",
            "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C", *([] if debug_info else ["-g0"])]


def cpu_seconds(source: Path, flags: list, out: Path) -> tuple[float, float]:
    """(CPU s, wall s) of compiling ``source`` to an object file."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run([os.environ.get("CXX", "c++"), *flags, "-c", str(source), "-o", str(out)],
                            capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"compiling {source} failed:\n{result.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--debug-info", action="store_true", help="compile with -g (Python's default CFLAGS)")
    args = parser.parse_args()
    flags = compile_flags(args.debug_info)
    units = sorted((REPO / "csrc" / "kernels").glob("*.cpp")) + sorted((REPO / "csrc" / "glue").glob("*.cpp"))
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.cpp"
        baseline.write_text("#include <torch/extension.h>\n")
        base_cpu, base_wall = cpu_seconds(baseline, flags, Path(tmp) / "baseline.o")
        print(f"baseline (empty unit + torch/extension.h): {base_cpu:.1f} s CPU, {base_wall:.1f} s wall")
        print(f"{'unit':34s} {'CPU s':>7s} {'wall s':>7s} {'vs baseline':>12s}")
        total = 0.0
        for unit in units:
            cpu, wall = cpu_seconds(unit, flags, Path(tmp) / (unit.stem + ".o"))
            total += cpu
            print(f"{unit.relative_to(REPO).as_posix():34s} {cpu:7.1f} {wall:7.1f} {cpu / base_cpu:11.2f}x")
    cores = os.cpu_count() or 1
    print(f"total {total:.1f} s CPU over {len(units)} units = {total / base_cpu:.2f}x the baseline; "
          f"about {total / cores:.0f} s of compiling on {cores} idle cores (plus linking)")


if __name__ == "__main__":
    main()
