"""A torch.multiprocessing target for the StyleGAN2 method's two-process test."""
import os

import torch

from gan_bridge.methods.stylegan2 import StyleGAN2


def stylegan2_ddp_worker(rank: int, world_size: int, port: int, config, out_dir: str) -> None:
    """One rank of a gloo group training StyleGAN2; writes its final G, D and G_ema to ``out_dir/rank<r>.pt``."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    from gan_bridge.train import train
    method = StyleGAN2(config)
    train(method)
    torch.save({n: method.module(n).state_dict() for n in ("G", "D", "G_ema")}, os.path.join(out_dir, f"rank{rank}.pt"))
