#!/usr/bin/env bash
# The end-to-end demo: train `seed` briefly, compress a folder of test images, decompress it,
# and print sizes and PSNR. Usage: scripts/demo.sh [FASHION_MNIST_DIR] [WORK_DIR]
set -euo pipefail
DATA=${1:-"$(cd "$(dirname "$0")/.." && pwd)/../shared/data/fashion-mnist"}
WORK=${2:-"$(mktemp -d)"}
mkdir -p "$WORK"
echo "== work folder: $WORK"
echo "== 1. train seed for 3 epochs on Fashion-MNIST ($DATA)"
convae train --model seed --data "fashion-mnist:$DATA" --epochs 3 --out "$WORK/seed.safetensors" --force
echo "== 2. write 1,000 test images as PNGs"
python - "$DATA" "$WORK/images" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from convae.data import read_idx_images
images = read_idx_images(Path(sys.argv[1]) / "t10k-images-idx3-ubyte.gz")[:1000]
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
for i, a in enumerate(images):
    Image.fromarray(a).save(out / f"{i:04d}.png")
PY
echo "== 3. compress the folder"
convae compress "$WORK/images" "$WORK/codes.npy" --model "$WORK/seed.safetensors" --verify --force
echo "== 4. decompress it"
convae decompress "$WORK/codes.npy" "$WORK/recon" --model "$WORK/seed.safetensors" --force
echo "== 5. sizes"
du -sb "$WORK/images" "$WORK/codes.npy" "$WORK/recon"
