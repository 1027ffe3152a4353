#!/usr/bin/env bash
# The README's main command. On a fresh machine: installs the package into
# .venv, generates the embedded synthetic panoptic dataset, converts it to
# TFRecords, trains MaskConver on the CPU, evaluates it and prints PQ.
#
#   bash scripts/quickstart.sh [WORK_DIR]      (default: ./quickstart)
#
# Leaves the trained model in WORK_DIR/model. Re-running resumes training
# from the last checkpoint and reuses the dataset already written.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-quickstart}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
python="$(bash "$root/scripts/setup_env.sh" | tail -n 1)"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
start=$(date +%s)

echo "== 1/4 synthetic dataset -> $work/data"
if [ ! -f "$work/data/annotations/panoptic_val.json" ]; then
  "$python" -m maskconver.data.synthetic --output_dir="$work/data" \
    --num_train=400 --num_val=50 --image_size=128 --seed=0
else
  echo "exists, reusing it"
fi

echo "== 2/4 TFRecords -> $work/records"
for split in train val; do
  if ! ls "$work/records/$split"-*.tfrecord >/dev/null 2>&1; then
    "$python" -m maskconver.data.convert_coco_panoptic \
      --image_dir="$work/data/$split" \
      --panoptic_json="$work/data/annotations/panoptic_$split.json" \
      --panoptic_masks_dir="$work/data/annotations/panoptic_$split" \
      --output_prefix="$work/records/$split" --num_shards=2
  else
    echo "$split records exist, reusing them"
  fi
done

echo "== 3/4 train + evaluate -> $work/model"
"$python" -m maskconver.train \
  --experiment=maskconver_synthetic \
  --mode=train_and_eval \
  --model_dir="$work/model" \
  --config_file="$root/configs/experiments/maskconver_synthetic.yaml" \
  --params_override="task.train_data.input_path=$work/records/train-*,task.validation_data.input_path=$work/records/val-*,task.validation_data.label_map_path=$work/records/val_label_map.json" \
  2>&1 | "$python" "$root/scripts/progress_filter.py"

echo "== 4/4 result"
"$python" - "$work/model/eval_metrics.json" "$start" <<'PY'
import json, sys, time
metrics = json.load(open(sys.argv[1]))
minutes = (time.time() - float(sys.argv[2])) / 60
print(f"step {metrics['step']}  wall time {minutes:.1f} min")
print(f"PQ {metrics['PQ_all']:.1f}  (things {metrics['PQ_things']:.1f}, "
      f"stuff {metrics['PQ_stuff']:.1f})  SQ {metrics['SQ_all']:.1f}  "
      f"RQ {metrics['RQ_all']:.1f}")
PY
