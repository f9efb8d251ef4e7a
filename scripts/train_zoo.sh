#!/usr/bin/env bash
# Regenerate every shipped weight file (convae/weights/seed, fm-q*, fmh-q*, fmc-q*, photoh-q*, photov.safetensors;
# photo-q2, retired from the package, is still the first stage of the photo models).
#
# Usage: scripts/train_zoo.sh [STEP...]   (default: all steps, in the order below; later fm steps start from earlier ones)
# Env:   DATA (default ../shared/data), RUNS (default runs/zoo), CONVAE (default: convae on PATH),
#        SHIP=1 to copy each finished file into convae/weights/ (all but seed as float16, with PYTHON,
#        default python3, the interpreter convae is installed in).
# Each run records its command line, seed, data set, recipe, training seconds and the weights it started
# from in the safetensors metadata (see `convae train --meta/--init`). Recorded runs: 2 shared CPU cores.
# Caveat: the "fast" recipe changed while the shipped files were trained (commit 17253e3: Adam beta2 0.9 and
# no momentum cycling). fm-pre-e1, fm-pre-e3, fm-q3, fm-q2 and photo-q2 ran with the earlier loop (Adam betas
# (0.9, 0.999), one-cycle momentum cycling; their metadata recipe has no "betas"); fm-q1 and fm-q4 with the
# later one (metadata "betas": [0.9, 0.9]). A rerun today uses the later loop throughout, so it makes
# similar, not identical, weights. The hyperprior steps (fmh-*, photoh-*) start from the float32 factorized
# files and record their sha256 (init_sha256): the recorded fmh runs read them from convae/weights/, which
# held the same bytes as $RUNS/fm-q* until convae 0.2 shipped the fm-q* files as float16.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/zoo}
CONVAE=${CONVAE:-convae}
FM="fashion-mnist:$DATA/fashion-mnist"
PHOTOS="$DATA/photos"
PHOTO_TERMS="BSDS500 train+test (non-commercial research/education only), Urban100, McMaster, SunHays80 subset (terms unknown, research use only); BSDS500/val excluded (evaluation set); see the data folder's SOURCE.md"
mkdir -p "$RUNS"

run() {  # run OUT MODEL ARGS...: train MODEL into $RUNS/OUT.safetensors, recording the command
  local out=$1 model=$2
  shift 2
  local cmd=("$CONVAE" train --model "$model" --out "$RUNS/$out.safetensors" --seed 0 --force "$@")
  echo "+ ${cmd[*]}" >&2
  "${cmd[@]}" --meta "command=scripts/train_zoo.sh $out: ${cmd[*]}"
  if [[ ${SHIP:-0} == 1 && $out == "$model" ]]; then
    case $out in  # float16 copies (see scripts/half_weights.py)
      fm-q*|fmh-*|fmc-*|photoh-*|photov) "${PYTHON:-python3}" scripts/half_weights.py "$RUNS/$out.safetensors" "convae/weights/$out.safetensors" ;;
      *) cp "$RUNS/$out.safetensors" "convae/weights/$out.safetensors" ;;
    esac
  fi
}

