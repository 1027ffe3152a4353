"""Tests for the scenarios of maskconver.data.synthetic."""

import filecmp
import math
import os

import numpy as np
import pytest

from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic
from maskconver.data import synthetic_scenarios

DISC, SQUARE, TRIANGLE, CROSS = 1, 2, 3, 5
SKY, GROUND, WATER = 20, 21, 22
NUM_IMAGES = 30
SIZE = 96


def _all_files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


def _render_split(scenario, rate=None, num_images=NUM_IMAGES, seed=0):
  return [synthetic.render_image(seed, 'val', i, SIZE, scenario, rate)
          for i in range(num_images)]


def _split_statistics(renders):
  totals = {}
  for _, segments, infos in renders:
    for name, value in synthetic_scenarios.scenario_statistics(
        segments, infos).items():
      if not name.endswith('_share'):
        totals[name] = totals.get(name, 0) + value
  return totals


def _centroid(segments, segment_id):
  ys, xs = np.nonzero(segments == segment_id)
  return ys.mean(), xs.mean()


def _things(infos):
  return [s for s in infos
          if s['category_id'] in synthetic.THING_IDS and not s['iscrowd']]


def test_shapes_is_the_default_byte_for_byte(tmp_path):
  synthetic.generate(str(tmp_path / 'default'), 2, 2, 64, 5)
  synthetic.generate(str(tmp_path / 'shapes'), 2, 2, 64, 5,
                     scenario='shapes', rate=None)
  files = _all_files(tmp_path / 'default')
  assert len(files) == 2 + 2 * 4
  _, mismatch, errors = filecmp.cmpfiles(
      tmp_path / 'default', tmp_path / 'shapes', files, shallow=False)
  assert not mismatch and not errors
  # The default JSON's info names no scenario.
  info = coco_panoptic_io.load_json(
      str(tmp_path / 'default' / 'annotations' / 'panoptic_val.json'))['info']
  assert info == {'description': 'maskconver synthetic panoptic shapes',
                  'seed': 5, 'split': 'val'}


def test_concave_rate_zero_renders_the_shapes_images():
  for index in range(6):
    shapes = synthetic.render_image(3, 'train', index, SIZE)
    concave = synthetic.render_image(3, 'train', index, SIZE, 'concave', 0.0)
    np.testing.assert_array_equal(shapes[0], concave[0])
    np.testing.assert_array_equal(shapes[1], concave[1])
    assert shapes[2] == concave[2]


@pytest.mark.parametrize('scenario', ['collisions', 'concave'])
def test_scenarios_are_deterministic_by_seed(scenario):
  first = synthetic.render_image(4, 'val', 2, SIZE, scenario)
  again = synthetic.render_image(4, 'val', 2, SIZE, scenario)
  other = synthetic.render_image(5, 'val', 2, SIZE, scenario)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert first[2] == again[2]
  assert not np.array_equal(first[1], other[1])


def test_json_records_scenario_and_rate(tmp_path):
  paths = synthetic.generate(str(tmp_path), 1, 1, 64, 0, 'collisions', 0.25)
  data = coco_panoptic_io.load_json(paths['val']['panoptic_json'])
  assert data['info']['scenario'] == 'collisions'
  assert data['info']['rate'] == 0.25
  assert [c['id'] for c in data['categories']] == [1, 2, 3, 5, 20, 21, 22]
  default = synthetic.generate(str(tmp_path / 'd'), 0, 1, 64, 0, 'concave')
  assert coco_panoptic_io.load_json(
      default['val']['panoptic_json'])['info']['rate'] == 0.8


