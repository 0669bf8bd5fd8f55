"""Accuracy and speed of the small image -> parameter regressor (``morph3d.regress``).

1. Held-out synthetic faces (the world's held-out identities, framed as in training without jitter):
   pose error (degrees), identity / expression / texture RMS errors and 2D landmark NME, each next to the
   mean-prediction baseline (the training targets' mean, which the network stores).
2. Real photos of ``../shared/data/faces`` (skipped when absent), cropped around their ground-truth
   landmarks: the regressor's landmark NME (inter-ocular) and pose, against the landmark fitter's; then the
   landmark fit started from the closed-form pose (default) and from the regressor (``--init regressor``)
   at several iteration budgets: NME and time per face.
3. Images per second of the regressor (batch 1 and 32, this process's threads) and the ratio to the
   landmark fitter's faces per second.

    python benchmarks/regressor_accuracy.py [--heldout CACHE.pt | --count 300] [--weights W.pt] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FACES = (REPO / ".." / "shared" / "data" / "faces").resolve()

from morph3d.fitting import LandmarkFitConfig, LandmarkFitter, load_image, nme  # noqa: E402
from morph3d.model import load_model  # noqa: E402
from morph3d.regress import load_regressor, target_layout  # noqa: E402
from morph3d.regress.init import RegressorStartFitter  # noqa: E402
from gan_bridge.methods.regressor import model_landmarks  # noqa: E402

ITERATIONS = (0, 1, 2, 4, 6)  # full LM iterations after the pose-only ones (6 is the default)


def angle_error(a, b) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180) % 360 - 180)


def aligned_nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """NME after the best in-plane scale + translation of ``pred`` onto ``gt`` (no rotation): the error left
    by pose and shape once the face's position and size in the image are taken from the landmarks."""
    a, b = pred - pred.mean(0), gt - gt.mean(0)
    k = (a * b).sum() / (a * a).sum()
    return nme(k * a + gt.mean(0), gt)


def synthetic(reg, heldout: str | None, count: int) -> None:
    from gan_bridge.methods.regressor import (CacheDataset, frame_batch, load_cache, model_landmarks,
                                              render_cache)
    from morph3d.regress import decode_targets, encode_targets
    cache = load_cache(heldout) if heldout else render_cache(count, split="heldout")
    ds = CacheDataset(cache)
    n = min(count, len(ds))
    model, net = reg.model, reg.net
    lay = target_layout(model)
    preds, truths, nmes, base_nmes = [], [], [], []
    with torch.no_grad():
        for s in range(0, n, 100):
            crops, params, lm = frame_batch(ds.__getitems__(list(range(s, min(n, s + 100)))), reg.input_size)
            truth = encode_targets(params, model)
            pred = net(crops)
            for out, vec in ((nmes, pred), (base_nmes, net.target_mean.expand_as(pred))):
                fitted = model_landmarks(model, decode_targets(vec, model, params.camera, clamp=True))
                out += [nme(fitted[k].numpy(), lm[k].numpy()) for k in range(len(lm))]
            preds.append(pred)
            truths.append(truth)
    pred, truth = torch.cat(preds), torch.cat(truths)
    mean = net.target_mean.expand_as(truth)
    print(f"\n== held-out synthetic faces: {n} (world held-out identities, 64 px crops) ==")
    err = angle_error(np.degrees(pred[:, lay["rotation"]].numpy()), np.degrees(truth[:, lay["rotation"]].numpy()))
    base = angle_error(np.degrees(mean[:, lay["rotation"]].numpy()), np.degrees(truth[:, lay["rotation"]].numpy()))
    for i, name in enumerate(("yaw", "pitch", "roll")):
        print(f"{name:>10} error deg: mean {err[:, i].mean():6.2f}  median {np.median(err[:, i]):6.2f}   "
              f"(mean-prediction baseline {base[:, i].mean():6.2f})")
    for block in ("identity", "expression", "texture", "lighting"):
        sl = lay[block]
        rms = (pred[:, sl] - truth[:, sl]).square().mean().sqrt().item()
        rb = (mean[:, sl] - truth[:, sl]).square().mean().sqrt().item()
        print(f"{block:>10} RMS error: {rms:.3f}   (baseline {rb:.3f}; ratio {rms / rb:.2f})")
    print(f"{'landmarks':>10} NME (inter-ocular): mean {np.mean(nmes):.4f}  median {np.median(nmes):.4f}   "
          f"(baseline {np.mean(base_nmes):.4f})")