want() { [[ $# -eq 0 ]] || [[ " $* " == *" $NAME "* ]]; }

for NAME in seed fm-pre-e1 fm-pre-e3 fm-q3 fm-q2 fm-q1 fm-q4 fmh-q3-r1 fmh-q2-r1 fmh-q4-r1 fmh-q1-r1 fmh-q5-r1 \
    fmh-q3-r2 fmh-q2-r2 fmh-q4-r2 fmh-q1-r2 fmh-q5-r2 fmh-q3-r3 fmh-q4-r3 fmh-q2 fmh-q5-r3 fmh-q1 \
    fmh-q3 fmh-q4 fmh-q5 fmc-q4-ctx fmc-q5-r1 fmc-q3-ctx fmc-q2-ctx fmc-q5-ctx fmc-q1-ctx \
    fmc-q5 fmc-q4 fmc-q3 fmc-q2 fmc-q1 fmc-q6 \
    photo-e8 photo-e38 photo-q2 photoh-q2-r1 photoh-q1-r1 photoh-q3-r1 photoh-q2-r2 photoh-q1-r2 photoh-q3 photoh-q0-r1 \
    photoh-q1 photoh-q2 photoh-q0 photov photov-r2; do
  want "$@" || continue
  case $NAME in
    # The blog's model with the fast recipe (one-cycle, Adam beta2 0.9) at 5 epochs to 3e-2, one thread.
    seed) run seed seed --data "$FM" --threads 1 --epochs 5 --lr 3e-2 --batch-size 128 ;;
    # A Fashion-MNIST model pre-trained at lambda 0.025 (1 epoch from scratch, then 2 more), from which fm-q3
    # is trained at its own lambda; the other rates are fine-tuned from fm-q3 (fm-q1 from fm-q2).
    # (The recorded pre-training runs wrote fm-q3-e1/fm-q3.safetensors, renamed fm-pre-e1/fm-pre-e3.)
    fm-pre-e1) run fm-pre-e1 fm-q3 --lmbda 0.025 --data "$FM" --epochs 1 --batch-size 64 --lr 2e-3 ;;
    fm-pre-e3) run fm-pre-e3 fm-q3 --lmbda 0.025 --data "$FM" --epochs 2 --batch-size 64 --lr 1e-3 \
      --init "$RUNS/fm-pre-e1.safetensors" ;;
    fm-q3) run fm-q3 fm-q3 --data "$FM" --epochs 3 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-pre-e3.safetensors" ;;
    fm-q2) run fm-q2 fm-q2 --data "$FM" --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q3.safetensors" ;;
    fm-q1) run fm-q1 fm-q1 --data "$FM" --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q2.safetensors" ;;
    fm-q4) run fm-q4 fm-q4 --data "$FM" --epochs 1 --batch-size 64 --lr 1e-3 --init "$RUNS/fm-q3.safetensors" ;;
    # Hyperprior models, on one thread each: 10 epochs with the transforms warm-started from the shipped
    # factorized model of the same rate (fm-q4 for fmh-q5; the side networks start fresh), then 5 and 10
    # more at half the learning rate, then 10 at a quarter for q3-q5 (a fourth round made fmh-q2 worse:
    # +1.3 % rate, -0.05 dB; q1 was not tried). (The recorded earlier rounds wrote fmh-qN.safetensors,
    # renamed fmh-qN-r1, -r2 and -r3.)
    fmh-q[1-4]-r1) K=${NAME%-r1}; run "$NAME" "$K" --data "$FM" --epochs 10 --batch-size 64 --lr 1e-3 --threads 1 \
      --init "$RUNS/fm-${K#fmh-}.safetensors" ;;
    fmh-q5-r1) run "$NAME" fmh-q5 --data "$FM" --epochs 10 --batch-size 64 --lr 1e-3 --threads 1 \
      --init "$RUNS/fm-q4.safetensors" ;;
    fmh-q[1-5]-r2) K=${NAME%-r2}; run "$NAME" "$K" --data "$FM" --epochs 5 --batch-size 64 --lr 5e-4 --threads 1 \
      --init "$RUNS/$K-r1.safetensors" ;;
    fmh-q[3-5]-r3|fmh-q[12]) K=${NAME%-r3}; run "$NAME" "$K" --data "$FM" --epochs 10 --batch-size 64 --lr 5e-4 --threads 1 \
      --init "$RUNS/$K-r2.safetensors" ;;
    fmh-q[3-5]) run "$NAME" "$NAME" --data "$FM" --epochs "${FMH_EPOCHS:-10}" --batch-size 64 --lr 2.5e-4 --threads 1 \
      --init "$RUNS/$NAME-r3.safetensors" ;;
    # Context models, first without the post-filter and with quarter-step means (`--config`: the variant's
    # options before `post` and `mean_steps` existed): the shipped hyperprior model of the same rate
    # (float32, in $RUNS) lends every tensor; the context layers start at zero (the plain hyperprior's
    # tables) and learn in 6 epochs, one thread; then 6 more at half the learning rate for q5. (These were
    # shipped as fmc-q* in convae 0.1.0; the recorded runs wrote fmc-qN.safetensors, renamed fmc-qN-ctx,
    # and fmc-q5-r1. The same second round made q2-q4 worse, +0.5 to +2.7 % rate for +0.02 dB or
    # less on 3,000 test images, and was not shipped; so was 6 epochs at a constant 1e-4 (`--recipe blog
    # --batch-size 64 --lr 1e-4`) for q3/q4: +1.2/+1.0 % rate, -0.03/-0.07 dB. The second round of q4/q5
    # includes a 10-minute SIGSTOP pause while the speed benchmark ran.)
    fmc-q[1-4]-ctx|fmc-q5-r1) K=${NAME%-ctx}; K=${K%-r1}; run "$NAME" "$K" --data "$FM" --epochs 6 --batch-size 64 \
      --lr 5e-4 --threads 1 --config post=0 --config mean_steps=4 --init "$RUNS/fmh-${K#fmc-}.safetensors" ;;
    fmc-q5-ctx) run fmc-q5-ctx fmc-q5 --data "$FM" --epochs 6 --batch-size 64 --lr 2.5e-4 --threads 1 \
      --config post=0 --config mean_steps=4 --init "$RUNS/fmc-q5-r1.safetensors" ;;
    # The shipped context models: the above lend every tensor; the post-filter starts as the identity and
    # all layers train together, one thread, 8/8/10/12/12 epochs for q1..q5; tables with eighth-step means.
    fmc-q[1-5]) EPOCHS=(0 8 8 10 12 12); run "$NAME" "$NAME" --data "$FM" --epochs "${EPOCHS[${NAME#fmc-q}]}" \
      --batch-size 64 --lr 5e-4 --threads 1 --init "$RUNS/$NAME-ctx.safetensors" ;;
    # The top rate (lambda 0.25, no hyperprior twin): 8 epochs from fmc-q5, one thread.
    fmc-q6) run fmc-q6 fmc-q6 --data "$FM" --epochs 8 --batch-size 64 --lr 5e-4 --threads 1 \
      --init "$RUNS/fmc-q5.safetensors" ;;
    # Photos: random 64x64 crops of 573 images; 8 epochs from scratch, then 30 and 150 more at batch 16
    # (the recorded first stage wrote photo-q2.safetensors, renamed photo-e8).
    photo-e8) run photo-e8 photo-q2 --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 64 --epochs 8 --batch-size 8 \
      --lr 1e-3 --meta "data_terms=$PHOTO_TERMS" ;;
    photo-e38) run photo-e38 photo-q2 --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 64 --epochs 30 \
      --batch-size 16 --lr 1e-3 --init "$RUNS/photo-e8.safetensors" --meta "data_terms=$PHOTO_TERMS" ;;
    photo-q2) run photo-q2 photo-q2 --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 64 --epochs 150 \
      --batch-size 16 --lr 1e-3 --init "$RUNS/photo-e38.safetensors" --meta "data_terms=$PHOTO_TERMS" ;;
    # Photo hyperprior models, 128x128 crops, on one thread each: 40 epochs with the transforms warm-started
    # from the shipped photo-q2, then 50 more at half the learning rate (photoh-q3 stops there), then a
    # third round (below). (The recorded first and second rounds wrote photoh-qN.safetensors, renamed
    # photoh-qN-r1 and photoh-qN-r2.)
    photoh-q[1-3]-r1) run "$NAME" "${NAME%-r1}" --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 --epochs 40 \
      --batch-size 8 --lr 1e-3 --threads 1 --init "$RUNS/photo-q2.safetensors" --meta "data_terms=$PHOTO_TERMS" ;;
    photoh-q[12]-r2|photoh-q3) K=${NAME%-r2}; run "$NAME" "$K" --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 \
      --epochs 50 --batch-size 8 --lr 5e-4 --threads 1 --init "$RUNS/$K-r1.safetensors" \
      --meta "data_terms=$PHOTO_TERMS" ;;
    # The lowest photo rate, added last: a first round of 60 epochs from photo-q2.
    photoh-q0-r1) run photoh-q0-r1 photoh-q0 --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 --epochs 60 --batch-size 8 \
      --lr 1e-3 --threads 1 --init "$RUNS/photo-q2.safetensors" --meta "data_terms=$PHOTO_TERMS" ;;
    # The last round, at half the learning rate from the previous one: 100 epochs for photoh-q1 and q2
    # (from r2), 50 for photoh-q0 (from r1).
    photoh-q[012]) P=$RUNS/$NAME-r2.safetensors E=100; [[ $NAME == photoh-q0 ]] && P=$RUNS/photoh-q0-r1.safetensors E=50
      run "$NAME" "$NAME" --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 --epochs "${PHOTOH_EPOCHS:-$E}" \
      --batch-size 8 --lr 5e-4 --threads 1 --init "$P" --meta "data_terms=$PHOTO_TERMS" ;;
    # The variable-rate photo model (levels 0-8, one level per batch drawn uniformly): warm-started from
    # photoh-q2, which it equals at level 5 before training. Resumable: RESUME=1 continues from the checkpoint
    # beside $RUNS/photov.safetensors (kept outside git). The shipped file: 250 epochs, 3,326 s on 2 shared cores.
    photov) run photov photov --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 --epochs "${PHOTOV_EPOCHS:-250}" \
      --batch-size 8 --lr 2e-4 --threads 1 --init convae/weights/photoh-q2.safetensors \
      ${RESUME:+--resume} --meta "data_terms=$PHOTO_TERMS" ;;
    # A second round from the first (a fresh one-cycle schedule, same recipe), PHOTOV_R2_EPOCHS long.
    photov-r2) run photov-r2 photov --data "$PHOTOS" --exclude 'BSDS500/val/*' --crop 128 \
      --epochs "${PHOTOV_R2_EPOCHS:-250}" --batch-size 8 --lr 2e-4 --threads 1 --init "$RUNS/photov.safetensors" \
      ${RESUME:+--resume} --meta "data_terms=$PHOTO_TERMS" ;;
  esac
done
