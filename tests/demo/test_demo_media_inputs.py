"""Tests of input discovery and video frame reading."""

import pytest

from maskconver.inference import media_inputs

import demo_models


def test_folder_inputs_sorted_unique_names_no_hidden(tmp_path):
  for name in ('b.png', 'a.jpg', 'a.png', '.hidden.png', 'clip.MP4'):
    (tmp_path / name).write_bytes(b'x')
  (tmp_path / 'sub').mkdir()
  inputs = media_inputs.collect_inputs(str(tmp_path))
  assert [(i.name, i.is_video) for i in inputs] == [
      ('a_jpg', False), ('a_png', False), ('b', False), ('clip', True)]


def test_single_file_and_errors(tmp_path):
  (tmp_path / 'x.png').write_bytes(b'x')
  inputs = media_inputs.collect_inputs(str(tmp_path / 'x.png'))
  assert [(i.name, i.is_video) for i in inputs] == [('x', False)]
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(media_inputs.InputError, match='contains no files'):
    media_inputs.collect_inputs(str(empty))
  with pytest.raises(media_inputs.InputError, match='no such file or folder'):
    media_inputs.collect_inputs(str(tmp_path / 'nope'))


def test_video_frames_stride_and_limit(tmp_path):
  path = demo_models.write_video(tmp_path / 'v.mp4', 5)
  count, fps = media_inputs.video_properties(path)
  assert count == 5 and fps == pytest.approx(5.0)
  frames = list(media_inputs.read_video_frames(path, stride=2))
  assert [i for i, _ in frames] == [0, 2, 4]
  assert frames[0][1].shape == (24, 32, 3)
  # Lossy codec: flat gray 80 stays close to 80.
  assert abs(float(frames[1][1].mean()) - 80.0) < 6.0
  assert [i for i, _ in media_inputs.read_video_frames(path, max_frames=2)
          ] == [0, 1]
  assert media_inputs.frame_name('v', 12) == 'v_000012'


def test_not_a_video(tmp_path):
  fake = tmp_path / 'fake.mp4'
  fake.write_text('hello')
  with pytest.raises(media_inputs.InputError, match='fake.mp4'):
    list(media_inputs.read_video_frames(str(fake)))
