"""Display colours: one per class, and one per thing instance.

Class colours come from the label map when there is one; otherwise from
`default_class_colors`, which spreads hues by the golden ratio so that
neighbouring class ids look different. Thing instances of one class get
colours near their class colour (hue and brightness shifted per instance id)
so that both the class and the individual instances stay recognisable.
"""

import colorsys
from typing import Sequence, Tuple

import numpy as np

_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
# Largest hue shift of an instance colour away from its class colour.
_INSTANCE_HUE_SPREAD = 0.12
_INSTANCE_VALUES = (1.0, 0.72, 0.86, 0.6)

Color = Tuple[int, int, int]


def _to_uint8(rgb: Sequence[float]) -> Color:
  return tuple(int(round(255.0 * min(max(c, 0.0), 1.0))) for c in rgb)


def default_class_colors(num_classes: int) -> np.ndarray:
  """Distinct, deterministic colours for classes without a label map.

  Args:
    num_classes: number of classes (>= 0).

  Returns:
    uint8 [num_classes, 3] RGB colours.
  """
  if num_classes < 0:
    raise ValueError(f'num_classes must be >= 0, got {num_classes}')
  colors = np.zeros((num_classes, 3), np.uint8)
  for class_id in range(num_classes):
    hue = (0.08 + class_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = 0.75 if class_id % 2 == 0 else 0.55
    value = 0.95 if (class_id // 2) % 2 == 0 else 0.8
    colors[class_id] = _to_uint8(colorsys.hsv_to_rgb(hue, saturation, value))
  return colors


def instance_color(class_color: Sequence[int], instance_id: int) -> Color:
  """The colour of thing instance `instance_id` of a class.

  Args:
    class_color: (r, g, b) of the class, 0 .. 255.
    instance_id: instance id >= 1 (0, stuff or void, returns the class
      colour unchanged).

  Returns:
    (r, g, b); different instance ids of one class get different colours.
  """
  class_color = tuple(int(c) for c in class_color)
  if instance_id <= 0:
    return class_color
  hue, saturation, value = colorsys.rgb_to_hsv(
      *(c / 255.0 for c in class_color))
  # Low-saturation class colours (greys) have no hue to shift: give them one.
  saturation = max(saturation, 0.35)
  fraction = (instance_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
  hue = (hue + (fraction - 0.5) * 2.0 * _INSTANCE_HUE_SPREAD) % 1.0
  value_scale = _INSTANCE_VALUES[instance_id % len(_INSTANCE_VALUES)]
  value = max(value, 0.45) * value_scale
  return _to_uint8(colorsys.hsv_to_rgb(hue, saturation, value))


def contrasting_text_color(background: Sequence[int]) -> Color:
  """Black or white, whichever reads better on `background` (r, g, b)."""
  r, g, b = (float(c) for c in background)
  luma = 0.299 * r + 0.587 * g + 0.114 * b
  return (0, 0, 0) if luma > 140.0 else (255, 255, 255)
