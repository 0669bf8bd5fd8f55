"""A fixed set of synthetic-world renders cached as one uint8 tensor file, for image-only training.

Rendering the world costs ~0.2-0.4 s per 64 px image on a CPU core (scene layers + rasterisation),
far slower than a small GAN consumes images, so a run renders samples ``[0, count)`` of a split once
(in ``workers`` processes) and trains on the file. The file holds
``{"format": FORMAT, "images": (N, 3, S, S) uint8 sRGB, "image_size": S, "split", "seed", "count"}``.

    python -m gan_bridge.methods.world_cache OUT.pt --count 5000 --image-size 64 [--split heldout]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

FORMAT = "gan_bridge.world_cache.v1"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] -> (B, 3, H, W) uint8 in [0, 255] (rounded)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> (B, 3, H, W) float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def _world(image_size: int, split: str, seed: int):
    from gan_bridge.face.world import FaceWorld, WorldConfig
    return FaceWorld(WorldConfig(image_size=image_size, split=split, seed=seed))


_WORLD = None  # the world being rendered; forked workers inherit it instead of unpickling the model per chunk


def _render_chunk(indices: list[int]) -> torch.Tensor:
    torch.set_num_threads(1)
    return to_uint8(_WORLD.samples(indices).image)


def render_world_images(count: int, image_size: int = 64, split: str = "train", seed: int = 0,
                        workers: int = 1, chunk: int = 32, progress: bool = False) -> torch.Tensor:
    """Samples ``[0, count)`` of the world's ``split`` -> (count, 3, S, S) uint8 (same pixels for any ``workers``
    up to the world's batched-rounding, ~1e-5 before quantisation)."""
    if count < 1:
        raise ValueError(f"count must be >= 1 images, got {count}")
    global _WORLD
    _WORLD = _world(image_size, split, seed)
    jobs = [list(range(s, min(s + chunk, count))) for s in range(0, count, chunk)]
    out, t0 = [], time.time()
    if workers <= 1:
        results = map(_render_chunk, jobs)
        pool = None
    else:
        pool = torch.multiprocessing.get_context("fork").Pool(workers)
        results = pool.imap(_render_chunk, jobs)
    try:
        for k, images in enumerate(results):
            out.append(images)
            if progress:
                done = sum(len(j) for j in jobs[:k + 1])
                print(f"{done}/{count} images, {time.time() - t0:.0f} s", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _WORLD = None
    return torch.cat(out)


def save_world_cache(path: str | Path, images: torch.Tensor, split: str, seed: int) -> Path:
    """Write uint8 images (N, 3, S, S) with their provenance to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".partial")
    torch.save({"format": FORMAT, "images": images.contiguous(), "image_size": int(images.shape[-1]),
                "split": split, "seed": int(seed), "count": int(images.shape[0])}, tmp)
    os.replace(tmp, path)
    return path


def load_world_cache(path: str | Path) -> dict:
    """The dict written by :func:`save_world_cache`; one-line errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"world cache {path} does not exist; render it with "
                                f"python -m gan_bridge.methods.world_cache {path} --count N")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for files that are not checkpoints
        raise ValueError(f"world cache {path} is corrupt ({type(exc).__name__}); "
                         f"delete it and render it again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a world image cache ({FORMAT}); pass a file written by world_cache")
    images = state["images"]
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ValueError(f"{path} holds images {tuple(images.shape)} {images.dtype}, not (N, 3, S, S) uint8")
    return state


def cached_world_images(path: str | Path, count: int, image_size: int, split: str = "train", seed: int = 0,
                        workers: int = 1, progress: bool = False) -> torch.Tensor:
    """(count, 3, S, S) uint8 images of the world's ``split``: read from ``path`` when it holds at least
    ``count`` images of that split, size and seed, else rendered and written there first."""
    path = Path(path)
    if path.is_file():
        state = load_world_cache(path)
        same = (state["split"], state["seed"], state["image_size"]) == (split, int(seed), int(image_size))
        if same and state["count"] >= count:
            return state["images"][:count]
        if not same:
            raise ValueError(f"{path} caches split={state['split']} seed={state['seed']} size={state['image_size']}, "
                             f"not split={split} seed={seed} size={image_size}; give another path or delete it")
    images = render_world_images(count, image_size, split, seed, workers, progress=progress)
    save_world_cache(path, images, split, seed)
    return images


class CachedImages(Dataset):
    """Map-style dataset over uint8 images (N, 3, S, S): a batch of indices -> (B, 3, R, R) float in
    [-1, 1], area-downsampled to ``resolution`` when it is smaller than S."""

    def __init__(self, images: torch.Tensor, resolution: int | None = None):
        if images.ndim != 4 or images.shape[0] < 1:
            raise ValueError(f"need a non-empty (N, 3, S, S) image tensor, got {tuple(images.shape)}")
        size = images.shape[-1]
        self.resolution = int(resolution or size)
        if self.resolution > size or size % self.resolution:
            raise ValueError(f"cannot train at {self.resolution} px from {size} px renders; "
                             f"render the cache at a multiple of the resolution")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitems__(self, indices) -> torch.Tensor:
        x = to_float(self.images[torch.as_tensor(list(indices), dtype=torch.long)])
        if self.resolution != x.shape[-1]:
            x = F.avg_pool2d(x, x.shape[-1] // self.resolution)
        return x

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]


def batch_collate(batch):
    """DataLoader ``collate_fn`` for :class:`CachedImages`: its batches are already tensors."""
    return batch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan_bridge.methods.world_cache",
                                description="Render samples [0, count) of the synthetic face world "
                                            "to a uint8 cache file.")
    p.add_argument("out", help="output .pt file")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--split", default="train", choices=("train", "heldout"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    images = cached_world_images(a.out, a.count, a.image_size, a.split, a.seed, a.workers, progress=True)
    print(f"{a.out}: {tuple(images.shape)} uint8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
