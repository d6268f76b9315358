#!/usr/bin/env bash
# Campaign run 5 (issue 17; docs/training/campaign.md): YOLOv8n-seg widened to reg_max 26, 1024 px, batch 8,
# 40 epochs, on CamVid train + coco128-seg + tiny_coco train2017 + BSDS500 train.
#
#   campaign/run5.sh          start it, or go on with it: exactly from $RUN/weights/last.pt when the run folder
#                             survived the last session, else from the weights committed here (run5.safetensors,
#                             fp16 EMA) at the epoch run5.json records (`fastsam train --start-epoch`)
#   campaign/run5.sh save     before a session ends: commit-ready copies of the newest epoch (run5.safetensors,
#                             run5.json); then `git add campaign && git commit`
#
# Run it in the background: setsid nohup campaign/run5.sh >> /work/campaign/run5.log 2>&1 < /dev/null &
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUN=${RUN:-/work/campaign/run5}
D=${DATA:-$repo/../shared/data}
cd "$repo"
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate

if [ "${1:-}" = save ]; then
    exec python "$here/save_run.py" "$RUN" "$here/run5"
fi
machine=(--threads 2 --workers 1 --save-every 1 --quiet)
if [ -f "$RUN/weights/last.pt" ]; then
    exec fastsam train --resume "$RUN" "${machine[@]}"
fi
start=(--model fastsam/weights/fastsam-default.safetensors)
if [ -f "$here/run5.json" ]; then
    # A fresh AdamW state needs a warm-up, but one epoch of it, not the three of a new run.
    start=(--model "$here/run5.safetensors" --warmup-epochs 1
           --start-epoch "$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["epoch"])' "$here/run5.json")")
fi
exec fastsam train "$D/camvid:train" "$D/coco128-seg" "$D/tiny_coco/tiny_coco:train2017" "$D/bsds500:train" \
    "${start[@]}" --reg-max 26 --imgsz 1024 --batch 8 --epochs 40 --close-mosaic 5 \
    --val-data "$D/camvid:val" --val-every 5 --val-limit 50 --seed 0 --out "$RUN" "${machine[@]}"
