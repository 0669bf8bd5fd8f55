#!/usr/bin/env bash
# Train morph3d's small image -> parameter regressor for the `open` model on the synthetic world and
# export its weights to assets/regressor_open.pt (the file morph3d.regress loads by default).
#
#     bash scripts/train_regressor.sh [WORK_DIR]      (default /tmp/morph3d-regressor)
#
# Recipe of the shipped weights (CPU, ONE torch thread: with 2 threads on a busy 2-core machine the small
# convolutions thrashed, 10x slower): 30000 train-split world samples rendered once at 80 px (~25 ms
# each), then batch-32 steps (AdamW, lr 2e-3, weight decay 1e-4, 100 warm-up steps, cosine decay to
# 2% of lr) on landmark-box crops at 64 px (centre jitter 5%, scale jitter 8%), loss = normalised
# parameter MSE (weights identity 1, expression 1, texture 0.5, rotation 2, position 2, lighting 0.5)
# + 0.05 x the mean 2D landmark distance in % of the crop side. Phase 1: PHASE1 steps; phase 2 resumes
# the same run to STEPS steps, which restarts the cosine schedule at its value for the longer run (a
# warm restart). About 0.2 s per step on one core. Re-running resumes from the latest checkpoint.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/morph3d-regressor}"
PHASE1="${PHASE1:-4000}"
STEPS="${STEPS:-7000}"
COUNT="${COUNT:-30000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK"
cd "$REPO"
[ -f "$WORK/heldout.pt" ] || python -m gan_bridge.methods.regressor cache "$WORK/heldout.pt" --count 1000 --split heldout
[ -f "$WORK/train.pt" ] || python -m gan_bridge.methods.regressor cache "$WORK/train.pt" --count "$COUNT" --split train
for steps in "$PHASE1" "$STEPS"; do
    gan-bridge train regressor cache="$WORK/train.pt" run_dir="$WORK/run" \
        steps="$steps" batch_size=32 lr=2e-3 checkpoint_every=250 log_every=50 progress=false
done
python -m gan_bridge.methods.regressor export "$WORK/run" assets/regressor_open.pt \
    --recipe "scripts/train_regressor.sh: $COUNT world samples at 80 px, $PHASE1 + $((STEPS - PHASE1)) steps of batch 32, 64 px crops"
python benchmarks/regressor_accuracy.py --heldout "$WORK/heldout.pt" --count 1000
