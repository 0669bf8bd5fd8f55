"""The training loop shared by every gan_bridge method.

A method subclasses :class:`Method` (build modules and optimisers, make data, one ``train_step``) and
its config subclasses :class:`TrainConfig`; :func:`train` does the rest: seeding per rank, torchrun /
DistributedDataParallel (gloo on CPU, nccl on CUDA), CSV + JSONL (+ TensorBoard) logs, PNG sample grids
at fixed inputs, atomic keep-last-N checkpoints with exact resume.
"""
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, run_checkpoint, save_checkpoint
from .config import (TrainConfig, apply_overrides, config_to_dict, from_dict, load_config, parse_overrides,
                     read_config_file, save_config)
from .data import ShardedBatchSampler, per_process_batch, sharded_loader
from .distributed import DistInfo, barrier, gather_objects, init_distributed, mean_scalars
from .images import image_grid, save_grid
from .logger import RunLogger
from .method import Method, ema_update
from .seeding import preserved_rng, rng_state, seed_everything, set_rng_state
from .trainer import TrainResult, train

__all__ = [
    "DistInfo", "Method", "RunLogger", "ShardedBatchSampler", "TrainConfig", "TrainResult", "apply_overrides",
    "barrier", "config_to_dict", "ema_update", "from_dict", "gather_objects", "image_grid", "init_distributed",
    "latest_checkpoint", "list_checkpoints", "load_checkpoint", "load_config", "mean_scalars", "parse_overrides",
    "per_process_batch", "preserved_rng", "read_config_file", "rng_state", "run_checkpoint", "save_checkpoint", "save_config",
    "save_grid", "seed_everything", "set_rng_state", "sharded_loader", "train",
]
