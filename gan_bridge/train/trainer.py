"""The one training loop: seeding, DDP, data, logging, sample grids, checkpoints with exact resume."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import config_to_dict, save_config
from .data import per_process_batch
from .distributed import DistInfo, barrier, cleanup, gather_objects, init_distributed, mean_scalars
from .images import save_grid
from .logger import RunLogger
from .method import Method
from .seeding import preserved_rng, rng_state, seed_everything, set_rng_state


@dataclass
class TrainResult:
    """step: steps completed; scalars: the last step's (process-averaged) scalars; run_dir: the run's folder;
    rank: this process's rank."""

    step: int
    scalars: dict
    run_dir: Path
    rank: int = 0


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _wrap(module: nn.Module, info: DistInfo, find_unused: bool) -> nn.Module:
    if not info.distributed or not _trainable(module):
        return module
    from torch.nn.parallel import DistributedDataParallel
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def _resume_path(config) -> Path | None:
    if config.resume == "never":
        if latest_checkpoint(config.run_dir) is not None:
            raise ValueError(f"run_dir {config.run_dir} already has checkpoints; use resume=auto to continue "
                             f"that run, or another run_dir")
        return None
    if config.resume == "auto":
        return latest_checkpoint(config.run_dir)
    return Path(config.resume)


def _restore(method: Method, state: dict, info: DistInfo) -> int:
    missing = sorted(set(method.raw_modules) - set(state["modules"]))
    if missing:
        raise ValueError(f"the checkpoint has no module '{missing[0]}'; it was written by another method")
    for name, module in method.raw_modules.items():
        module.load_state_dict(state["modules"][name])
    for name, opt in method.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    method.load_state_dict(state.get("method", {}))
    rngs = state.get("rng", [])
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank])
    elif info.is_main:
        print(f"warning: checkpoint was written by {len(rngs)} processes, not {info.world_size}; "
              f"random streams restart from the seed")
    return int(state["step"])


def _snapshot(method: Method, step: int, info: DistInfo) -> dict:
    return {"step": step, "world_size": info.world_size, "config": config_to_dict(method.config),
            "modules": {n: m.state_dict() for n, m in method.raw_modules.items()},
            "optimizers": {n: o.state_dict() for n, o in method.optimizers.items()},
            "method": method.state_dict(), "rng": gather_objects(rng_state(), info)}


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def train(method: Method) -> TrainResult:
    """Train ``method`` per its ``config`` (single process, or one of ``torchrun``'s processes).

    Process ``rank`` is seeded with ``seed + rank``. With ``resume="auto"`` the latest checkpoint of
    ``run_dir`` is restored (modules, optimisers, method state, every process's RNG states, step) and the
    data stream restarts at that step, so the run continues exactly as if it had not stopped.
    Rank 0 writes the config, logs, sample grids and checkpoints; the others wait at barriers.
    """
    config = method.config
    info = init_distributed(config.device)
    try:
        return _train(method, config, info)
    finally:
        cleanup(info)


def _train(method: Method, config, info: DistInfo) -> TrainResult:
    per_process_batch(config.batch_size, info.world_size)
    if config.steps < 0:
        raise ValueError(f"steps must be >= 0, got {config.steps}")
    run_dir = Path(config.run_dir)
    if info.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir)
        except OSError as exc:
            raise ValueError(f"cannot write to run_dir {run_dir} ({exc.strerror}); choose a writable folder")
    barrier(info)

    seed_everything(config.seed, info.rank)
    method.dist, method.device = info, info.device
    modules, optimizers = method.build(config, info.device)
    method.raw_modules, method.optimizers = dict(modules), dict(optimizers)
    start = 0
    resume = _resume_path(config)
    if resume is not None:
        start = _restore(method, load_checkpoint(resume), info)
    method.modules = {n: _wrap(m, info, config.ddp_find_unused) for n, m in method.raw_modules.items()}

    # Fixed inputs, the data iterator and sample grids must not draw from the global generators: a
    # resumed run reaches the loop with the generators of the checkpoint, a fresh one with those of build().
    fixed = None
    logger = None
    if info.is_main:
        logger = RunLogger(run_dir, resume_step=start, tensorboard=config.tensorboard)
        if config.num_samples > 0 and config.sample_every > 0:
            with preserved_rng():
                fixed = method.fixed_inputs(config.num_samples, torch.Generator().manual_seed(config.seed))
    bar = None
    if info.is_main and config.progress:
        from tqdm import tqdm
        bar = tqdm(total=config.steps, initial=start, desc=run_dir.name, dynamic_ncols=True)
    with preserved_rng():
        data = iter(method.data(start))
    scalars: dict = {}
    step = start
    try:
        while step < config.steps:
            raw = method.train_step(next(data), step)
            step += 1
            scalars = mean_scalars({k: float(v) for k, v in raw.items()}, info)
            bad = [k for k, v in scalars.items() if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"step {step}: '{bad[0]}' is {scalars[bad[0]]}; training diverged "
                                         f"(lower lr, or resume from an earlier checkpoint)")
            if logger is not None and _due(step, config.log_every):
                logger.log(step, scalars)
            if fixed is not None and _due(step, config.sample_every):
                with preserved_rng(), torch.no_grad():
                    images = method.sample(fixed)
                if images is not None:
                    save_grid(images, run_dir / "samples" / f"step-{step:08d}.png", method.sample_columns)
            if _due(step, config.checkpoint_every) or step == config.steps:
                state = _snapshot(method, step, info)
                if info.is_main:
                    save_checkpoint(state, run_dir, step, config.keep_checkpoints)
                barrier(info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(scalars.items())[:4]}, refresh=False)
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    return TrainResult(step=step, scalars=scalars, run_dir=run_dir, rank=info.rank)


__all__ = ["TrainResult", "train"]
