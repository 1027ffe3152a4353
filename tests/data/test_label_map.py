"""Tests for maskconver.data.label_map."""

import pytest

from maskconver.data import coco_panoptic_io
from maskconver.data import label_map as label_map_lib

_CATEGORIES = [
    {'id': 21, 'name': 'ground', 'isthing': 0, 'color': [1, 1, 1]},
    {'id': 5, 'name': 'cross', 'isthing': 1, 'color': [2, 2, 2]},
    {'id': 1, 'name': 'disc', 'isthing': 1, 'color': [3, 3, 3],
     'supercategory': 'shape'},
    {'id': 20, 'name': 'sky', 'isthing': 0},
]


def test_things_first_sorted_by_id_then_stuff():
  label_map = label_map_lib.LabelMap.from_coco_categories(_CATEGORIES)
  assert label_map.num_classes == 4
  assert label_map.num_thing_classes == 2
  assert label_map.num_stuff_classes == 2
  assert label_map.coco_ids == [1, 5, 20, 21]
  assert label_map.names == ['disc', 'cross', 'sky', 'ground']
  assert [label_map.is_thing(i) for i in range(4)] == [True, True, False,
                                                       False]
  assert label_map.classes[0].supercategory == 'shape'
  assert label_map.classes[1].color == (2, 2, 2)
  # A category without a colour gets a fixed one.
  assert len(label_map.classes[2].color) == 3


def test_maps_both_directions():
  label_map = label_map_lib.LabelMap.from_coco_categories(_CATEGORIES)
  assert [label_map.train_id(c) for c in (1, 5, 20, 21)] == [0, 1, 2, 3]
  assert [label_map.coco_id(t) for t in range(4)] == [1, 5, 20, 21]
  with pytest.raises(KeyError, match='category id 2 is not in the label map'):
    label_map.train_id(2)
  with pytest.raises(KeyError, match='training id 4'):
    label_map.coco_id(4)


def test_json_round_trip(tmp_path):
  label_map = label_map_lib.LabelMap.from_coco_categories(_CATEGORIES)
  assert label_map_lib.LabelMap.from_dict(label_map.to_dict()) == label_map
  path = str(tmp_path / 'label_map.json')
  label_map.save(path)
  loaded = label_map_lib.LabelMap.load(path)
  assert loaded == label_map
  assert loaded.classes[3] == label_map_lib.LabelClass(
      train_id=3, coco_id=21, name='ground', isthing=False, color=(1, 1, 1))
  assert [(c.coco_id, c.isthing) for c in loaded.classes] == [
      (1, True), (5, True), (20, False), (21, False)]


def test_bad_categories_are_named():
  with pytest.raises(coco_panoptic_io.PanopticFormatError,
                     match='appears more than once'):
    label_map_lib.LabelMap.from_coco_categories(_CATEGORIES + [_CATEGORIES[0]])
  with pytest.raises(coco_panoptic_io.PanopticFormatError,
                     match="no 'isthing' field"):
    label_map_lib.LabelMap.from_coco_categories([{'id': 1, 'name': 'a'}])


def test_rejects_stuff_before_things_and_bad_files(tmp_path):
  with pytest.raises(ValueError, match='before every stuff'):
    label_map_lib.LabelMap([
        label_map_lib.LabelClass(0, 9, 'wall', False, (0, 0, 0)),
        label_map_lib.LabelClass(1, 1, 'cat', True, (0, 0, 0)),
    ])
  path = tmp_path / 'bad.json'
  path.write_text('{"classes": [], "num_classes": 0, "num_thing_classes": 0}')
  with pytest.raises(coco_panoptic_io.PanopticFormatError, match='bad.json'):
    label_map_lib.LabelMap.load(str(path))
