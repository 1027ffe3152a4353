"""Input / ground truth / prediction panels, e.g. for TensorBoard summaries.

Panels of images of one size have the same width (the legend width depends
only on the class names); a legend taller than the image makes its panel
taller.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from maskconver import keys
from maskconver.visualization import class_info
from maskconver.visualization import legend as legend_lib
from maskconver.visualization import overlay

# Columns of background between the panels.
PANEL_GAP = 4


def category_instance_from_segments(
    segment_map: np.ndarray,
    segment_ids: Sequence[int],
    segment_classes: Sequence[int],
    is_thing: Sequence[bool],
    segment_is_crowd: Optional[Sequence[bool]] = None
) -> Tuple[np.ndarray, np.ndarray]:
  """Turns a COCO-style segment map into category and instance masks.

  Args:
    segment_map: int [height, width] segment ids, 0 = void (e.g.
      `keys.GT_SEGMENT_MAP`).
    segment_ids: [num_segments] ids; entries <= 0 are padding.
    segment_classes: [num_segments] training class of each segment;
      VOID_CLASS entries are padding.
    is_thing: thing flag of each training class.
    segment_is_crowd: [num_segments] crowd flags; crowd segments keep their
      class and get instance id 0.

  Returns:
    (int32 [height, width] category mask, VOID_CLASS on void and on ids not
    in the list; int32 [height, width] instance mask, 1 .. n for thing
    segments in list order, 0 elsewhere).
  """
  segment_map = np.asarray(segment_map).astype(np.int64)
  segment_ids = np.asarray(segment_ids).astype(np.int64).reshape(-1)
  segment_classes = np.asarray(segment_classes).astype(np.int64).reshape(-1)
  if segment_ids.shape != segment_classes.shape:
    raise ValueError(f'segment_ids {segment_ids.shape} and segment_classes '
                     f'{segment_classes.shape} differ in length')
  crowd = (np.zeros(segment_ids.shape, bool) if segment_is_crowd is None
           else np.asarray(segment_is_crowd, bool).reshape(-1))
  thing_flags = np.asarray(is_thing, bool)
  category = np.full(segment_map.shape, keys.VOID_CLASS, np.int32)
  instance = np.zeros(segment_map.shape, np.int32)
  next_instance = 1
  for segment_id, class_id, is_crowd in zip(segment_ids, segment_classes,
                                            crowd):
    if segment_id <= 0 or class_id == keys.VOID_CLASS:
      continue
    where = segment_map == segment_id
    category[where] = class_id
    if thing_flags[class_id] and not is_crowd:
      instance[where] = next_instance
      next_instance += 1
  return category, instance


def render_side_by_side(image: np.ndarray,
                        groundtruth: Tuple[np.ndarray, np.ndarray],
                        prediction: Tuple[np.ndarray, np.ndarray],
                        class_names: Sequence[str],
                        is_thing: Sequence[bool],
                        colors: np.ndarray,
                        draw_labels: bool = False,
                        font_size: Optional[int] = None) -> np.ndarray:
  """[input | ground truth | prediction | legend] for one image.

  Args:
    image: uint8 [height, width, 3].
    groundtruth: (category mask, instance mask), int [height, width] each.
    prediction: (category mask, instance mask), int [height, width] each.
    class_names: name of each training class.
    is_thing: thing flag of each training class.
    colors: uint8 [num_classes, 3] class colours.
    draw_labels: write class names inside the segments.
    font_size: legend text size; default from the image size.

  Returns:
    uint8 [max(height, legend height), 3 * width + 3 * PANEL_GAP + legend
    width, 3]; the legend lists the classes of both maps and is as wide as
    the longest class name needs.
  """
  image = np.asarray(image)
  if font_size is None:
    font_size = legend_lib.default_font_size(*image.shape[:2])
  panels = [image]
  for category, instance in (groundtruth, prediction):
    panels.append(overlay.render_segments(
        image, category, instance, class_names, is_thing, colors,
        draw_labels=draw_labels, font_size=font_size))
  present = np.union1d(np.unique(groundtruth[0]), np.unique(prediction[0]))
  entries = [
      legend_lib.LegendEntry(class_id=int(c), name=str(class_names[c]),
                             color=tuple(int(v) for v in colors[c]))
      for c in present if c != keys.VOID_CLASS
  ]
  width = legend_lib.legend_width(
      list(class_names) + ['(nothing detected)'], font_size)
  panels.append(legend_lib.render_legend(entries, image.shape[0], font_size,
                                         width=width))
  return overlay.hstack_panels(panels, gap=PANEL_GAP)


def evaluation_panel(image: np.ndarray, image_info: np.ndarray,
                     groundtruth_map: np.ndarray,
                     groundtruth_ids: Sequence[int],
                     groundtruth_classes: Sequence[int],
                     groundtruth_is_crowd: Sequence[bool],
                     predicted_map: np.ndarray,
                     predicted_classes: Sequence[int],
                     classes: class_info.ClassInfo) -> np.ndarray:
  """Input | ground truth | prediction | legend of one evaluated image.

  Args:
    image: uint8 [input height, input width, 3], the (padded) network input
      before normalization.
    image_info: float [4, 2], Model Garden's image info: the scaled image
      fills `image_info[1]` (rows, columns) of the input.
    groundtruth_map: int [height, width] segment ids at the original size,
      0 = void (`keys.GT_SEGMENT_MAP`, cropped).
    groundtruth_ids: [num_segments] ids, 0 for padding.
    groundtruth_classes: [num_segments] training classes.
    groundtruth_is_crowd: [num_segments] crowd flags.
    predicted_map: int [height, width], segment index + 1 at the original
      size, 0 = void.
    predicted_classes: [K] training class of each segment index.
    classes: names, thing flags and colours of the training classes.

  Returns:
    uint8 [height, ..., 3], as `render_side_by_side`, with the input resized
    (bilinear) to the original size.
  """
  content_h, content_w = np.round(np.asarray(image_info)[1]).astype(np.int64)
  pixels = np.asarray(image[:content_h, :content_w], np.uint8)
  height, width = np.shape(groundtruth_map)
  pixels = np.asarray(Image.fromarray(pixels).resize(
      (width, height), Image.BILINEAR))
  groundtruth = category_instance_from_segments(
      groundtruth_map, groundtruth_ids, groundtruth_classes, classes.is_thing,
      groundtruth_is_crowd)
  prediction = category_instance_from_segments(
      predicted_map, np.arange(1, len(predicted_classes) + 1),
      predicted_classes, classes.is_thing)
  return render_side_by_side(pixels, groundtruth, prediction, classes.names,
                             classes.is_thing, classes.colors)
