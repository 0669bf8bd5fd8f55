#!/usr/bin/env bash
# Train morph3d's small image -> parameter regressor for the `open` model on the synthetic world and
# export its weights to assets/regressor_open.pt (the file morph3d.regress loads by default).
#
#     bash scripts/train_regressor.sh [WORK_DIR]      (default /tmp/morph3d-regressor)
#
# Recipe of the shipped weights (CPU, one thread: with more threads on a busy machine the small
# convolutions thrash): 30000 train-split world samples rendered once at 80 px (~25 ms each), then
# STEPS steps of batch 32 (AdamW, lr 2e-3, 100 warm-up steps, cosine decay), jittered landmark-box
# crops at 64 px, normalised parameter MSE + 0.05 x the 2D landmark distance (% of the crop side).
# Resumable: re-running continues from the latest checkpoint in WORK_DIR/run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/morph3d-regressor}"
STEPS="${STEPS:-4000}"
COUNT="${COUNT:-30000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK"
cd "$REPO"
[ -f "$WORK/train.pt" ] || python -m gan_bridge.methods.regressor cache "$WORK/train.pt" --count "$COUNT" --split train
[ -f "$WORK/heldout.pt" ] || python -m gan_bridge.methods.regressor cache "$WORK/heldout.pt" --count 1000 --split heldout
gan-bridge train gan_bridge.methods.regressor:Regressor cache="$WORK/train.pt" run_dir="$WORK/run" \
    steps="$STEPS" batch_size=32 lr=2e-3 checkpoint_every=250 log_every=50 progress=false
python -m gan_bridge.methods.regressor export "$WORK/run" assets/regressor_open.pt \
    --recipe "scripts/train_regressor.sh: $COUNT world samples at 80 px, $STEPS steps of batch 32, 64 px crops"
python benchmarks/regressor_accuracy.py --heldout "$WORK/heldout.pt"
