"""Tests for maskconver.data.synthetic."""

import filecmp
import os

import numpy as np
from PIL import Image

from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic


def _load(split_paths):
  return coco_panoptic_io.load_json(split_paths['panoptic_json'])


def _all_files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
  for name, seed in (('a', 3), ('b', 3), ('c', 4)):
    synthetic.generate(str(tmp_path / name), 2, 1, 48, seed)
  files = _all_files(tmp_path / 'a')
  assert len(files) == 2 + 2 * 3  # 3 images, 3 PNGs, 2 JSON files.
  assert files == _all_files(tmp_path / 'b')
  _, mismatch, errors = filecmp.cmpfiles(tmp_path / 'a', tmp_path / 'b',
                                         files, shallow=False)
  assert not mismatch and not errors
  _, mismatch, _ = filecmp.cmpfiles(tmp_path / 'a', tmp_path / 'c', files,
                                    shallow=False)
  assert 'train/000000000001.jpg' in mismatch


def test_categories_non_contiguous_with_things_and_stuff(synthetic_dataset):
  data = _load(synthetic_dataset.train)
  categories = {c['id']: c for c in data['categories']}
  assert sorted(categories) == [1, 2, 3, 5, 20, 21, 22]
  assert [i for i, c in categories.items() if c['isthing']] == [1, 2, 3, 5]
  for category in categories.values():
    assert set(category) >= {'id', 'name', 'isthing', 'color'}
  seen = {s['category_id']
          for a in data['annotations'] + _load(synthetic_dataset.val)[
              'annotations'] for s in a['segments_info']}
  # Every stuff class and at least three thing classes appear in 9 images.
  assert {20, 21, 22} <= seen
  assert len(seen & {1, 2, 3, 5}) >= 3


def test_every_image_has_sky_ground_things_and_void(synthetic_dataset):
  data = _load(synthetic_dataset.train)
  for annotation in data['annotations']:
    categories = [s['category_id'] for s in annotation['segments_info']]
    assert 20 in categories and 21 in categories
    assert sum(c < 20 for c in categories) >= 2
    segment_map = coco_panoptic_io.read_segment_map(os.path.join(
        synthetic_dataset.train['panoptic_masks_dir'], annotation['file_name']))
    # Thin void borders: some void, but little of the image.
    void = np.mean(segment_map == 0)
    assert 0 < void < 0.1


def test_crowd_segments_are_single_things(tmp_path):
  synthetic.generate(str(tmp_path), 12, 0, 64, 1)
  data = _load(synthetic.split_paths(str(tmp_path), 'train'))
  crowds = [s for a in data['annotations'] for s in a['segments_info']
            if s['iscrowd']]
  # Each image has a crowd group with probability 1/2; 12 images with seed 1
  # have at least two, at most one per image, all of thing classes.
  assert 2 <= len(crowds) <= 12
  assert all(s['category_id'] in synthetic.THING_IDS for s in crowds)
  for annotation in data['annotations']:
    assert sum(s['iscrowd'] for s in annotation['segments_info']) <= 1


def test_masks_match_json(synthetic_dataset):
  for split in (synthetic_dataset.train, synthetic_dataset.val):
    data = _load(split)
    images = {i['id']: i for i in data['images']}
    for annotation in data['annotations']:
      image_info = images[annotation['image_id']]
      segment_map = coco_panoptic_io.read_segment_map(
          os.path.join(split['panoptic_masks_dir'], annotation['file_name']))
      with Image.open(os.path.join(split['image_dir'],
                                   image_info['file_name'])) as image:
        assert image.format == 'JPEG'
        assert image.size == (64, 64)
      assert segment_map.shape == (image_info['height'], image_info['width'])
      infos = annotation['segments_info']
      assert set(np.unique(segment_map)) - {0} == {s['id'] for s in infos}
      for info in infos:
        ys, xs = np.nonzero(segment_map == info['id'])
        assert info['area'] == ys.size
        assert info['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                ys.max() - ys.min() + 1]
        if info['category_id'] < 20 and not info['iscrowd']:
          assert info['area'] >= 50


def test_cli(tmp_path, capsys):
  assert synthetic.main([f'--output_dir={tmp_path}', '--num_train=1',
                         '--num_val=1', '--image_size=32', '--seed=2']) == 0
  assert 'Wrote 1 train and 1 val images' in capsys.readouterr().out
  assert os.path.isfile(tmp_path / 'annotations' / 'panoptic_val.json')
  assert len(os.listdir(tmp_path / 'annotations' / 'panoptic_train')) == 1