def test_collisions_share_follows_rate():
  # Each placement is a pair with probability 0.5. A pair adds two colliding
  # things (ring or frame around a thing) or one (a thing in a lake), a
  # single adds one non-colliding thing, so the colliding share lies between
  # 0.5 (all pairs lakes) and 2 * 0.5 / 1.5 = 0.67 (no lakes). About 100
  # placements in 30 images make the pair fraction's standard deviation
  # ~0.05; 0.38 and 0.8 are more than two of them outside those bounds.
  totals = _split_statistics(_render_split('collisions'))
  assert totals['things'] >= 60
  share = totals['colliding'] / totals['things']
  assert 0.38 <= share <= 0.8
  # Rate 0: no pairs, and random placements never land within 1 px of
  # another class's centroid in these images. Rate 1: every thing is in a
  # pair (crowd groups are not counted).
  none = _split_statistics(_render_split('collisions', 0.0, 15))
  assert none['things'] >= 30 and none['colliding'] == 0
  every = _split_statistics(_render_split('collisions', 1.0, 15))
  assert every['things'] >= 30 and every['colliding'] == every['things']


def test_collision_pairs_are_exact_separated_and_of_two_classes():
  concentric = lakes = 0
  for _, segments, infos in _render_split('collisions', 1.0, 20):
    category = {s['id']: s['category_id'] for s in infos}
    centroids = {s['id']: _centroid(segments, s['id']) for s in infos
                 if (segments == s['id']).any()}
    for thing in _things(infos):
      partners = [i for i, c in centroids.items() if i != thing['id'] and
                  math.dist(c, centroids[thing['id']]) < 1.0]
      assert partners, 'a pair member without a partner'
      # Centrally symmetric about one half-pixel point: float noise only.
      assert all(math.dist(centroids[i], centroids[thing['id']]) < 1e-6
                 for i in partners)
      assert all(category[i] != thing['category_id'] for i in partners)
      for partner in partners:
        if category[partner] == WATER:
          lakes += 1
          water = segments == partner
          # The lake lies in the ground: its pixels touch no sky.
          sky = segments == next(s['id'] for s in infos
                                 if s['category_id'] == SKY)
          near = np.zeros_like(water)
          near[1:] |= water[:-1]
          near[:-1] |= water[1:]
          near[:, 1:] |= water[:, :-1]
          near[:, :-1] |= water[:, 1:]
          assert not (near & sky).any()
        elif category[partner] in synthetic.THING_IDS:
          concentric += 1
          # Not even diagonal neighbours: a gap of at least one pixel.
          inner = segments == thing['id']
          grown = inner.copy()
          for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
              grown |= np.roll(np.roll(inner, dy, 0), dx, 1)
          assert not (grown & (segments == partner)).any()
  assert concentric >= 20 and lakes >= 3


def test_concentric_outer_shapes_are_rings_and_frames():
  outer_categories = set()
  for _, segments, infos in _render_split('collisions', 1.0, 12):
    for thing in _things(infos):
      mask = segments == thing['id']
      ys, xs = np.nonzero(mask)
      cy, cx = int(ys.mean()), int(xs.mean())
      if not mask[cy, cx]:  # Hollow: the centre pixel belongs to another.
        outer_categories.add(thing['category_id'])
        assert thing['category_id'] in (DISC, SQUARE)
        assert segments[cy, cx] != 0
  assert outer_categories == {DISC, SQUARE}


def test_concave_box_centres_fall_off_the_object():
  concave = _split_statistics(_render_split('concave'))
  shapes = _split_statistics(_render_split('shapes'))
  assert concave['things'] >= 60 and shapes['things'] >= 60
  concave_share = concave['box_center_off_object'] / concave['things']
  shapes_share = shapes['box_center_off_object'] / shapes['things']
  # 80 % of the things are concave and ~95 % of those have their box
  # centre off the object (~0.75, less where occlusion fills it in); the
  # convex default shapes almost never do.
  assert concave_share >= 0.5
  assert shapes_share <= 0.1
  assert concave['centroid_off_object'] < concave['box_center_off_object']
  assert concave['colliding'] == 0


