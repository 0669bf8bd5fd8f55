"""Rasterizer performance against a minimal float32 floor, across batch sizes and resolutions.

The floor (benchmarks/floor/raster_floor.cpp, compiled here with torch.utils.cpp_extension) is a
bare float32 rasterizer + interpolation with a fused backward: the least work that produces the
same images and gradients on an ordinary scene (no clipping, no exact edge tests, no determinism).
The benchmark first checks that it agrees with morph3d (same triangle on >= 99 % of pixels,
gradient cosine >= 0.99), then prints, all timed in one worker process per tree:

  1. floor: forward + backward of rasterize + interpolate (3 channels) on a ~70k-triangle face at
     224 px, batch 1: morph3d's whole Python call, its four kernels alone, and the call with
     antialias, each as a ratio to the floor (goal: whole call within 1.5x);
  2. batch: ms per image at batch 8 over batch 1 (goal: <= 1.2), forward + backward at 224 px
     and the forward of a 1M-triangle mesh at 1024 px;
  3. resolution: forward + backward per megapixel at 224, 512 and 1024 px for 10k and 70k
     triangles (flat when the cost follows the pixel count);
  4. memory: peak RSS of forward + backward (with antialias) of 1M triangles at 1024 px, batch 8,
     in a fresh process.

With --before DIR (a copy of an older tree with its built morph3d/_C, e.g. the commit this work
started from) every worker run alternates between the two trees and the tables show old / new.
Timings are medians over repeats, and over --rounds alternations of worker processes.

    python benchmarks/bench_raster_floor.py [--before /tmp/old_tree] [--rounds 2] [--repeats 9] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THREADS = 2


def load_floor():
    """Compile (once, cached by torch) and load the floor extension."""
    from torch.utils.cpp_extension import load
    return load(name="morph3d_raster_floor", sources=[str(HERE / "floor" / "raster_floor.cpp")],
                extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)


def face_mesh(n: int):
    """bench_rasterize's face-like grid (n x n), in clip space: (clip (N, 4) float32, tri (F, 3) int32)."""
    import torch
    sys.path.insert(0, str(HERE))
    from bench_rasterize import clip_positions, face_grid
    verts, tri = face_grid(n)
    return (torch.tensor(clip_positions(verts), dtype=torch.float32),
            torch.tensor(tri, dtype=torch.int32))


MESHES = {"10k": 82, "70k": 212, "1M": 806}  # grid size of ~10k, ~69k and ~1M triangles


def interleaved(fns: dict, repeats: int, per: dict | None = None) -> dict:
    """{name: {"ms": median wall ms, "cpu": median process CPU ms (all threads)}} of each fn, run in
    turn (a, b, c, a, b, c, ...) so that changes in the machine's load hit all of them alike;
    per[name] divides both (e.g. by the batch)."""
    for fn in fns.values():
        fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: {"ms": 1e3 * statistics.median(wall[name]) / (per or {}).get(name, 1),
                   "cpu": 1e3 * statistics.median(cpu[name]) / (per or {}).get(name, 1)} for name in fns}


# ---------------------------------------------------------------------------------------------
# Worker: runs in a fresh process with the tree under test first on sys.path.

def pipeline(clip, tri, attr, res, aa: bool):
    """Forward + backward through morph3d's public ops (loss = weighted sum of the image)."""
    from morph3d.render.rasterize import antialias, interpolate, rasterize
    p = clip.detach().requires_grad_(True)
    a = attr.detach().requires_grad_(True)
    rast = rasterize(p, tri, (res, res))
    img = interpolate(a, rast, tri)
    if aa:
        img = antialias(img, rast, p, tri)
    (img * 0.5).sum().backward()
    return p.grad, a.grad, rast


def kernels_only(clip, tri, attr, res):
    """The four C++ kernels of rasterize + interpolate forward + backward, no Python glue."""
    import torch
    from morph3d._ext import ops
    o = ops()
    rast = o.rasterize_fwd(clip, tri, res, res)
    img = o.interpolate_fwd(attr, rast, tri)
    grad_attr, grad_rast = o.interpolate_bwd(attr, rast, tri, torch.full_like(img, 0.5))[:2]
    return o.rasterize_bwd(clip, tri, rast, grad_rast), grad_attr


