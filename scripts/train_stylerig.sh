#!/usr/bin/env bash
# Train StyleRig's three RigNets (pose, lighting, expression) for the world StyleGAN2
# (gan_bridge/assets/world_stylegan2_32.pt), then measure PIE's Table 2 in kind in one run and edit photos.
#
#     bash scripts/train_stylerig.sh [WORK_DIR]      (default /tmp/stylerig)
#
# 1. Three runs of STEPS steps (one per control mode, in parallel, one thread each): batch 8, Adam lr 5e-4
#    (StyleRig: 1e-4 for far longer runs), the losses of StyleRig (reconstruction, editing, consistency,
#    cycle), images compared through morph3d's renderer (photometric 1e-3 + landmark 0.2, PIE's weights).
# 2. Export each RigNet to rignets/<mode>.pt (-> gan_bridge/assets/world_rignets_32/).
# 3. `python -m gan_bridge.stylerig.evaluate`, pose mode: 100 held-out generated faces (RigNet and no edit),
#    and 16 held-out world photos embedded by PIE, its ablations (no E_recog, no E_id/E_edit/E_inv, direct W+)
#    and Image2StyleGAN, each then edited to 4 target poses. PIE runs at 5% of its 2000 + 1000 steps
#    (150 steps; Image2StyleGAN 250), a CPU budget. Lighting and expression: the generated faces only.
# 4. `gan-bridge edit` on a held-out world photo, a generated face (seed:1), the public-domain astronaut
#    portrait and a real photo of ../shared/data/faces (when present): pose, then lighting, then expression
#    (PIE Fig. 10). The README shows the seed:1 and astronaut sheets.
# The shipped runs (1 Dec 2026, 2-core CPU shared with an LI-Net training): ~2.9 s/step each, 1200 steps.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/stylerig}"
STEPS="${STEPS:-1200}"
PHOTOS="${PHOTOS:-16}"
G="$REPO/gan_bridge/assets/world_stylegan2_32.pt"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK/rignets"
cd "$REPO"
for mode in pose lighting expression; do
    gan-bridge train stylerig generator="$G" run_dir="$WORK/rig_$mode" mode=$mode steps="$STEPS" batch_size=8 \
        lr=5e-4 sample_every=250 checkpoint_every=250 progress=false > "$WORK/rig_$mode.log" 2>&1 &
done
wait
for mode in pose lighting expression; do
    python -m gan_bridge.stylerig.method export "$WORK/rig_$mode" "$WORK/rignets/$mode.pt"
done
evaluate() { python -m gan_bridge.stylerig.evaluate --generator "$G" --rignet "$WORK/rignets" --edits 4 "$@"; }
evaluate --mode pose --latents 100 --photos "$PHOTOS" --steps-scale 0.05 --out "$WORK/pose.json" | tee "$WORK/pose.md"
for mode in lighting expression; do
    evaluate --mode $mode --latents 100 --photos 0 --out "$WORK/$mode.json" | tee "$WORK/$mode.md"
done
python - "$WORK/world_photo.png" <<'EOF'
import sys
from gan_bridge.face.photos import save_image
from gan_bridge.face.world import FaceWorld, WorldConfig
save_image(FaceWorld(WorldConfig(image_size=32, split="heldout")).samples([3]).image[0], sys.argv[1])
EOF
EDIT=(--generator "$G" --rignet "$WORK/rignets" --yaw 20 --light 2=0.6 --expression jaw_open=0.8 --pie-steps 0.05)
gan-bridge edit "$WORK/world_photo.png" --align none "${EDIT[@]}" --out "$WORK/edit_world"
gan-bridge edit seed:1 "${EDIT[@]}" --out "$WORK/edit_seed1"
python -c "import sys; from PIL import Image; from skimage.data import astronaut; Image.fromarray(astronaut()).save(sys.argv[1])" \
    "$WORK/astronaut.png"
gan-bridge edit "$WORK/astronaut.png" --align world "${EDIT[@]}" --out "$WORK/edit_astronaut"
PHOTO="$REPO/../shared/data/faces/images/lfpw/lfpw_train_image_0001.png"
if [ -f "$PHOTO" ]; then
    gan-bridge edit "$PHOTO" --align world "${EDIT[@]}" --out "$WORK/edit_real"
fi
mkdir -p gan_bridge/assets/world_rignets_32
cp "$WORK"/rignets/*.pt gan_bridge/assets/world_rignets_32/
