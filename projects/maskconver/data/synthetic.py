"""A small synthetic panoptic dataset in the COCO panoptic layout.

Writes::

  OUTPUT_DIR/train/*.jpg
  OUTPUT_DIR/val/*.jpg
  OUTPUT_DIR/annotations/panoptic_train.json
  OUTPUT_DIR/annotations/panoptic_train/*.png
  OUTPUT_DIR/annotations/panoptic_val.json
  OUTPUT_DIR/annotations/panoptic_val/*.png

Each image shows three stuff classes (`sky` above a noisy horizon, textured
`ground` below it, sometimes an irregular `water` blob) separated by thin void
borders, and four thing classes, each with its own shape and colour family
(red `disc`, yellow `square`, magenta `triangle`, white `cross`), in varied
sizes, rotations and textures. Things overlap (a later shape occludes an
earlier one, whose mask loses the covered pixels) and some touch. About half
the images hold one crowd segment: a tight cluster of small shapes of one
class annotated as a single `iscrowd=1` segment. Category ids are not
contiguous, so the training-id mapping is exercised, and segment ids are
random 24-bit values, so every channel of the PNG encoding is used.

More scenarios (`synthetic_scenarios`, same categories and layout) probe
MaskConver's claims: `collisions`, where instances of different classes share
their mask centroid (rings and frames around other things, things in the
middle of an elliptic lake); `same_size_collisions`, the rings and frames
with the same area as the thing in their hole, so that both land on the same
head level; `concave`, where things are rings, C, L and chevron shapes whose
box centre tends to lie off the object; and `context` (`synthetic_context`),
where grey things take the class of a flag far away in the sky. `--rate`
sets how often (defaults: 0.5, 0.5, 0.8 and 0.5). After writing, the CLI
prints the val split's statistics (`synthetic_scenarios.measure`): the share
of things whose centroid collides with another class's (in all and on the
same head level), and whose box centre or centroid lies off the object; for
`context` also the share of grey things, and of those the share that lie
far from the flag and have its class (`synthetic_context.measure`).

The output is a deterministic function of the arguments (same seed, same
bytes).
Usage::

  python -m maskconver.data.synthetic --output_dir=/tmp/synthetic \
      --num_train=400 --num_val=50 --image_size=128 --seed=0 \
      [--scenario=shapes|collisions|same_size_collisions|concave|context]
      [--rate=R]
"""

import io
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import flags
import numpy as np
from PIL import Image

from maskconver.common import flags as command_flags
from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic_context
from maskconver.data import synthetic_drawing as drawing
from maskconver.data import synthetic_scenarios
# Re-exported: the dataset's categories are part of this module's interface.
from maskconver.data.synthetic_drawing import CATEGORIES
from maskconver.data.synthetic_drawing import THING_IDS  # pylint: disable=unused-import

SCENARIOS = synthetic_scenarios.SCENARIOS

_SPLIT_SEEDS = {'train': 1, 'val': 2}
_SPLIT_ID_OFFSETS = {'train': 0, 'val': 1_000_000}


def render_image(seed: int, split: str, index: int, image_size: int,
                 scenario: str = 'shapes', rate: Optional[float] = None
                 ) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
  """Renders one image of a split.

  Args:
    seed: dataset seed.
    split: 'train' or 'val'.
    index: index of the image within its split.
    image_size: height and width in pixels.
    scenario: one of `SCENARIOS`.
    rate: the scenario's rate in [0, 1]; None for its default. `shapes` has
      no rate.

  Returns:
    (image uint8 [size, size, 3], segment ids int64 [size, size] with 0 for
    void, COCO `segments_info` list).

  Raises:
    ValueError: unknown `scenario` or `rate` outside [0, 1].
  """
  rate = synthetic_scenarios.resolve_rate(scenario, rate)
  rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], index])
  canvas = drawing.Canvas(
      rgb=np.zeros((image_size, image_size, 3), np.float32),
      segments=np.zeros((image_size, image_size), np.int64))
  synthetic_scenarios.draw_scene(rng, canvas, scenario, rate)
  rgb = canvas.rgb + rng.normal(0, 0.015, canvas.rgb.shape)
  image = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
  infos = coco_panoptic_io.segments_info_from_map(
      canvas.segments, canvas.categories, canvas.crowd, canvas.ids)
  return image, canvas.segments, infos


