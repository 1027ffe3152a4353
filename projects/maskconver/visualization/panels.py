"""Input / ground truth / prediction panels, e.g. for TensorBoard summaries.

Every panel of a batch has the same size (the legend width depends only on
the class names), so a batch stacks into one uint8 [batch, h, w, 3] array
for `tf.summary.image`. Normalized network inputs go back to uint8 with
`maskconver.inference.preprocessing.denormalize_image`.
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from maskconver import keys
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


def render_batch_side_by_side(images: np.ndarray,
                              groundtruth_category: np.ndarray,
                              groundtruth_instance: np.ndarray,
                              predicted_category: np.ndarray,
                              predicted_instance: np.ndarray,
                              class_names: Sequence[str],
                              is_thing: Sequence[bool],
                              colors: np.ndarray,
                              draw_labels: bool = False) -> np.ndarray:
  """`render_side_by_side` for a batch, stacked for `tf.summary.image`.

  Args:
    images: uint8 [batch, height, width, 3].
    groundtruth_category: int [batch, height, width] class ids.
    groundtruth_instance: int [batch, height, width] instance ids.
    predicted_category: int [batch, height, width] class ids.
    predicted_instance: int [batch, height, width] instance ids.
    class_names: name of each training class.
    is_thing: thing flag of each training class.
    colors: uint8 [num_classes, 3] class colours.
    draw_labels: write class names inside the segments.

  Returns:
    uint8 [batch, panel height, panel width, 3]; panels whose legend is
    taller than the others are matched by padding the rest at the bottom.
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'images must be [batch, height, width, 3], got '
                     f'{images.shape}')
  font_size = legend_lib.default_font_size(*images.shape[1:3])
  panels = [
      render_side_by_side(
          images[i], (groundtruth_category[i], groundtruth_instance[i]),
          (predicted_category[i], predicted_instance[i]), class_names,
          is_thing, colors, draw_labels=draw_labels, font_size=font_size)
      for i in range(images.shape[0])
  ]
  height = max(p.shape[0] for p in panels)
  out = np.empty((len(panels), height, panels[0].shape[1], 3), np.uint8)
  out[:] = np.asarray(legend_lib.BACKGROUND_COLOR, np.uint8)
  for i, panel in enumerate(panels):
    out[i, :panel.shape[0]] = panel
  return out
