#!/usr/bin/env bash
# Regenerate every shipped factorized-prior weight file (convae/weights/fm-q*.safetensors, photo-q*.safetensors).
#
# Usage: scripts/train_zoo.sh [NAME...]   (default: all, in the order below; later fm runs start from earlier ones)
# Env:   DATA (default ../shared/data), RUNS (default runs/zoo), CONVAE (default: convae on PATH),
#        SHIP=1 to copy each finished file into convae/weights/.
# Each run records its command line, seed, data set, recipe, training seconds and the weights it started
# from in the safetensors metadata (see `convae train --meta/--init`). Recorded runs: 2 shared CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/zoo}
CONVAE=${CONVAE:-convae}
FM="fashion-mnist:$DATA/fashion-mnist"
PHOTOS="$DATA/photos"
PHOTO_TERMS="BSDS500 train+test (non-commercial research/education only), Urban100, McMaster, SunHays80 subset (terms unknown, research use only); BSDS500/val excluded (evaluation set); see the data folder's SOURCE.md"
mkdir -p "$RUNS"

run() {  # run NAME ARGS...: train NAME into $RUNS/NAME.safetensors, recording the command
  local name=$1
  shift
  local cmd=("$CONVAE" train --model "$name" --out "$RUNS/$name.safetensors" --seed 0 --force "$@")
  echo "+ ${cmd[*]}" >&2
  "${cmd[@]}" --meta "command=scripts/train_zoo.sh $name: ${cmd[*]}"
  if [[ ${SHIP:-0} == 1 ]]; then cp "$RUNS/$name.safetensors" "convae/weights/$name.safetensors"; fi
}

want() { [[ $# -eq 0 ]] || [[ " $* " == *" $NAME "* ]]; }

for NAME in fm-q3 fm-q2 fm-q1 fm-q4 photo-q2; do
  want "$@" || continue
  case $NAME in
    # From scratch at the middle rate, then fine-tune the neighbours from it (lambda is part of each variant).
    fm-q3) run fm-q3 --data "$FM" --epochs 1 --batch-size 64 --lr 2e-3 ;;
    fm-q2) run fm-q2 --data "$FM" --limit 10000 --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q3.safetensors" ;;
    fm-q1) run fm-q1 --data "$FM" --limit 10000 --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q2.safetensors" ;;
    fm-q4) run fm-q4 --data "$FM" --limit 10000 --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q3.safetensors" ;;
    photo-q2) run photo-q2 --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 64 --epochs 8 --batch-size 8 \
      --lr 1e-3 --meta "data_terms=$PHOTO_TERMS" ;;
  esac
done