def _write_split(output_dir: str, split: str, num_images: int,
                 image_size: int, seed: int, scenario: str,
                 rate: Optional[float]) -> None:
  image_dir = os.path.join(output_dir, split)
  mask_dir = os.path.join(output_dir, 'annotations', f'panoptic_{split}')
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(mask_dir, exist_ok=True)
  images, annotations = [], []
  for index in range(num_images):
    image_id = _SPLIT_ID_OFFSETS[split] + index + 1
    image, segments, infos = render_image(seed, split, index, image_size,
                                          scenario, rate)
    file_name = f'{image_id:012d}.jpg'
    png_name = f'{image_id:012d}.png'
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=92)
    with open(os.path.join(image_dir, file_name), 'wb') as f:
      f.write(buffer.getvalue())
    coco_panoptic_io.write_segment_map(os.path.join(mask_dir, png_name),
                                       segments)
    images.append({'id': image_id, 'file_name': file_name,
                   'height': image_size, 'width': image_size})
    annotations.append({'image_id': image_id, 'file_name': png_name,
                        'segments_info': infos})
  info = {'description': 'maskconver synthetic panoptic shapes',
          'seed': seed, 'split': split}
  if scenario != 'shapes':  # The default `shapes` JSON names no scenario.
    info.update(scenario=scenario, rate=rate)
  coco_panoptic_io.write_json(
      os.path.join(output_dir, 'annotations', f'panoptic_{split}.json'), {
          'info': info,
          'licenses': [],
          'images': images,
          'annotations': annotations,
          'categories': [dict(c) for c in CATEGORIES],
      })


def generate(output_dir: str, num_train: int, num_val: int,
             image_size: int = 128, seed: int = 0, scenario: str = 'shapes',
             rate: Optional[float] = None) -> Dict[str, Dict[str, str]]:
  """Writes the synthetic dataset.

  Args:
    output_dir: dataset root, created if missing.
    num_train: number of training images.
    num_val: number of validation images.
    image_size: height and width of every image, at least 32.
    seed: any non-negative integer; the output depends only on the arguments.
    scenario: one of `SCENARIOS` (see the module docstring).
    rate: the scenario's rate in [0, 1]; None for its default. `shapes` has
      no rate. The JSON `info` of the other scenarios records both.

  Returns:
    {'train': paths, 'val': paths}, where paths has 'image_dir',
    'panoptic_json' and 'panoptic_masks_dir', ready for the converter.

  Raises:
    ValueError: a bad size, count, seed, scenario or rate, before anything is
      written.
  """
  rate = synthetic_scenarios.resolve_rate(scenario, rate)
  if image_size < 32:
    raise ValueError(f'image_size must be at least 32, got {image_size}')
  if num_train < 0 or num_val < 0 or seed < 0:
    raise ValueError('num_train, num_val and seed must be non-negative, got '
                     f'{num_train}, {num_val}, {seed}')
  paths = {}
  for split, count in (('train', num_train), ('val', num_val)):
    _write_split(output_dir, split, count, image_size, seed, scenario, rate)
    paths[split] = split_paths(output_dir, split)
  return paths


def split_paths(output_dir: str, split: str) -> Dict[str, str]:
  """The converter inputs of one split of a COCO panoptic layout."""
  return {
      'image_dir': os.path.join(output_dir, split),
      'panoptic_json': os.path.join(output_dir, 'annotations',
                                    f'panoptic_{split}.json'),
      'panoptic_masks_dir': os.path.join(output_dir, 'annotations',
                                         f'panoptic_{split}'),
  }


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the command's flags on `values`."""
  flags.DEFINE_string('output_dir', None,
                      'Where to write images/ and annotations/ (COCO '
                      'panoptic layout).', required=True, flag_values=values)
  flags.DEFINE_integer('num_train', 400, 'Train images.', lower_bound=0,
                       flag_values=values)
  flags.DEFINE_integer('num_val', 50, 'Val images.', lower_bound=0,
                       flag_values=values)
  flags.DEFINE_integer('image_size', 128, 'Side of the square images, px.',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('seed', 0, 'Seed: the same seed draws the same data.',
                       flag_values=values)
  flags.DEFINE_string('scenario', 'shapes',
                      f'What to draw: one of {", ".join(SCENARIOS)}.',
                      flag_values=values)
  flags.DEFINE_float('rate', None, 'Rate of the scenario in [0, 1] '
                     '(default: ' + ', '.join(
                         f'{name} {rate}' for name, rate in
                         synthetic_scenarios.DEFAULT_RATES.items()
                         if rate is not None) + ').',
                     flag_values=values)


def _generate(values: command_flags.FlagValues) -> int:
  start = time.perf_counter()
  try:
    generate(values.output_dir, values.num_train, values.num_val,
             values.image_size, values.seed, values.scenario, values.rate)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return command_flags.EXIT_USAGE
  print(f'Wrote {values.num_train} train and {values.num_val} val images to '
        f'{values.output_dir} in {time.perf_counter() - start:.1f} s')
  if values.num_val:
    val = split_paths(values.output_dir, 'val')
    print('val ' + synthetic_scenarios.format_statistics(
        synthetic_scenarios.measure(val['panoptic_json'],
                                    val['panoptic_masks_dir'])))
    if values.scenario == 'context':
      print('val ' + synthetic_context.format_statistics(
          synthetic_context.measure(val['panoptic_json'],
                                    val['panoptic_masks_dir'],
                                    val['image_dir']), values.image_size))
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Generates with `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _generate, define_flags, sys.argv[1:] if argv is None else argv,
      'maskconver-synthetic')


def run() -> None:
  """Console entry point (`maskconver-synthetic`)."""
  command_flags.run_flag_command(_generate, define_flags)


if __name__ == '__main__':
  run()