def test_statistics_ring_around_a_disc():
  # A 7x7 square ring (disc class) around one disc... of the square class,
  # with sky in between: all three centroids are (3.5, 3.5) in pixel
  # centres. The ring's box centre (floor(7 / 2) = 3, 3) and centroid pixel
  # (3, 3) are the inner pixel, off the ring; the inner thing's are on it.
  segments = np.full((7, 7), 30)
  segments[1:6, 1:6] = 20
  segments[3, 3] = 10
  infos = [{'id': 30, 'category_id': DISC, 'iscrowd': 0},
           {'id': 20, 'category_id': SKY, 'iscrowd': 0},
           {'id': 10, 'category_id': SQUARE, 'iscrowd': 0}]
  stats = synthetic_scenarios.scenario_statistics(segments, infos)
  assert stats == {
      'images': 1, 'things': 2, 'colliding': 2, 'box_center_off_object': 1,
      'centroid_off_object': 1, 'colliding_share': 1.0,
      'box_center_off_object_share': 0.5, 'centroid_off_object_share': 0.5}


def test_statistics_l_shape_same_class_pair_and_crowd():
  segments = np.zeros((7, 10), dtype=np.int64)
  # An L with two-pixel arms in rows 0-4, columns 0-4: 16 pixels, mean
  # pixel centre y = 41 / 16 + 0.5 = 3.06, x = 23 / 16 + 0.5 = 1.94, in
  # pixel (3, 1) of the lower arm; box centre pixel (2, 2) is in the notch.
  segments[0:5, 0:2] = 1
  segments[3:5, 2:5] = 1
  # A 5x5 frame around one pixel, both triangles: same class, so no
  # collision although their centroids coincide at (2.5, 7.5).
  segments[0:5, 5:10] = 2
  segments[1:4, 6:9] = 0
  segments[2, 7] = 3
  # A crowd of another class is no thing of its own.
  segments[6, 0:3] = 4
  infos = [{'id': 1, 'category_id': CROSS, 'iscrowd': 0},
           {'id': 2, 'category_id': TRIANGLE, 'iscrowd': 0},
           {'id': 3, 'category_id': TRIANGLE, 'iscrowd': 0},
           {'id': 4, 'category_id': DISC, 'iscrowd': 1}]
  stats = synthetic_scenarios.scenario_statistics(segments, infos)
  assert (stats['things'], stats['colliding'], stats['box_center_off_object'],
          stats['centroid_off_object']) == (3, 0, 2, 1)
  # With the frame's inner pixel a square, both collide.
  infos[2] = {'id': 3, 'category_id': SQUARE, 'iscrowd': 0}
  stats = synthetic_scenarios.scenario_statistics(segments, infos)
  assert stats['colliding'] == 2
  assert stats['colliding_share'] == pytest.approx(2 / 3, abs=1e-12)


@pytest.mark.parametrize('kwargs,name', [
    ({'scenario': 'rings'}, 'scenario'),
    ({'scenario': 'collisions', 'rate': 1.5}, 'rate'),
    ({'scenario': 'concave', 'rate': -0.1}, 'rate'),
    ({'scenario': 'concave', 'rate': float('nan')}, 'rate'),
    ({'scenario': 'shapes', 'rate': 0.5}, 'rate'),
])
def test_bad_scenario_or_rate(tmp_path, kwargs, name):
  with pytest.raises(ValueError, match=name):
    synthetic.render_image(0, 'val', 0, 64, **kwargs)
  with pytest.raises(ValueError, match=name):
    synthetic.generate(str(tmp_path / 'out'), 1, 1, 64, 0, **kwargs)
  assert not os.path.exists(tmp_path / 'out')


@pytest.mark.parametrize('flag', ['--scenario=rings', '--rate=2'])
def test_cli_rejects_bad_scenario_and_rate(tmp_path, capsys, flag):
  code = synthetic.main([f'--output_dir={tmp_path}', '--num_train=0',
                         '--num_val=1', '--image_size=64',
                         '--scenario=concave', flag])
  assert code == 2
  assert flag[2:6] in capsys.readouterr().err


def test_cli_prints_val_statistics(tmp_path, capsys):
  assert synthetic.main([f'--output_dir={tmp_path}', '--num_train=0',
                         '--num_val=3', '--image_size=64', '--seed=1',
                         '--scenario=collisions', '--rate=1']) == 0
  out = capsys.readouterr().out
  assert 'val statistics: 3 images' in out
  assert 'colliding_share=1.000' in out
