"""Tests of the palette, the overlay renderer and the legend."""

import numpy as np
import pytest

from maskconver import keys
from maskconver.visualization import legend
from maskconver.visualization import overlay
from maskconver.visualization import palette

_V = keys.VOID_CLASS
# Class 0 is a thing, classes 1 and 2 are stuff.
_NAMES = ['person', 'grass', 'sky']
_IS_THING = [True, False, False]
_COLORS = np.array([[255, 0, 0], [0, 128, 0], [200, 0, 50]], np.uint8)


def _scene():
  """4x6: sky (stuff) on columns 0-2, person 1 on 3-5 of rows 0-2, void row 3.

  Returns (image, category_mask, instance_mask); the image is gray 100.
  """
  category = np.array([[2, 2, 2, 0, 0, 0]] * 3 + [[_V] * 6])
  instance = np.array([[0, 0, 0, 1, 1, 1]] * 3 + [[0] * 6])
  image = np.full((4, 6, 3), 100, np.uint8)
  return image, category, instance


def test_default_class_colors_are_distinct_and_stable():
  colors = palette.default_class_colors(20)
  assert colors.shape == (20, 3) and colors.dtype == np.uint8
  assert len({tuple(c) for c in colors}) == 20
  np.testing.assert_array_equal(colors, palette.default_class_colors(20))


def test_instance_color_by_hand():
  # Red is hsv (0, 1, 1). Instance 1: hue shift (0.618 - 0.5) * 2 * 0.12 =
  # 0.0283, value 1 * 0.72: rgb (0.72, 0.72 * 0.170, 0) -> (184, 31, 0).
  assert palette.instance_color((255, 0, 0), 1) == (184, 31, 0)
  assert palette.instance_color((255, 0, 0), 0) == (255, 0, 0)
  colors = {palette.instance_color((255, 0, 0), i) for i in range(1, 30)}
  assert len(colors) == 29


def test_segment_boundaries_by_hand():
  _, category, instance = _scene()
  ids = overlay.segment_ids(category, instance, _IS_THING)
  boundary = overlay.segment_boundaries(ids)
  expected = np.array([[0, 0, 1, 1, 0, 0],
                       [0, 0, 1, 1, 0, 0],
                       [1, 1, 1, 1, 1, 1],   # touches the void row
                       [0, 0, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(boundary, expected)


def test_overlay_colors_boundaries_and_void_by_hand():
  image, category, instance = _scene()
  out = overlay.render_overlay(image, category, instance, _NAMES, _IS_THING,
                               _COLORS, alpha=0.5, draw_labels=False,
                               draw_legend=False)
  assert out.shape == (4, 6, 3) and out.dtype == np.uint8
  # Sky interior: 0.5 * 100 + 0.5 * (200, 0, 50).
  np.testing.assert_array_equal(out[0, 0], [150, 50, 75])
  np.testing.assert_array_equal(out[1, 1], [150, 50, 75])
  # Person 1 interior: 0.5 * 100 + 0.5 * (184, 31, 0) = (142, 65.5, 50);
  # 65.5 rounds to even.
  np.testing.assert_array_equal(out[0, 5], [142, 66, 50])
  # Boundaries are white; void is the image.
  np.testing.assert_array_equal(out[0, 2], overlay.BOUNDARY_COLOR)
  np.testing.assert_array_equal(out[1, 3], overlay.BOUNDARY_COLOR)
  np.testing.assert_array_equal(out[3], np.full((6, 3), 100))


def test_two_instances_of_a_class_get_different_colors():
  category = np.zeros((2, 8), np.int32)
  instance = np.array([[1, 1, 1, 1, 2, 2, 2, 2]] * 2)
  colors = overlay.segment_colors(category, instance, _IS_THING, _COLORS)
  assert tuple(colors[0, 0]) != tuple(colors[0, 7])
  # Stuff ignores instance ids: one class colour.
  stuff = overlay.segment_colors(np.full((2, 8), 1), instance, _IS_THING,
                                 _COLORS)
  assert {tuple(c) for c in stuff.reshape(-1, 3)} == {(0, 128, 0)}


def test_legend_lists_present_classes_with_swatches():
  image = np.full((120, 160, 3), 90, np.uint8)
  category = np.full((120, 160), 1)
  category[:40, :40] = 0
  instance = np.zeros((120, 160), np.int32)
  instance[:40, :40] = 1
  out = overlay.render_overlay(image, category, instance, _NAMES, _IS_THING,
                               _COLORS, draw_labels=False, font_size=12)
  assert out.shape[0] == 120 and out.shape[1] > 160
  panel = out[:, 160:]
  # Rows: person (class 0), grass (class 1), each with a swatch of its
  # colour; sky is absent.
  swatch_rows = [np.flatnonzero(np.all(panel == _COLORS[class_id],
                                       axis=-1).any(axis=1))
                 for class_id in (0, 1)]
  assert swatch_rows[0].size and swatch_rows[1].size
  assert swatch_rows[0].max() < swatch_rows[1].min()
  assert not np.all(panel == _COLORS[2], axis=-1).any()
  # Text is drawn: bright pixels right of the swatches.
  assert (panel[:, 30:].max(axis=-1) > 200).any()
  entries = legend.legend_entries(category, instance, _NAMES, _IS_THING,
                                  _COLORS)
  assert [(e.class_id, e.num_instances) for e in entries] == [(0, 1), (1, 0)]


def test_labels_are_written_inside_large_segments():
  image = np.full((100, 100, 3), 0, np.uint8)
  category = np.full((100, 100), 1)
  instance = np.zeros((100, 100), np.int32)
  plain = overlay.render_overlay(image, category, instance, _NAMES, _IS_THING,
                                 _COLORS, draw_labels=False, draw_legend=False)
  labelled = overlay.render_overlay(image, category, instance, _NAMES,
                                    _IS_THING, _COLORS, draw_legend=False,
                                    font_size=12)
  changed = np.argwhere(np.any(plain != labelled, axis=-1))
  assert changed.size
  # The label sits around the segment's innermost point (the centre).
  assert np.all(np.abs(changed.mean(axis=0) - 50) < 10)


def test_overlay_rejects_bad_arguments():
  image, category, instance = _scene()
  with pytest.raises(ValueError, match='outside'):
    overlay.render_overlay(image, np.full((4, 6), 3), instance, _NAMES,
                           _IS_THING, _COLORS)
  with pytest.raises(ValueError, match='must match the image size'):
    overlay.render_overlay(image, category[:3], instance[:3], _NAMES,
                           _IS_THING, _COLORS)
  with pytest.raises(ValueError, match='uint8'):
    overlay.render_overlay(image.astype(np.float32), category, instance,
                           _NAMES, _IS_THING, _COLORS)


def test_display_size_caps_and_enlarges():
  assert overlay.display_size(6000, 8000) == (1200, 1600)
  assert overlay.display_size(6000, 8000, max_side=800) == (600, 800)
  assert overlay.display_size(1, 1) == (256, 256)
  assert overlay.display_size(100, 30) == (200, 60)
  assert overlay.display_size(480, 640) == (480, 640)
