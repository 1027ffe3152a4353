r"""Runs a MaskConver model on your images or videos and draws the result.

Usage:
  python -m maskconver.demo --model=export/saved_model --input=photos/ \
    --output_dir=results/ [--label_map=records/train_label_map.json]
  python -m maskconver.demo --model=model.tflite --input=clip.mp4 \
    --output_dir=results/
  python -m maskconver.demo --experiment=maskconver_synthetic \
    --checkpoint_path=model_dir/ [--config_file=run.yaml] \
    --input=image.jpg --output_dir=results/

(installed: `maskconver-demo` with the same flags.)

`--input` is an image, a video or a folder of them (with --recursive, its
sub-folders too). The model is a SavedModel directory, a .tflite file, or a
registered experiment with a training checkpoint. For every image or video
frame `<name>` (the file stem, after its sub-folders with --recursive;
frames `<video>_<frame index>`) it writes:

  <output_dir>/<name>_overlay.png     segments over the image (stuff in its
                                      class colour, each thing instance in
                                      its own), boundaries, class names and
                                      a legend; long side <= --max_display_side
  <output_dir>/panoptic/<name>.png    COCO panoptic PNG at the image size
  <output_dir>/panoptic.json          COCO panoptic results, all inputs

For videos the overlays go into `<output_dir>/<video>_overlay.mp4` (PNGs per
frame with --frame_overlays). Class names and dataset category ids come from
the converter's label map (--label_map); without it classes are named by
training id ('class 3') and the JSON holds training ids.

Exit status: 0 if every input was processed; 1 if some failed (the others
are still processed; the failures are listed at the end); 2 if nothing could
start (bad flags, missing or empty input, unloadable model or label map).

Files that fail one by one: a file that is not an image or video (whatever
its extension), a truncated or corrupt image, an image larger than
--max_image_pixels (checked before decoding, so a decompression bomb costs
no memory), a video OpenCV cannot open or with no decodable frame. Outputs
are named after the input's file name and always land inside --output_dir.
"""

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from maskconver.common import flags as command_flags
from maskconver.inference import demo_runner
from maskconver.inference import media_inputs
from maskconver.inference import predictor_factory
from maskconver.visualization import overlay

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

_MODEL = flags.DEFINE_string(
    'model', None, 'SavedModel directory or .tflite file; or instead '
    '--experiment with --checkpoint_path.')
# --experiment, --config_file, --params_override, --checkpoint_path, --use_ema.
command_flags.define_experiment_flags()
command_flags.define_checkpoint_flags()
FLAGS = flags.FLAGS
_INPUT = flags.DEFINE_string(
    'input', None, 'An image, a video, or a folder of images and videos.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where to write.')
_RECURSIVE = flags.DEFINE_boolean(
    'recursive', False, 'Also process the sub-folders of an --input folder; '
    'outputs keep their sub-folders.')
_LABEL_MAP = flags.DEFINE_string(
    'label_map', None, "The converter's <prefix>_label_map.json: class names, "
    'colours and dataset category ids.')
_SCORE_THRESHOLD = flags.DEFINE_float(
    'score_threshold', None, 'Minimum segment score. With --experiment it '
    'replaces the post-processor threshold; exported models keep theirs and '
    'segments below this one are dropped (their pixels become void).')
_ALPHA = flags.DEFINE_float('alpha', overlay.DEFAULT_ALPHA,
                            'Opacity of the segment colours.')
_MAX_DISPLAY_SIDE = flags.DEFINE_integer(
    'max_display_side', overlay.MAX_DISPLAY_SIDE,
    'Long side of the overlays is at most this many pixels.')
_VIDEO_STRIDE = flags.DEFINE_integer(
    'video_stride', 1, 'Process every n-th video frame.')
_MAX_FRAMES = flags.DEFINE_integer(
    'max_frames', None, 'Process at most this many frames per video.')
_FRAME_OVERLAYS = flags.DEFINE_boolean(
    'frame_overlays', False, 'Also write an overlay PNG per video frame.')
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    'max_image_pixels', None, 'Refuse images with more pixels (read from '
    'the file header, before decoding; the demo needs about 25 bytes per '
    "pixel of its largest image). Default: Pillow's limit, about 179 MP.")
_NUM_THREADS = flags.DEFINE_integer(
    'num_threads', None, 'TFLite interpreter threads.')
_PROGRESS = flags.DEFINE_boolean('progress', True, 'Show progress bars.')


def _usage_error(message: str) -> int:
  print(f'error: {message}', file=sys.stderr)
  return EXIT_USAGE


def main(argv: Sequence[str]) -> int:
  """Runs the demo from the flags; returns the exit status."""
  if len(argv) > 1:
    return _usage_error(f'unexpected arguments {list(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  for flag in (_INPUT, _OUTPUT_DIR):
    if not flag.value:
      return _usage_error(f'--{flag.name} is required')
  if _VIDEO_STRIDE.value < 1:
    return _usage_error(f'--video_stride must be >= 1, got '
                        f'{_VIDEO_STRIDE.value}')
  if _MAX_IMAGE_PIXELS.value is not None and _MAX_IMAGE_PIXELS.value < 1:
    return _usage_error(f'--max_image_pixels must be >= 1, got '
                        f'{_MAX_IMAGE_PIXELS.value}')
  if _MAX_DISPLAY_SIDE.value < 16:
    return _usage_error(f'--max_display_side must be >= 16, got '
                        f'{_MAX_DISPLAY_SIDE.value}')
  try:
    inputs = media_inputs.collect_inputs(_INPUT.value, _RECURSIVE.value)
    if _LABEL_MAP.value and not os.path.isfile(_LABEL_MAP.value):
      raise ValueError(f'--label_map={_LABEL_MAP.value}: no such file')
    predictor = predictor_factory.load_predictor(
        model=_MODEL.value, experiment=FLAGS.experiment,
        checkpoint_path=FLAGS.checkpoint_path,
        config_files=FLAGS.config_file or (),
        params_override=FLAGS.params_override,
        score_threshold=_SCORE_THRESHOLD.value,
        num_threads=_NUM_THREADS.value, use_ema=FLAGS.use_ema)
    classes = demo_runner.resolve_classes(_LABEL_MAP.value, predictor)
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  except (ValueError, OSError) as e:
    return _usage_error(str(e))
  options = demo_runner.DemoOptions(
      score_threshold=_SCORE_THRESHOLD.value, alpha=_ALPHA.value,
      max_display_side=_MAX_DISPLAY_SIDE.value,
      video_stride=_VIDEO_STRIDE.value, max_frames=_MAX_FRAMES.value,
      frame_overlays=_FRAME_OVERLAYS.value, progress=_PROGRESS.value,
      max_image_pixels=_MAX_IMAGE_PIXELS.value)
  print(f'{predictor.description}: {len(inputs)} input(s) -> '
        f'{_OUTPUT_DIR.value}', file=sys.stderr)
  summary = demo_runner.run_demo(inputs, predictor, classes,
                                 _OUTPUT_DIR.value, options)
  print(summary.report(), file=sys.stderr)
  return EXIT_SOME_FAILED if summary.failures else EXIT_OK


def run() -> None:
  """Console entry point (`maskconver-demo`)."""
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
