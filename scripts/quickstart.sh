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

echo "== 1/6 synthetic dataset -> $work/data"
if [ ! -f "$work/data/annotations/panoptic_val.json" ]; then
  "$python" -m maskconver.data.synthetic --output_dir="$work/data" \
    --num_train=400 --num_val=50 --image_size=128 --seed=0
else
  echo "exists, reusing it"
fi

echo "== 2/6 TFRecords -> $work/records"
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

echo "== 3/6 train + evaluate -> $work/model"
"$python" -m maskconver.train \
  --experiment=maskconver_synthetic \
  --mode=train_and_eval --seed=0 \
  --model_dir="$work/model" \
  --config_file="$root/configs/experiments/maskconver_synthetic.yaml" \
  --params_override="task.train_data.input_path=$work/records/train-*,task.validation_data.input_path=$work/records/val-*,task.validation_data.label_map_path=$work/records/val_label_map.json" \
  2>&1 | "$python" "$root/scripts/progress_filter.py"

echo "== 4/6 export: SavedModel -> $work/export, TFLite -> $work/export/model_float32.tflite"
override="task.validation_data.input_path=$work/records/val-*"
: > "$work/export.log"
"$python" -m maskconver.serving.export_saved_model \
  --experiment=maskconver_synthetic --checkpoint_path="$work/model" \
  --params_override="$override" --export_dir="$work/export/image_tensor" \
  --input_type=image_tensor --batch_size=1 \
  >> "$work/export.log" 2>&1 || { tail -n 30 "$work/export.log"; exit 1; }
"$python" -m maskconver.serving.export_saved_model \
  --experiment=maskconver_synthetic --checkpoint_path="$work/model" \
  --params_override="$override" --export_dir="$work/export/tflite_input" \
  --input_type=tflite --batch_size=1 --input_image_size=128,128 \
  >> "$work/export.log" 2>&1 || { tail -n 30 "$work/export.log"; exit 1; }
"$python" -m maskconver.serving.export_tflite \
  --saved_model_dir="$work/export/tflite_input/saved_model" \
  --tflite_path="$work/export/model_float32.tflite" \
  >> "$work/export.log" 2>&1 || { tail -n 30 "$work/export.log"; exit 1; }
ls -l "$work/export/image_tensor/saved_model/saved_model.pb" "$work/export/model_float32.tflite"

echo "== 5/6 demo on 4 val images -> $work/demo"
mkdir -p "$work/demo_inputs"
for f in $(ls "$work/data/val" | head -n 4); do cp "$work/data/val/$f" "$work/demo_inputs/"; done
"$python" -m maskconver.demo --model="$work/export/image_tensor/saved_model" \
  --input="$work/demo_inputs" --output_dir="$work/demo" \
  --label_map="$work/records/val_label_map.json" 2>&1 | tail -n 3

echo "== 6/6 result"
"$python" - "$work/model/eval_metrics.json" "$start" <<'PY'
import json, sys, time
metrics = json.load(open(sys.argv[1]))
minutes = (time.time() - float(sys.argv[2])) / 60
print(f"step {metrics['step']}  wall time {minutes:.1f} min")
print(f"PQ {metrics['PQ_all']:.1f}  (things {metrics['PQ_things']:.1f}, "
      f"stuff {metrics['PQ_stuff']:.1f})  SQ {metrics['SQ_all']:.1f}  "
      f"RQ {metrics['RQ_all']:.1f}")
PY