def photos(reg, threads_note: str) -> None:
    if not (FACES / "manifest.json").is_file():
        print(f"\n{FACES} not available; skipping the real photos")
        return
    entries = [e for e in json.loads((FACES / "manifest.json").read_text())["entries"] if e.get("landmarks68")]
    model = reg.model
    fitters = {(init, it): RegressorStartFitter(model, LandmarkFitConfig(iterations=it))
               for init in ("closed-form", "regressor") for it in ITERATIONS}
    rows = []
    images = {}
    for e in entries:  # warm-up and image loading outside the timings
        if e["file"] not in images:
            images[e["file"]] = load_image(FACES / e["file"])
    first = entries[0]
    fitters[("closed-form", 6)].fit(np.array(first["landmarks68"])[None], images[first["file"]].shape[:2])
    reg.predict(images[first["file"]], np.array(first["landmarks68"]))
    for e in entries:
        gt = np.array(e["landmarks68"], dtype=np.float64)
        image = images[e["file"]]
        size = image.shape[:2]
        t = time.perf_counter()
        pred = reg.predict(image, gt)
        t_reg = time.perf_counter() - t
        with torch.no_grad():
            lm = model_landmarks(model, pred)[0].numpy()
        row = {"id": e["id"], "reg_nme": nme(lm, gt), "reg_aligned": aligned_nme(lm, gt), "reg_time": t_reg,
               "reg_pose": np.degrees(pred.rotation[0].numpy()), "pose_gt": e.get("pose")}
        for (init, it), fitter in fitters.items():
            t = time.perf_counter()
            start = reg.predict(image, gt) if init == "regressor" else None
            r = fitter.fit(gt[None], size, start=start)
            row[(init, it)] = {"nme": nme(r.landmarks_2d[0].numpy(), gt), "time": time.perf_counter() - t,
                               "pose": np.degrees(r.params.rotation[0].numpy())}
        rows.append(row)
    print(f"\n== real photos: {len(rows)} faces of {FACES} (crops around the ground-truth landmarks; "
          f"{threads_note}) ==")
    reg_nme = np.array([r["reg_nme"] for r in rows])
    print(f"regressor alone: NME mean {reg_nme.mean():.4f}  median {np.median(reg_nme):.4f}; "
          f"{1000 * np.mean([r['reg_time'] for r in rows]):.1f} ms per face (crop + forward)")
    print(f"regressor, position and size aligned to the landmarks (scale + translation): NME mean "
          f"{np.mean([r['reg_aligned'] for r in rows]):.4f}")
    ref = np.array([r[("closed-form", 6)]["pose"] for r in rows])
    d = angle_error(np.array([r["reg_pose"] for r in rows]), ref)
    print(f"regressor pose vs the default landmark fit's: mean |diff| yaw {d[:, 0].mean():.1f}, pitch "
          f"{d[:, 1].mean():.1f}, roll {d[:, 2].mean():.1f} deg (median yaw {np.median(d[:, 0]):.1f})")
    print(f"{'full iterations':>16} | {'closed-form start: NME':>22} {'ms':>6} | "
          f"{'regressor start: NME':>20} {'ms':>6}")
    for it in ITERATIONS:
        a = [r[("closed-form", it)] for r in rows]
        b = [r[("regressor", it)] for r in rows]
        print(f"{it:>16} | {np.mean([x['nme'] for x in a]):22.4f} {1000 * np.mean([x['time'] for x in a]):6.1f} | "
              f"{np.mean([x['nme'] for x in b]):20.4f} {1000 * np.mean([x['time'] for x in b]):6.1f}")
    better = np.mean([r[("regressor", 6)]["nme"] < r[("closed-form", 6)]["nme"] - 1e-4 for r in rows])
    worse = np.mean([r[("regressor", 6)]["nme"] > r[("closed-form", 6)]["nme"] + 1e-4 for r in rows])
    print(f"at the default 6 iterations the regressor start is better on {100 * better:.0f}% of the faces, "
          f"worse on {100 * worse:.0f}%")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from fit_accuracy import manifest_pose_to_ours
    for r in rows:
        if r["pose_gt"] is not None:
            gt = manifest_pose_to_ours(r["pose_gt"])
            print(f"{r['id']}: pose [yaw, pitch, roll] truth {np.round(gt, 1)}, regressor "
                  f"{np.round(r['reg_pose'], 1)}, landmark fit {np.round(r[('closed-form', 6)]['pose'], 1)}, "
                  f"fit from the regressor {np.round(r[('regressor', 6)]['pose'], 1)} deg")


def speed(reg) -> None:
    print(f"\n== speed ({torch.get_num_threads()} torch threads) ==")
    net = reg.net
    s = reg.input_size
    for batch in (1, 32):
        x = torch.zeros(batch, 3, s, s)
        with torch.no_grad():
            net(x)
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < 2.0:
                net(x)
                n += batch
        print(f"regressor forward, batch {batch:>2}: {n / (time.perf_counter() - t):8.1f} images/s")
    fitter = LandmarkFitter(reg.model)
    rng = np.random.default_rng(1)
    gt = reg.model.landmarks(reg.model.vertices_mean[None])[0].numpy()[:, :2] * np.array([1.0, -1.0]) + 150
    gt = gt + rng.normal(0, 0.5, gt.shape)
    fitter.fit(gt[None], (300, 300))
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < 2.0:
        fitter.fit(gt[None], (300, 300))
        n += 1
    fit_rate = n / (time.perf_counter() - t)
    x = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < 2.0:
            net(x)
            n += 1
    reg_rate = n / (time.perf_counter() - t)
    print(f"landmark fit (baseline, one face): {fit_rate:.1f} faces/s; regressor batch 1 is "
          f"{reg_rate / fit_rate:.2f}x that")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="regressor weights (default: the bundled regressor_open.pt)")
    ap.add_argument("--heldout", default=None, help="a held-out regressor cache (gan_bridge.methods.regressor cache "
                                                    "--split heldout); default: render --count samples")
    ap.add_argument("--count", type=int, default=300, help="held-out synthetic samples (default 300)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: synthetic, photos, speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model("open")
    reg = load_regressor(model, args.weights)
    print(f"regressor: {sum(p.numel() for p in reg.net.parameters()) / 1e6:.2f}M parameters, "
          f"{reg.input_size} px crops; {reg.info.get('recipe', '')}")
    skip = set(filter(None, args.skip.split(",")))
    if "synthetic" not in skip:
        synthetic(reg, args.heldout, args.count)
    if "photos" not in skip:
        photos(reg, f"{torch.get_num_threads()} torch threads")
    if "speed" not in skip:
        speed(reg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