def floor_case(floor, repeats):
    import torch
    clip, tri = face_mesh(MESHES["70k"])
    attr = torch.rand(1, clip.shape[0], 3, generator=torch.Generator().manual_seed(0))
    res = 224
    pos = clip[None]

    def run_floor(threads=THREADS):
        ids, uv, img = floor.forward(clip, tri, attr[0], res, res, threads)
        return floor.backward(clip, tri, attr[0], ids, uv, torch.full_like(img, 0.5), threads), ids

    (f_gpos, f_gattr), f_ids = run_floor()
    m_gpos, m_gattr, rast = pipeline(pos, tri, attr, res, False)
    m_ids = rast[0, ..., 3].long() - 1
    covered = (m_ids >= 0) | (f_ids >= 0)
    cos = torch.nn.functional.cosine_similarity
    agree = {"same_triangle": ((m_ids == f_ids.long()) & covered).sum().item() / covered.sum().item(),
             "cos_grad_pos": cos(m_gpos[0].flatten(), f_gpos.flatten(), 0).item(),
             "cos_grad_attr": cos(m_gattr[0].flatten(), f_gattr.flatten(), 0).item()}
    fns = {"floor": run_floor,
           "call": lambda: pipeline(pos, tri, attr, res, False),
           "kernels": lambda: kernels_only(pos, tri, attr, res),
           "call_aa": lambda: pipeline(pos, tri, attr, res, True)}
    times = interleaved(fns, repeats)
    # One thread each: the CPU time of the work itself, which a loaded machine barely changes.
    torch.set_num_threads(1)
    fns["floor"] = lambda: run_floor(1)
    one = interleaved(fns, repeats)
    torch.set_num_threads(THREADS)
    return {"agree": agree, "ms": {k: v["ms"] for k, v in times.items()},
            "cpu_1thread": {k: v["cpu"] for k, v in one.items()}}


