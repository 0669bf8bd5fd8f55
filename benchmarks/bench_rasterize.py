"""Benchmark of the rasterization primitives: rasterize + interpolate + antialias.

Meshes at 224 x 224, perspective, filling most of the image:
  - face-69k: BFM-sized face-like height field on an elliptical grid (~35k vertices, ~69k
    triangles; an open mesh like a face scan);
  - open-model-57k: the mean of assets/open_face_model.npz subdivided once (when the asset exists);
  - ellipsoid-82k: a closed subdivided ellipsoid (82k triangles, the size PyTorch3D's CPU
    rasterizer needs ~10 s for at 224 px);
  - face-0.5k: a ~500-vertex face-like grid (default-model sized).
For batch 1 and 8 with torch threads = 2 (change with --threads): milliseconds per frame of the
forward pass (rasterize + interpolate of 3 channels + antialias) and of forward + backward
(gradients w.r.t. clip positions and attributes), the process CPU time per frame, and triangles
per second. The baseline, run in the same process, is a naive vectorised PyTorch rasterizer
(bounding-box scan of every triangle, z-buffer by scatter-min, autograd for gradients; no
antialiasing). With CUDA and nvdiffrast installed the same pipeline also runs through nvdiffrast.

    python benchmarks/bench_rasterize.py [--repeats 15] [--threads 2] [--quick] [--omp-passive]

Times on shared machines are noisy: the table shows the median and the best of the repeats.
--omp-passive sets OMP_WAIT_POLICY=PASSIVE before torch starts: torch's OpenMP threads then sleep
instead of spinning between ops, which on an oversubscribed machine speeds up everything here
(torch ops and, indirectly, morph3d's kernels, which use their own non-spinning threads).
"""
import os
import sys

if "--omp-passive" in sys.argv:  # must happen before torch (and its OpenMP runtime) loads
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from morph3d.render.rasterize import antialias, interpolate, rasterize

REPO = Path(__file__).resolve().parents[1]
RES = (224, 224)


# ---------------------------------------------------------------------------------------------
# Meshes (vertices in a unit-sized frame: x right, y up, z towards the viewer).

def face_grid(n: int):
    """Face-like height field on an elliptical n x n grid: (verts (N, 3), tri (F, 3))."""
    xs = np.linspace(-1, 1, n)
    gx, gy = np.meshgrid(xs, xs * 1.25)
    keep = gx ** 2 + (gy / 1.25) ** 2 <= 1
    idx = -np.ones(gx.shape, np.int64)
    idx[keep] = np.arange(keep.sum())
    cap = np.sqrt(np.clip(1 - gx ** 2 - (gy / 1.25) ** 2, 0, None)) * 0.6
    nose = 0.25 * np.exp(-(gx ** 2 + (gy + 0.1) ** 2) / 0.02)
    verts = np.stack([gx[keep], gy[keep], (cap + nose)[keep]], 1)
    a, b, d, e = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = np.concatenate([np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)])
    return verts, tri[(tri >= 0).all(1)]


def face_69k():
    verts, tri = face_grid(212)
    return "face-%dk" % round(len(tri) / 1000), verts, tri


def open_model_57k():
    """The open face model's mean, subdivided once, or None without the asset."""
    path = REPO / "assets" / "open_face_model.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        verts, tri = np.asarray(data["vertices_mean"], np.float64), np.asarray(data["triangles"])
    verts, tri = trimesh.remesh.subdivide(verts, tri)
    centre = (verts.max(0) + verts.min(0)) / 2
    verts = (verts - centre) / np.abs(verts - centre)[:, :2].max()
    return "open-model-%dk" % round(len(tri) / 1000), verts, tri


def ellipsoid_82k():
    mesh = trimesh.creation.icosphere(subdivisions=6)
    verts = np.asarray(mesh.vertices) * np.array([0.8, 1.0, 0.7])
    return "ellipsoid-%dk" % round(len(mesh.faces) / 1000), verts, np.asarray(mesh.faces)


def face_small():
    verts, tri = face_grid(26)
    return "face-%.1fk" % (len(verts) / 1000), verts, tri


