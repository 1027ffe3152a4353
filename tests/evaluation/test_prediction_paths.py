"""Prediction files: sub-folders kept, never written outside the folder."""

import json
import os

import numpy as np
import pytest

from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality
from maskconver.evaluation import prediction_writer

_CATEGORIES = [{'id': 11, 'isthing': 1}, {'id': 33, 'isthing': 0}]


def _writer(folder):
  return prediction_writer.PanopticPredictionWriter(
      str(folder), category_ids=[11, 33], is_thing=[True, False])


@pytest.mark.parametrize('file_name, png', [
    ('000139.jpg', '000139.png'),
    ('city/a/0001.jpg', 'city/a/0001.png'),
    ('city\\a\\0001.jpg', 'city/a/0001.png'),
    ('./a//b.jpeg', 'a/b.png'),
    ('../../etc/cron.d/x', '__/__/etc/cron.d/x.png'),
    ('/etc/passwd', 'etc/passwd.png'),
    ('..', '__.png'),
    ('source_id 17', 'source_id 17.png'),
    ('.hidden', '.hidden.png'),
])
def test_png_file_name_stays_inside(file_name, png):
  assert prediction_writer.png_file_name(file_name) == png


def _files_under(folder):
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, _, names in os.walk(folder) for name in names)


def test_hostile_names_write_only_inside_the_output_folder(tmp_path):
  out = tmp_path / 'run' / 'predictions'
  writer = _writer(out)
  segment_map = np.array([[1, 1], [0, 2]])
  for image_id, name in enumerate(['../../../escaped.jpg', '/tmp/abs.jpg',
                                   '..\\..\\win.jpg', 'city/a/0001.jpg']):
    writer.add_segments(image_id, name, segment_map, [0, 1])
  writer.write_json()
  # Nothing beside the output folder, everything inside it.
  assert _files_under(tmp_path) == sorted(
      os.path.join('run', 'predictions', f) for f in [
          'panoptic.json', 'panoptic/__/__/__/escaped.png',
          'panoptic/tmp/abs.png', 'panoptic/__/__/win.png',
          'panoptic/city/a/0001.png'])


def test_nested_predictions_evaluate(tmp_path):
  # Ground truth and predictions in the same nested layout: the writer's
  # JSON names the PNGs where it wrote them, so the evaluator finds them.
  writer = _writer(tmp_path / 'pred')
  maps = {'city/a/0001.jpg': np.array([[1, 1, 2], [1, 2, 2]]),
          'city/b/0001.jpg': np.array([[2, 2, 2], [0, 1, 1]])}
  gt_annotations = []
  for image_id, (name, segment_map) in enumerate(maps.items()):
    annotation = writer.add_segments(image_id, name, segment_map, [0, 1])
    png = tmp_path / 'gt' / annotation['file_name']
    png.parent.mkdir(parents=True, exist_ok=True)
    coco_panoptic_io.write_segment_map(str(png), segment_map)
    gt_annotations.append(dict(annotation, segments_info=[
        dict(s, iscrowd=0) for s in annotation['segments_info']]))
  writer.write_json()
  assert [a['file_name'] for a in json.loads(
      (tmp_path / 'pred' / 'panoptic.json').read_text())['annotations']] == [
          'city/a/0001.png', 'city/b/0001.png']
  coco_panoptic_io.write_json(str(tmp_path / 'gt.json'), {
      'annotations': gt_annotations, 'categories': _CATEGORIES})
  result = panoptic_quality.evaluate_coco_panoptic(
      str(tmp_path / 'gt.json'), str(tmp_path / 'gt'),
      str(tmp_path / 'pred' / 'panoptic.json'), writer.png_dir)
  assert result['All'] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': 2}


def test_two_images_on_one_png_are_refused(tmp_path):
  writer = _writer(tmp_path)
  one = np.ones((2, 2), np.int64)
  writer.add_segments(1, 'a.jpg', one, [0])
  with pytest.raises(ValueError, match=r"image 2 \(file_name 'a.png'\) and "
                     r'image 1 both map to the prediction a.png'):
    writer.add_segments(2, 'a.png', one, [0])
  # The first image's PNG is untouched.
  np.testing.assert_array_equal(
      coco_panoptic_io.read_segment_map(str(tmp_path / 'panoptic' / 'a.png')),
      one)