def batch_case(repeats, quick):
    import torch
    from morph3d.render.rasterize import interpolate, rasterize
    clip, tri = face_mesh(MESHES["70k"])
    attr = torch.rand(1, clip.shape[0], 3, generator=torch.Generator().manual_seed(0))
    fns, per = {}, {}
    for b in (1, 8):
        pos = clip[None].repeat(b, 1, 1)
        fns[f"70k 224px fwd+bwd B{b}"] = lambda pos=pos: pipeline(pos, tri, attr, 224, False)
        fns[f"70k 224px fwd+bwd+aa B{b}"] = lambda pos=pos: pipeline(pos, tri, attr, 224, True)
        per[f"70k 224px fwd+bwd B{b}"] = per[f"70k 224px fwd+bwd+aa B{b}"] = b
    out = interleaved(fns, repeats, per)
    if not quick:
        clip, tri = face_mesh(MESHES["1M"])
        attr = torch.rand(1, clip.shape[0], 3, generator=torch.Generator().manual_seed(0))

        def forward(pos):
            with torch.no_grad():
                interpolate(attr, rasterize(pos, tri, (1024, 1024)), tri)

        fns = {f"1M 1024px fwd B{b}": lambda pos=clip[None].repeat(b, 1, 1): forward(pos) for b in (1, 8)}
        out.update(interleaved(fns, max(2, repeats // 3), {"1M 1024px fwd B1": 1, "1M 1024px fwd B8": 8}))
    return out


def resolution_case(repeats, quick):
    import torch
    fns, pixels = {}, {}
    for mesh in ("10k", "70k"):
        clip, tri = face_mesh(MESHES[mesh])
        attr = torch.rand(1, clip.shape[0], 3, generator=torch.Generator().manual_seed(0))
        for res in (224, 512) if quick else (224, 512, 1024):
            fns[f"{mesh} {res}px"] = lambda clip=clip, tri=tri, attr=attr, res=res: pipeline(clip[None], tri, attr,
                                                                                           res, False)
            pixels[f"{mesh} {res}px"] = res * res / 1e6
    times = interleaved(fns, max(3, repeats // 2))
    return {key: {"ms": v["ms"], "ms_per_mpx": v["ms"] / pixels[key], "cpu_per_mpx": v["cpu"] / pixels[key]}
            for key, v in times.items()}


def peak_case(mesh, res, batch):
    import torch
    clip, tri = face_mesh(MESHES[mesh])
    attr = torch.rand(1, clip.shape[0], 3, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    pipeline(clip[None].repeat(batch, 1, 1), tri, attr, res, True)
    return {"ms": 1e3 * (time.perf_counter() - t0), "rss_before_mb": before / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker(args) -> None:
    import torch
    torch.set_num_threads(THREADS)
    if args.worker == "peak":
        mesh, res, batch = args.peak.split(",")
        result = peak_case(mesh, int(res), int(batch))
    else:
        result = {"floor": floor_case(load_floor(), args.repeats),
                  "batch": batch_case(args.repeats, args.quick),
                  "resolution": resolution_case(args.repeats, args.quick)}
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Driver.

def run_worker(tree: Path, argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(THREADS))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], env=env, cwd="/",
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker for {tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def merge(runs: list[dict]):
    """Median over runs of every number in a nest of dicts."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: merge([r[k] for r in runs]) for k in first}
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="an older tree (with its built morph3d/_C) to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="worker runs per tree, alternating")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="skip the 1M-triangle and 1024 px cases")
    parser.add_argument("--peak", default="1M,1024,8", help="mesh,resolution,batch of the peak-memory case")
    parser.add_argument("--worker", choices=("time", "peak"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_floor()  # compile once here; the workers load the cached build
    trees = {"new": REPO} if args.before is None else {"old": args.before.resolve(), "new": REPO}
    argv = ["--worker", "time", "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    runs = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run_worker(tree, argv))
    res = {name: merge(r) for name, r in runs.items()}
    peak = {} if args.quick else {name: run_worker(tree, ["--worker", "peak", "--peak", args.peak])
                                  for name, tree in trees.items()}
    names = list(trees)
    load = os.getloadavg()
    print(f"threads {THREADS}, OMP_WAIT_POLICY=PASSIVE, {args.rounds} round(s) x {args.repeats} repeats, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs; "
          f"trees: {', '.join(f'{n}={t}' for n, t in trees.items())}")

    def cols(get, fmt="{:8.2f}"):
        return " ".join(fmt.format(get(res[n])) for n in names)

    head = " ".join(f"{n:>8s}" for n in names)
    print("\n1. floor: 70k triangles, 224 px, batch 1, forward + backward (ms; ratio to the floor)")
    agree = res["new"]["floor"]["agree"]
    agrees = agree["same_triangle"] >= 0.99 and min(agree["cos_grad_pos"], agree["cos_grad_attr"]) >= 0.99
    print(f"   agreement with the floor: same triangle on {agree['same_triangle']:.2%} of covered pixels, "
          f"gradient cosine {agree['cos_grad_pos']:.4f} (positions), {agree['cos_grad_attr']:.4f} (attributes) "
          f"[{'ok' if agrees else 'DISAGREE: the floor is not doing the same work'}]")
    print(f"   {'':34s} wall ms {head}   ratio to floor ({', '.join(names)})   1 thread: CPU ms, ratio")
    for key, label in (("floor", "floor (float32, fused backward)"), ("call", "morph3d rasterize + interpolate"),
                       ("kernels", "  its four kernels alone"), ("call_aa", "  + antialias")):
        ratios = " ".join(f"{res[n]['floor']['ms'][key] / res[n]['floor']['ms']['floor']:6.2f}x" for n in names)
        cpu = " ".join(f"{res[n]['floor']['cpu_1thread'][key]:6.2f} "
                       f"{res[n]['floor']['cpu_1thread'][key] / res[n]['floor']['cpu_1thread']['floor']:5.2f}x"
                       for n in names)
        print(f"   {label:34s}         {cols(lambda r: r['floor']['ms'][key])}   {ratios}   {cpu}")

    print("\n2. batch scaling, per image: wall ms (CPU ms of all threads), and batch 8 / batch 1")
    for prefix in sorted({k.rsplit(' B', 1)[0] for k in res["new"]["batch"]}):
        one, eight = f"{prefix} B1", f"{prefix} B8"
        for n in names:
            b = res[n]["batch"]
            print(f"   {prefix:22s} {n:4s} B1 {b[one]['ms']:7.2f} ({b[one]['cpu']:7.2f})  B8 {b[eight]['ms']:7.2f} "
                  f"({b[eight]['cpu']:7.2f})  B8/B1 wall {b[eight]['ms'] / b[one]['ms']:5.2f}x "
                  f"CPU {b[eight]['cpu'] / b[one]['cpu']:5.2f}x")

    print("\n3. resolution: forward + backward (rasterize + interpolate), batch 1: wall ms; wall and CPU ms per "
          "megapixel")
    for key in res["new"]["resolution"]:
        print(f"   {key:12s} ms {cols(lambda r: r['resolution'][key]['ms'])}   ms/Mpx "
              f"{cols(lambda r: r['resolution'][key]['ms_per_mpx'])}   CPU ms/Mpx "
              f"{cols(lambda r: r['resolution'][key]['cpu_per_mpx'])}")
    if peak:
        print(f"\n4. peak RSS, forward + backward with antialias ({args.peak} = mesh, px, batch), fresh process")
        for n in names:
            p = peak[n]
            print(f"   {n:6s} peak {p['peak_rss_mb']:7.0f} MB (after setup {p['rss_before_mb']:6.0f} MB), "
                  f"one call {p['ms']:7.0f} ms")
    if not agrees:
        sys.exit(1)


if __name__ == "__main__":
    main()