def clip_positions(verts: np.ndarray, distance: float = 4.0, fill: float = 0.85) -> np.ndarray:
    """Perspective clip coordinates, camera at (0, 0, distance) looking along -z, image rows down."""
    w = distance - verts[:, 2]
    focal = fill * (distance - verts[:, 2].max()) / np.abs(verts[:, :2]).max()
    near, far = 0.5 * w.min(), 2.0 * w.max()
    a, b = (far + near) / (far - near), -2 * far * near / (far - near)
    return np.stack([focal * verts[:, 0], -focal * verts[:, 1], a * w + b, w], 1)


# ---------------------------------------------------------------------------------------------
# Baseline: naive vectorised PyTorch rasterizer (forward: rasterize + interpolate).

def naive_rasterize_interpolate(clip: torch.Tensor, tri: torch.Tensor, attr: torch.Tensor, res):
    """clip (N, 4), tri (F, 3), attr (N, C) -> image (H, W, C) and triangle ids (H, W) (-1 background)."""
    h, w = res
    v = clip[tri]                                             # (F, 3, 4)
    if (v[..., 3] <= 0).any():
        raise ValueError("naive baseline needs w > 0")
    px = ((v[..., 0] / v[..., 3] + 1) * w - 1) / 2            # pixel coordinates (F, 3)
    py = ((v[..., 1] / v[..., 3] + 1) * h - 1) / 2
    x0, x1 = px.min(1).values.ceil().clamp(0, w - 1).long(), px.max(1).values.floor().clamp(-1, w - 1).long()
    y0, y1 = py.min(1).values.ceil().clamp(0, h - 1).long(), py.max(1).values.floor().clamp(-1, h - 1).long()
    keep = (x1 >= x0) & (y1 >= y0)
    fid = torch.nonzero(keep)[:, 0]
    kx, ky = int((x1 - x0)[keep].max()) + 1, int((y1 - y0)[keep].max()) + 1
    ox, oy = torch.meshgrid(torch.arange(kx), torch.arange(ky), indexing="ij")
    cx = (x0[fid, None] + ox.reshape(1, -1))                  # candidate pixels (K, kx*ky)
    cy = (y0[fid, None] + oy.reshape(1, -1))
    valid = (cx <= x1[fid, None]) & (cy <= y1[fid, None])
    ax, ay = px[fid], py[fid]
    # Screen-space edge functions (double), orientation-normalised.
    e = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        e.append((ax[:, k, None] - ax[:, j, None]) * (cy - ay[:, j, None])
                 - (ay[:, k, None] - ay[:, j, None]) * (cx - ax[:, j, None]))
    area = e[0] + e[1] + e[2]
    inside = valid & (e[0] * area >= 0) & (e[1] * area >= 0) & (e[2] * area >= 0) & (area != 0)
    bs = torch.stack(e, -1) / area[..., None]                 # screen-space barycentrics
    winv = 1 / v[fid][:, None, :, 3]
    zw = (bs * v[fid][:, None, :, 2] * winv).sum(-1)          # z/w is affine in screen space
    inside &= (zw >= -1) & (zw <= 1)
    pix = (cy * w + cx)[inside]
    depth = zw[inside]
    tid = fid[:, None].expand_as(cx)[inside]
    best = torch.full((h * w,), float("inf"), dtype=depth.dtype).scatter_reduce(0, pix, depth, "amin")
    win = depth == best[pix]
    ids = torch.full((h * w,), -1, dtype=torch.long)
    ids.scatter_reduce_(0, pix[win], tid[win], "amax")        # ties: any one (baseline)
    sel = win & (ids[pix] == tid)
    pb = bs[inside][sel] * winv.expand(-1, cx.shape[1], -1)[inside][sel]
    pb = pb / pb.sum(-1, keepdim=True)                         # perspective-correct
    img = torch.zeros(h * w, attr.shape[1], dtype=attr.dtype)
    img[pix[sel]] = (pb[..., None] * attr[tri[tid[sel]]]).sum(1)
    return img.reshape(h, w, -1), ids.reshape(h, w)


# ---------------------------------------------------------------------------------------------

def timed(fn, repeats: int, sync=lambda: None):
    """(median wall s, best wall s, median process CPU s) of fn over repeats."""
    for _ in range(2):
        fn()
    sync()
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), min(times), statistics.median(cpu)


