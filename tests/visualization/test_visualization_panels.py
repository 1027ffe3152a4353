"""Tests of the input / ground truth / prediction panels."""

import numpy as np

from maskconver import keys
from maskconver.visualization import class_info
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


def test_panels_of_one_size_have_one_width_and_show_each_map():
  images = np.stack([np.full((16, 20, 3), 40, np.uint8),
                     np.full((16, 20, 3), 200, np.uint8)])
  gt_category = np.full((2, 16, 20), 1)
  gt_instance = np.zeros((2, 16, 20), np.int32)
  pred_category = np.full((2, 16, 20), _V)
  pred_category[0, :, :10] = 0
  pred_instance = np.where(pred_category == 0, 1, 0)
  out = [panels.render_side_by_side(
      images[i], (gt_category[i], gt_instance[i]),
      (pred_category[i], pred_instance[i]), _NAMES, _IS_THING, _COLORS)
         for i in range(2)]
  font_size = legend.default_font_size(16, 20)
  legend_width = legend.legend_width(_NAMES + ['(nothing detected)'],
                                     font_size)
  gap = panels.PANEL_GAP
  # The legend lists the classes present: image 0's is taller.
  assert out[0].shape[1:] == out[1].shape[1:]
  assert out[0].shape[0] >= out[1].shape[0] >= 16
  assert out[0].dtype == np.uint8 and out[0].shape[2] == 3
  assert out[0].shape[1] == 3 * 20 + 3 * gap + legend_width
  # Panel 1 is the input; panel 2 the road ground truth (interior pixel,
  # alpha 0.55: 0.45 * 40 + 0.55 * 128 = 88.4); panel 3 image 2 shows no
  # prediction.
  np.testing.assert_array_equal(out[0][:16, :20], images[0])
  np.testing.assert_array_equal(out[0][8, 20 + gap + 5], [88, 88, 88])
  np.testing.assert_array_equal(out[1][:16, 2 * (20 + gap):2 * (20 + gap) + 20],
                                images[1])
  # Prediction of image 1: car on the left half, void on the right.
  pred_panel = out[0][:16, 2 * (20 + gap):2 * (20 + gap) + 20]
  assert tuple(pred_panel[8, 15]) == (40, 40, 40)
  assert tuple(pred_panel[8, 3]) != (40, 40, 40)
  np.testing.assert_array_equal(pred_panel[8, 9], overlay.BOUNDARY_COLOR)


def test_evaluation_panel_shows_the_input_at_the_original_size():
  # A 12 x 15 image scaled into a padded 24 x 24 input; originally 16 x 20.
  image = np.zeros((24, 24, 3), np.uint8)
  image[:12, :15] = 60
  image_info = np.array([[16, 20], [12, 15], [0.75, 0.75], [0, 0]])
  gt_map = np.full((16, 20), 7)
  pred_map = np.zeros((16, 20), np.int32)
  pred_map[:, :10] = 2  # Segment index 1: a car.
  classes = class_info.ClassInfo(names=tuple(_NAMES),
                                 is_thing=tuple(_IS_THING), colors=_COLORS,
                                 category_ids=(1, 2))
  out = panels.evaluation_panel(image, image_info, gt_map, [7, 0], [1, _V],
                                [False, False], pred_map, [_V, 0, _V],
                                classes)
  gap = panels.PANEL_GAP
  legend_width = legend.legend_width(
      _NAMES + ['(nothing detected)'], legend.default_font_size(16, 20))
  # As high as the legend of two classes, at least the image.
  assert out.shape[0] >= 16
  assert out.shape[1:] == (3 * 20 + 3 * gap + legend_width, 3)
  # The input, cropped and resized: its padding is gone.
  np.testing.assert_array_equal(out[:16, :20], np.full((16, 20, 3), 60))
  # The ground truth is road everywhere: 0.45 * 60 + 0.55 * 128 = 97.4.
  np.testing.assert_array_equal(out[8, 20 + gap + 5], [97, 97, 97])
  prediction = out[:16, 2 * (20 + gap):2 * (20 + gap) + 20]
  assert tuple(prediction[8, 15]) == (60, 60, 60)
  assert tuple(prediction[8, 3]) != (60, 60, 60)
