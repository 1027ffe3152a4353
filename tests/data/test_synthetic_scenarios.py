"""Tests for the scenarios of maskconver.data.synthetic."""

import filecmp
import math
import os

import numpy as np
import pytest

from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic
from maskconver.data import synthetic_context
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


@pytest.mark.parametrize('scenario', ['collisions', 'same_size_collisions',
                                      'concave', 'context'])
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
  # Levels at 7 px: boundaries 24 and 48 scaled by 7 / 128 are 1.31 and
  # 2.63 px. Ring and sky have 24 pixels (sqrt 4.9: level index 2), the
  # inner square 1 (index 0): the ring collides with the sky on its own
  # level, the inner square with nothing on its level.
  stats = synthetic_scenarios.scenario_statistics(segments, infos)
  assert stats == {
      'images': 1, 'things': 2, 'colliding': 2, 'same_level_colliding': 1,
      'box_center_off_object': 1, 'centroid_off_object': 1,
      'colliding_share': 1.0, 'same_level_colliding_share': 0.5,
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


def test_head_level_follows_the_synthetic_parser():
  # maskconver_synthetic: boundaries 24 and 48 px at 128 px, scaled.
  assert [synthetic_scenarios.head_level(a, 128)
          for a in (575, 576, 2303, 2304)] == [0, 1, 1, 2]
  # At 192 px the boundaries are 36 and 72: 35^2 -> 0, 36^2 -> 1.
  assert [synthetic_scenarios.head_level(a, 192)
          for a in (35**2, 36**2, 72**2)] == [0, 1, 2]


def test_same_size_pairs_share_centroid_size_and_level():
  # Rate 1: every placement is a ring or frame around a thing of another
  # class (no lakes), the two of (nearly) equal area.
  ratios = []
  for _, segments, infos in _render_split('same_size_collisions', 1.0, 20):
    things = _things(infos)
    centroids = {s['id']: _centroid(segments, s['id']) for s in things}
    areas = {s['id']: int((segments == s['id']).sum()) for s in things}
    assert not any(s['category_id'] == WATER and s['id'] in centroids
                   for s in infos)
    for a in things:
      partners = [b for b in things if b['id'] != a['id'] and math.dist(
          centroids[a['id']], centroids[b['id']]) < 1e-6]
      assert len(partners) == 1, 'a pair member without one partner'
      [b] = partners
      assert b['category_id'] != a['category_id']
      ratios.append(max(areas[a['id']], areas[b['id']]) /
                    min(areas[a['id']], areas[b['id']]))
  assert len(ratios) >= 60
  # The ring takes whole groups of equidistant pixels (at most 8) past the
  # inner thing's area of 100 to 600 pixels at 96 px: within 8 %.
  assert max(ratios) <= 1.08
  totals = _split_statistics(_render_split('same_size_collisions', 1.0, 20))
  assert totals['colliding'] == totals['things']
  # Equal areas land on one level unless a boundary (18 or 36 px at 96 px)
  # falls between sqrt(area) and sqrt(1.08 area): at most a few pairs.
  assert totals['same_level_colliding'] >= 0.9 * totals['things']


def test_same_size_collisions_share_a_level_where_collisions_do_not():
  # Default rate 0.5: a pair adds two colliding things, a single one that
  # collides with nothing, so 2 * 0.5 / 1.5 = 0.67 of the things collide
  # (two standard deviations: 0.55-0.78 over ~160 things), nearly all on
  # their own level. In `collisions` the ring is 1.5-2.5x its inner
  # thing's size and a lake far larger: most colliding pairs straddle a
  # level boundary.
  same = _split_statistics(_render_split('same_size_collisions'))
  mixed = _split_statistics(_render_split('collisions'))
  assert 0.55 <= same['colliding'] / same['things'] <= 0.78
  assert same['same_level_colliding'] >= 0.9 * same['colliding']
  assert mixed['same_level_colliding'] <= 0.4 * mixed['colliding']


def _context_split(rate=None, num_images=NUM_IMAGES):
  totals = {}
  for image, segments, infos in _render_split('context', rate, num_images):
    for name, value in synthetic_context.context_statistics(
        image, segments, infos).items():
      if not name.endswith('_share'):
        totals[name] = totals.get(name, 0) + value
  return totals


def test_context_things_follow_the_rate_and_the_distant_flag():
  # Rate 0.5 over ~100 things: the grey share's standard deviation is 0.05;
  # 0.35-0.65 is three of them either side. Every grey thing has the
  # flag's class and lies 0.52 * 96 = 50 px from it, and every image has a
  # flag.
  totals = _context_split()
  assert totals['flags'] == totals['images'] == NUM_IMAGES
  assert totals['things'] >= 80
  assert 0.35 <= totals['context_things'] / totals['things'] <= 0.65
  assert totals['context_far'] == totals['context_things']
  assert totals['context_key'] == totals['context_things']
  # Rate 0: only coloured things (the white cross is not taken for grey);
  # rate 1: only grey ones.
  none = _context_split(0.0, 12)
  assert none['things'] >= 30 and none['context_things'] == 0
  every = _context_split(1.0, 12)
  assert every['things'] >= 30
  assert every['context_things'] == every['context_key'] == every['things']


def test_context_statistics_by_hand():
  # 20x20: sky rows 0-9, ground rows 10-19; a red flag (disc's colour) in
  # rows 1-2, columns 1-4. Grey thing A (disc class) in rows 15-17,
  # columns 15-17: nearest flag pixel (2, 4) to (15, 15) is
  # hypot(13, 11) = 17.0 px >= 0.52 * 20 - 1 = 9.4. Grey thing B (square) in
  # rows 11-12, columns 3-4: 9 px below the flag. C is a red disc.
  image = np.zeros((20, 20, 3), np.uint8)
  image[:10] = (60, 110, 230)
  image[10:] = (115, 90, 50)
  image[1:3, 1:5] = (220, 40, 30)
  segments = np.full((20, 20), 7)
  segments[:10] = 6
  segments[15:18, 15:18] = 1
  image[15:18, 15:18] = 100
  segments[11:13, 3:5] = 2
  image[11:13, 3:5] = 90
  segments[14:17, 6:9] = 3
  image[14:17, 6:9] = (220, 40, 30)
  infos = [{'id': 6, 'category_id': SKY, 'iscrowd': 0},
           {'id': 7, 'category_id': GROUND, 'iscrowd': 0},
           {'id': 1, 'category_id': DISC, 'iscrowd': 0},
           {'id': 2, 'category_id': SQUARE, 'iscrowd': 0},
           {'id': 3, 'category_id': DISC, 'iscrowd': 0}]
  stats = synthetic_context.context_statistics(image, segments, infos)
  assert stats == {
      'images': 1, 'things': 3, 'flags': 1, 'context_things': 2,
      'context_far': 1, 'context_key': 1, 'context_share': 2 / 3,
      'context_far_share': 0.5, 'context_key_share': 0.5}


def test_cli_prints_context_statistics(tmp_path, capsys):
  assert synthetic.main([f'--output_dir={tmp_path}', '--num_train=0',
                         '--num_val=3', '--image_size=96', '--seed=1',
                         '--scenario=context', '--rate=1']) == 0
  out = capsys.readouterr().out
  # Measured from the written JPEGs.
  assert 'val context: 3 flags in 3 images' in out
  assert 'context_share=1.000' in out
  assert 'from the flag 1.000, of the flag\'s class 1.000' in out