def pipeline(pos, tri, attr, backward: bool):
    p = pos.detach().requires_grad_(backward)
    a = attr.detach().requires_grad_(backward)
    rast = rasterize(p, tri, RES)
    img = antialias(interpolate(a, rast, tri), rast, p, tri)
    if backward:
        (img * 0.5).sum().backward()
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="batch 1 only, fewer repeats")
    parser.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE (see above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    batches = (1,) if args.quick else (1, 8)
    devices = ["cpu"]
    if torch.cuda.is_available():
        try:
            import nvdiffrast.torch  # noqa: F401
            devices.append("cuda")
        except ImportError:
            print("CUDA found but nvdiffrast is not installed: skipping the nvdiffrast runs")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, resolution {RES}, repeats {repeats}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    rows = []
    meshes = [m for m in (face_69k(), open_model_57k(), ellipsoid_82k(), face_small()) if m is not None]
    for name, verts, faces in meshes:
        clip = torch.tensor(clip_positions(verts), dtype=torch.float32)
        tri = torch.tensor(faces, dtype=torch.int64)
        attr = torch.rand(len(verts), 3, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        rast = rasterize(clip[None], tri, RES)
        antialias(interpolate(attr, rast, tri), rast, clip[None], tri)  # builds and caches the topology
        first = (time.perf_counter() - t0) * 1e3
        covered = (rast[..., 3] > 0).float().mean().item()
        # Baseline (batch 1, forward and forward + backward through autograd).
        base_ids = naive_rasterize_interpolate(clip.double(), tri, attr.double(), RES)[1]
        agree = (base_ids == rast[0, ..., 3].long() - 1).float().mean().item()
        base_f = timed(lambda: naive_rasterize_interpolate(clip, tri, attr, RES), max(3, repeats // 3))

        def base_fb():
            c = clip.detach().requires_grad_(True)
            a = attr.detach().requires_grad_(True)
            naive_rasterize_interpolate(c, tri, a, RES)[0].sum().backward()

        base_b = timed(base_fb, max(3, repeats // 3))
        print(f"\n{name}: {len(verts)} vertices, {len(tri)} triangles, {covered:.0%} of pixels covered, "
              f"first call (incl. topology) {first:.1f} ms; naive baseline agrees on {agree:.2%} of pixel ids")
        rows.append((name, "naive torch", 1, base_f, base_b, len(tri)))
        for dev in devices:
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            d_tri = tri.to(dev)
            for b in batches:
                pos = clip[None].repeat(b, 1, 1).to(dev)
                a = attr.to(dev)
                fwd = timed(lambda: pipeline(pos, d_tri, a, False), repeats, sync)
                fb = timed(lambda: pipeline(pos, d_tri, a, True), repeats, sync)
                rows.append((name, "morph3d cpu" if dev == "cpu" else "nvdiffrast", b,
                             tuple(t / b for t in fwd), tuple(t / b for t in fb), len(tri)))

    print("\nms per frame: wall median / best, and process CPU time (all threads, median); Mtri/s from the "
          "wall median; x = speed-up of the wall median over the naive baseline (batch 1)")
    header = f"{'mesh':16s} {'backend':12s} {'B':>2s} {'forward ms':>15s} {'cpu':>6s} {'fwd+bwd ms':>15s} " \
             f"{'cpu':>6s} {'fwd Mtri/s':>10s} {'f+b Mtri/s':>10s} {'fwd x':>6s} {'f+b x':>6s}"
    print(header)
    print("-" * len(header))
    base = {}
    for name, backend, b, fwd, fb, ntri in rows:
        if backend == "naive torch":
            base[name] = (fwd[0], fb[0])
        bf, bb = base[name]
        print(f"{name:16s} {backend:12s} {b:2d} {fwd[0] * 1e3:6.1f} / {fwd[1] * 1e3:6.1f} {fwd[2] * 1e3:6.1f} "
              f"{fb[0] * 1e3:6.1f} / {fb[1] * 1e3:6.1f} {fb[2] * 1e3:6.1f} {ntri / fwd[0] / 1e6:10.2f} "
              f"{ntri / fb[0] / 1e6:10.2f} {bf / fwd[0]:6.1f} {bb / fb[0]:6.1f}")
    target = [r for r in rows if r[1] == "morph3d cpu" and r[2] == 1 and r[0].startswith("face-") and r[5] > 50000]
    if target:
        ms = target[0][4][0] * 1e3
        print(f"\ntarget: forward + backward of the ~70k-triangle face at 224 px within 50 ms on "
              f"{args.threads} threads -> median {ms:.1f} ms ({'met' if ms <= 50 else 'NOT met'})")


if __name__ == "__main__":
    main()
