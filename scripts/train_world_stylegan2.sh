#!/usr/bin/env bash
# The run behind gan_bridge/assets/world_stylegan2_32.pt: a small StyleGAN2 (32 px) on the synthetic face world.
# Usage: scripts/train_world_stylegan2.sh [RUN_DIR] [extra key=value overrides...]
# The first run renders 30k train + 512 held-out world images (64 px, uint8, ~375 MB) into the cache files
# (~12 min with 2 workers); later runs reuse them. One thread per process is fastest on CPU.
# The shipped file: NPROC=1 for steps 0-3000, then NPROC=2 (resumed) for 3000-5000.
# NPROC=N trains in N processes (torchrun, gloo; the global batch stays 16). The run resumes from the latest
# checkpoint in RUN_DIR, also with another NPROC (data order is unchanged; random streams restart from the seed).
set -euo pipefail
RUN_DIR=${1:-/tmp/sg2world/run32}
shift || true
CACHE_DIR=${CACHE_DIR:-/tmp/sg2world}
NPROC=${NPROC:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "$NPROC" -gt 1 ]; then
  LAUNCH=(torchrun --standalone --nproc_per_node "$NPROC" -m gan_bridge)
else
  LAUNCH=(gan-bridge)
fi
exec "${LAUNCH[@]}" train stylegan2 run_dir="$RUN_DIR" data=synthetic \
  resolution=32 render_size=64 channel_base=2048 channel_max=128 z_dim=128 w_dim=128 n_mlp=4 \
  batch_size=16 steps=5000 lr=0.0025 ema_kimg=5 \
  data_count=30000 data_cache="$CACHE_DIR/train64.pt" fd_cache="$CACHE_DIR/heldout64.pt" cache_workers=2 \
  fd_every=500 fd_samples=256 sample_every=250 num_samples=64 checkpoint_every=250 keep_checkpoints=0 \
  log_every=25 seed=0 device=cpu progress=false tensorboard=false "$@"
