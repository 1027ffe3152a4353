"""Tests of the input / ground truth / prediction panels."""

import numpy as np

from maskconver import keys
from maskconver.visualization import legend
from maskconver.visualization import overlay
from maskconver.visualization import panels

_V = keys.VOID_CLASS
_NAMES = ['car', 'road']
_IS_THING = [True, False]
_COLORS = np.array([[0, 0, 255], [128, 128, 128]], np.uint8)


def test_category_instance_from_segments_by_hand():
  segment_map = np.array([[7, 7, 3],
                          [9, 0, 3],
                          [9, 5, 5]])
  # Segments 7 and 9 are cars, 3 is road, 5 a crowd of cars; padding last.
  category, instance = panels.category_instance_from_segments(
      segment_map, segment_ids=[7, 3, 9, 5, 0],
      segment_classes=[0, 1, 0, 0, _V], is_thing=_IS_THING,
      segment_is_crowd=[False, False, False, True, False])
  np.testing.assert_array_equal(category, [[0, 0, 1], [0, _V, 1], [0, 0, 0]])
  np.testing.assert_array_equal(instance, [[1, 1, 0], [2, 0, 0], [2, 0, 0]])


def test_batch_panels_have_one_shape_and_show_each_map():
  images = np.stack([np.full((16, 20, 3), 40, np.uint8),
                     np.full((16, 20, 3), 200, np.uint8)])
  gt_category = np.full((2, 16, 20), 1)
  gt_instance = np.zeros((2, 16, 20), np.int32)
  pred_category = np.full((2, 16, 20), _V)
  pred_category[0, :, :10] = 0
  pred_instance = np.where(pred_category == 0, 1, 0)
  out = panels.render_batch_side_by_side(
      images, gt_category, gt_instance, pred_category, pred_instance,
      _NAMES, _IS_THING, _COLORS)
  font_size = legend.default_font_size(16, 20)
  legend_width = legend.legend_width(_NAMES + ['(nothing detected)'],
                                     font_size)
  gap = panels.PANEL_GAP
  assert out.dtype == np.uint8
  assert out.shape[0] == 2 and out.shape[3] == 3
  assert out.shape[2] == 3 * 20 + 3 * gap + legend_width
  # Panel 1 is the input; panel 2 the road ground truth (interior pixel,
  # alpha 0.55: 0.45 * 40 + 0.55 * 128 = 88.4); panel 3 image 2 shows no
  # prediction.
  np.testing.assert_array_equal(out[0, :16, :20], images[0])
  np.testing.assert_array_equal(out[0, 8, 20 + gap + 5], [88, 88, 88])
  np.testing.assert_array_equal(out[1, :16, 2 * (20 + gap):2 * (20 + gap) + 20],
                                images[1])
  # Prediction of image 1: car on the left half, void on the right.
  pred_panel = out[0, :16, 2 * (20 + gap):2 * (20 + gap) + 20]
  assert tuple(pred_panel[8, 15]) == (40, 40, 40)
  assert tuple(pred_panel[8, 3]) != (40, 40, 40)
  np.testing.assert_array_equal(pred_panel[8, 9], overlay.BOUNDARY_COLOR)
