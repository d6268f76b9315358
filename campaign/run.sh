#!/usr/bin/env bash
# Campaign runs (issue 17; docs/training/campaign.md): YOLOv8n-seg widened to reg_max 26, 1024 px, batch 8,
# on CamVid train + coco128-seg + tiny_coco train2017 + BSDS500 train; 40 epochs (the last 5 without mosaic) unless a
# run's schedule says otherwise. Runs differ in their recipe below.
#
#   campaign/run.sh NAME               start run NAME, or go on with it: exactly from $RUN/weights/last.pt when the
#                                      run folder survived the last session, else from the weights committed here
#                                      (NAME.safetensors, fp16 EMA) at the epoch NAME.json records (--start-epoch).
#                                      A fork (run 8) starts as a copy of its parent's exact state
#                                      (`fastsam train --resume PARENT --fork RUN`), while the parent is at that epoch
#   campaign/run.sh NAME save          before a session ends: commit-ready copies of the newest epoch
#                                      (NAME.safetensors, NAME.json); then `git add campaign && git commit`
#   THREADS=1 campaign/run.sh NAME     two runs side by side, one thread each
#
# Run it in the background: setsid nohup campaign/run.sh run5 >> /work/campaign/run5.log 2>&1 < /dev/null &
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
name=${1:?usage: campaign/run.sh NAME [save]  (NAME: run5, run7, run8, run9, run10, run11 or run12)}
RUN=${RUN:-/work/campaign/$name}
D=${DATA:-$repo/../shared/data}
cd "$repo"
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate

case "$name" in
    run5)  # run 3's recipe, from the committed default; finished its 40 epochs (weights: e7bb92c)
        finished="run 5 finished its 40 epochs; its weights: git show e7bb92c:campaign/run5.safetensors" ;;
    run7)  # run 5 after epoch 23, one AdamW update per batch of 8 (93 a epoch, not ~12) at lr0 0.002 / sqrt(8);
           # stopped after epoch 26, level with run 5 (docs/training/campaign.md); its weights were not kept
        recipe=(--nbs 8 --optimizer AdamW --lr0 0.000707 --momentum 0.9 --warmup-bias-lr 0)
        origin=(--model "$RUN.origin.safetensors" --warmup-epochs 1 --start-epoch 23)
        origin_blob=fe0818d:campaign/run5.safetensors ;;  # run 5's weights after epoch 23
    run8)  # run 5 forked after epoch 35 (its exact state: weights, optimiser, random state), then the mask loss
           # also on a band of 0.1 of each box's size around it, so that masks stop at their region, not their box
        recipe=(--mask-margin 0.1)
        origin_blob=
        fork_of=(run5 35) ;;
    run9|run10)  # a second cycle from run 5's end (epoch 40): 15 epochs, the last 5 without mosaic, AdamW from lr
           # 0.001 (about half run 5's peak); run 9 pastes instances of another image with probability 0.3 (copy-paste:
           # objects over regions, for the one-click and COCO bars), run 10 is its control without
        recipe=(--optimizer AdamW --lr0 0.001 --momentum 0.9 --warmup-bias-lr 0)
        [ "$name" = run9 ] && recipe+=(--hyp copy_paste=0.3)
        schedule=(--epochs 15 --close-mosaic 5)
        origin=(--model "$RUN.origin.safetensors" --warmup-epochs 1)
        origin_blob=e7bb92c:campaign/run5.safetensors  # run 5's weights after epoch 40
        finished="$name finished its 15 epochs; run 10's weights are fastsam-default version 2 (and
5aaec61:campaign/run10.safetensors); run 9's were not kept" ;;
    run11|run12)  # a third cycle from run 10's end (epoch 15 of its cycle, the bundled model since 2026-12-06): run
           # 10's recipe with mosaic on half the images, so that more of them show whole large regions (the sky and
           # sand blocks of the README picture; the epochs without mosaic gave most of the edge and region gains so
           # far). Run 12, a fourth cycle from run 11's end, adds the one lever left untried on this data: more of it.
           # CamVid's 233 test images (8,129 dense regions; never measured on: the bars use CamVid val) join the
           # training set, 978 images an epoch instead of 745
        recipe=(--optimizer AdamW --lr0 0.001 --momentum 0.9 --warmup-bias-lr 0 --hyp mosaic=0.5)
        schedule=(--epochs 15 --close-mosaic 5)
        origin=(--model "$RUN.origin.safetensors" --warmup-epochs 1)
        if [ "$name" = run11 ]; then
            origin_blob=5aaec61:campaign/run10.safetensors  # run 10's weights after epoch 15
            finished="run 11 finished its 15 epochs; its weights: git show 39055ef:campaign/run11.safetensors"
        else
            extra_data=("$D/camvid:test")
            origin_blob=39055ef:campaign/run11.safetensors  # run 11's weights after epoch 15
            finished="run 12 finished its 15 epochs; its weights after epoch 15: campaign/run12.safetensors"
        fi ;;
    *) echo "unknown run $name (run5, run7, run8, run9, run10, run11, run12)" >&2; exit 2 ;;
esac
[ -n "${schedule+set}" ] || schedule=(--epochs 40 --close-mosaic 5)

if [ "${2:-}" = save ]; then
    exec python "$here/save_run.py" "$RUN" "$here/$name"
fi
if [ -n "${finished:-}" ] && [ ! -f "$RUN/weights/last.pt" ]; then
    echo "$finished" >&2
    exit 0
fi
machine=(--threads "${THREADS:-2}" --workers 1 --save-every 1 --quiet)
if [ -f "$RUN/weights/last.pt" ]; then
    exec fastsam train --resume "$RUN" "${machine[@]}"
fi
if [ -n "${fork_of:-}" ] && [ ! -f "$here/$name.json" ]; then
    parent=$(dirname "$RUN")/${fork_of[0]}
    at=$(python -c 'import sys, torch; print(torch.load(sys.argv[1], weights_only=True)["epoch"])' \
         "$parent/weights/last.pt" 2>/dev/null || echo none)
    if [ "$at" != "${fork_of[1]}" ]; then
        echo "$name forks ${fork_of[0]} after epoch ${fork_of[1]}; $parent/weights/last.pt is at epoch $at" >&2
        exit 2
    fi
    exec fastsam train --resume "$parent" --fork "$RUN" "${recipe[@]}" "${machine[@]}"
fi
if [ -f "$here/$name.json" ]; then
    # A fresh AdamW state needs a warm-up, but one epoch of it, not the three of a new run.
    origin=(--model "$here/$name.safetensors" --warmup-epochs 1
            --start-epoch "$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["epoch"])' "$here/$name.json")")
elif [ -n "$origin_blob" ]; then
    mkdir -p "$(dirname "$RUN")"
    git show "$origin_blob" > "$RUN.origin.safetensors"
fi
exec fastsam train "$D/camvid:train" "$D/coco128-seg" "$D/tiny_coco/tiny_coco:train2017" "$D/bsds500:train" \
    ${extra_data+"${extra_data[@]}"} \
    "${recipe[@]}" "${origin[@]}" "${schedule[@]}" --reg-max 26 --imgsz 1024 --batch 8 \
    --val-data "$D/camvid:val" --val-every 5 --val-limit 50 --seed 0 --out "$RUN" "${machine[@]}"
