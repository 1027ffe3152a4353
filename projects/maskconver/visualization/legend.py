"""Legend panels and text drawing for panoptic overlays."""

import dataclasses
import functools
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from maskconver import keys

BACKGROUND_COLOR = (32, 32, 32)
TEXT_COLOR = (255, 255, 255)


@dataclasses.dataclass(frozen=True)
class LegendEntry:
  """One row of a legend.

  Attributes:
    class_id: training class id.
    name: class name.
    color: (r, g, b) swatch colour, the class colour.
    num_instances: thing instances of the class in the image, 0 for stuff
      (or when not counted).
  """
  class_id: int
  name: str
  color: Tuple[int, int, int]
  num_instances: int = 0

  @property
  def label(self) -> str:
    if self.num_instances > 1:
      return f'{self.name} ({self.num_instances})'
    return self.name


@functools.lru_cache(maxsize=16)
def get_font(size: int) -> ImageFont.ImageFont:
  """Pillow's bundled font at `size` pixels (bitmap font without FreeType)."""
  return ImageFont.load_default(size=size)


def default_font_size(height: int, width: int) -> int:
  """A readable font size for an image of the given size."""
  return int(min(24, max(11, max(height, width) // 45)))


def text_size(text: str, font_size: int) -> Tuple[int, int]:
  """(width, height) in pixels of `text` drawn at `font_size`."""
  left, top, right, bottom = get_font(font_size).getbbox(text)
  return right - left, bottom - top


def draw_text_box(canvas: Image.Image, xy: Tuple[int, int], text: str,
                  font_size: int, background: Sequence[int],
                  color: Sequence[int]) -> None:
  """Draws `text` on a filled box whose top-left corner is `xy`, in place."""
  draw = ImageDraw.Draw(canvas)
  font = get_font(font_size)
  left, top, right, bottom = font.getbbox(text)
  pad = max(1, font_size // 6)
  x, y = xy
  draw.rectangle([x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad],
                 fill=tuple(background))
  draw.text((x + pad - left, y + pad - top), text, fill=tuple(color),
            font=font)


def legend_entries(category_mask: np.ndarray, instance_mask: np.ndarray,
                   class_names: Sequence[str], is_thing: Sequence[bool],
                   colors: np.ndarray) -> List[LegendEntry]:
  """Entries for the classes present in a prediction, by class id.

  Args:
    category_mask: int [height, width] training class ids, VOID_CLASS void.
    instance_mask: int [height, width] instance ids (things: 1 .. n).
    class_names: name of each training class.
    is_thing: thing flag of each training class.
    colors: uint8 [num_classes, 3] class colours.

  Returns:
    One entry per present class, with the number of its thing instances.
  """
  entries = []
  for class_id in np.unique(category_mask):
    if class_id == keys.VOID_CLASS:
      continue
    count = 0
    if is_thing[class_id]:
      ids = np.unique(instance_mask[category_mask == class_id])
      count = int(np.count_nonzero(ids > 0))
    entries.append(LegendEntry(
        class_id=int(class_id), name=str(class_names[class_id]),
        color=tuple(int(c) for c in colors[class_id]), num_instances=count))
  return entries


def _layout(font_size: int) -> Tuple[int, int, int]:
  """(margin, row height, swatch side) for a font size."""
  margin = max(4, font_size // 2)
  return margin, font_size + margin, font_size


def legend_width(labels: Sequence[str], font_size: int) -> int:
  """Width of a legend fitting each of `labels` on one row."""
  margin, _, swatch = _layout(font_size)
  widest = max([text_size(label, font_size)[0] for label in labels] + [0])
  return 3 * margin + swatch + widest + margin


def legend_height(num_entries: int, font_size: int) -> int:
  """Height a legend of `num_entries` rows needs."""
  margin, row, _ = _layout(font_size)
  return 2 * margin + max(num_entries, 1) * row


def render_legend(entries: Sequence[LegendEntry], height: int,
                  font_size: int, width: Optional[int] = None) -> np.ndarray:
  """Draws a legend: one colour swatch and class name per row.

  Args:
    entries: the rows, top to bottom.
    height: minimum height; the panel grows if the rows need more.
    font_size: text size in pixels.
    width: panel width; None fits the labels.

  Returns:
    uint8 [max(height, needed), width, 3].
  """
  labels = [entry.label for entry in entries] or ['(nothing detected)']
  if width is None:
    width = legend_width(labels, font_size)
  height = max(height, legend_height(len(labels), font_size))
  canvas = Image.new('RGB', (width, height), BACKGROUND_COLOR)
  draw = ImageDraw.Draw(canvas)
  font = get_font(font_size)
  margin, row, swatch = _layout(font_size)
  if not entries:
    draw.text((margin, margin), labels[0], fill=TEXT_COLOR, font=font)
  for i, entry in enumerate(entries):
    top = margin + i * row
    draw.rectangle([margin, top, margin + swatch - 1, top + swatch - 1],
                   fill=entry.color)
    left, text_top, _, _ = font.getbbox(entry.label)
    draw.text((2 * margin + swatch - left, top - text_top), entry.label,
              fill=TEXT_COLOR, font=font)
  return np.asarray(canvas)
