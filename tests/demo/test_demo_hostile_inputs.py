"""The demo on hostile files: each named in the summary, the rest processed.

Bad files are crafted byte by byte: a PNG whose header declares 100000 x
100000 pixels (a 74-byte decompression bomb), a PNG cut in half, text saved
as .jpg, random bytes saved as .mp4 and a real mp4 whose frame data is
zeroed (it opens, but no frame decodes).
"""

import json
import os
import struct
import subprocess
import sys
import zlib

from absl import flags
from absl.testing import flagsaver
import numpy as np
from PIL import Image
import pytest

from maskconver import demo
from maskconver.inference import image_loading

import demo_models

FLAGS = flags.FLAGS


def _run_cli(*args):
  with flagsaver.flagsaver():
    return demo.main(FLAGS(['maskconver-demo', '--progress=false', *args]))


def _png_chunk(kind, data):
  crc = zlib.crc32(kind + data) & 0xFFFFFFFF
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)


def write_bomb(path, width=100000, height=100000):
  """A valid PNG header declaring width x height RGB pixels, tiny data."""
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  data = (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', header) +
          _png_chunk(b'IDAT', zlib.compress(b'\0' * 1000)) +
          _png_chunk(b'IEND', b''))
  path.write_bytes(data)
  return str(path)


def _write_undecodable_video(path):
  """An mp4 that OpenCV opens (3 frames declared) but cannot decode."""
  demo_models.write_video(path, 3)
  data = bytearray(path.read_bytes())
  start, end = data.find(b'mdat') + 4, data.find(b'moov')
  assert 4 < start < end, 'expected mdat before moov'
  data[start:end] = bytes(end - start)
  path.write_bytes(bytes(data))


def _make_hostile_folder(folder):
  folder.mkdir()
  Image.fromarray(demo_models.calibration_image(24, 40)).save(
      folder / 'good.png')
  write_bomb(folder / 'bomb.png')
  png = folder / 'cut.png'
  Image.fromarray(np.random.default_rng(0).integers(
      0, 255, (64, 64, 3), dtype=np.uint8)).save(png)
  png.write_bytes(png.read_bytes()[:png.stat().st_size // 2])
  (folder / 'photo.jpg').write_text('not a photo\n')
  (folder / 'noise.mp4').write_bytes(np.random.default_rng(1).bytes(2000))
  _write_undecodable_video(folder / 'empty.mp4')
  return {
      'bomb.png': 'image too large',
      'cut.png': 'unreadable or truncated image',
      'photo.jpg': 'not an image file',
      'noise.mp4': 'OpenCV cannot open this video',
      'empty.mp4': 'no frame could be decoded',
  }


def test_each_bad_file_is_named_and_the_good_one_processed(
    tmp_path, tiny_models, capsys):
  folder = tmp_path / 'in'
  expected = _make_hostile_folder(folder)
  out = tmp_path / 'out'
  code = _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={out}')
  assert code == demo.EXIT_SOME_FAILED
  report = capsys.readouterr().err
  assert (f'Processed 1 image(s) / frame(s); {len(expected)} failure(s).'
          in report)
  failed = [line.strip() for line in report.splitlines()
            if line.startswith('  FAILED ')]
  assert len(failed) == len(expected)
  for name, reason in expected.items():
    assert any(line.startswith(f'FAILED {folder / name}: ') and reason in line
               for line in failed), (name, failed)
  annotations = json.loads((out / 'panoptic.json').read_text())['annotations']
  assert [a['file_name'] for a in annotations] == ['good.png']
  assert sorted(os.listdir(out)) == ['good_overlay.png', 'panoptic',
                                     'panoptic.json']


def test_bomb_is_refused_from_its_header_without_decoding(tmp_path):
  # A fresh interpreter with only the image loader: its peak memory shows
  # whether the 10^10-pixel image (30 GB of RGB) was ever allocated.
  bomb = write_bomb(tmp_path / 'bomb.png')
  code = (
      'import resource, sys\n'
      'from maskconver.inference import image_loading\n'
      'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
      'try:\n'
      f'  image_loading.load_image({bomb!r})\n'
      'except image_loading.ImageLoadError as e:\n'
      '  print(e)\n'
      'after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
      'print((after - before) // 1024)\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120, check=True)
  message, grown_mb = result.stdout.splitlines()
  assert message.startswith(f'{bomb}: image too large')
  # Decoding even one row would take 300 kB; the whole image 30 GB.
  assert int(grown_mb) < 50


def test_max_image_pixels_refuses_before_decoding(tmp_path, tiny_models,
                                                  capsys):
  folder = tmp_path / 'in'
  folder.mkdir()
  Image.fromarray(demo_models.calibration_image(20, 30)).save(
      folder / 'small.png')
  # 1000 x 1000 zeros: a 4 kB file of 1 MP.
  Image.fromarray(np.zeros((1000, 1000, 3), np.uint8)).save(
      folder / 'large.png')
  with pytest.raises(image_loading.ImageLoadError,
                     match='1000x1000 pixels .* larger than the limit of '
                     '999999; nothing was decoded'):
    image_loading.load_image(str(folder / 'large.png'), max_pixels=999999)
  code = _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={tmp_path / "out"}',
                  '--max_image_pixels=999999')
  assert code == demo.EXIT_SOME_FAILED
  report = capsys.readouterr().err
  assert f'FAILED {folder / "large.png"}: ImageLoadError' in report
  assert (tmp_path / 'out' / 'small_overlay.png').exists()
  assert _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={tmp_path / "out"}',
                  '--max_image_pixels=0') == demo.EXIT_USAGE


def _files_under(folder):
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, _, names in os.walk(folder) for name in names)


def test_outputs_stay_in_the_output_folder_whatever_the_name(tmp_path,
                                                             tiny_models):
  # On Linux a backslash is an ordinary file-name character: this is one
  # file in `in`, which a careless writer would turn into ../../ paths.
  folder = tmp_path / 'a' / 'in'
  folder.mkdir(parents=True)
  image = demo_models.calibration_image(20, 30)
  for name in ('x\\..\\..\\escape.png', 'two words.png'):
    Image.fromarray(image).save(folder / name)
  out = tmp_path / 'a' / 'out'
  assert _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={out}') == demo.EXIT_OK
  written = [f for f in _files_under(tmp_path) if not f.startswith(
      os.path.join('a', 'in'))]
  assert written == sorted(os.path.join('a', 'out', f) for f in (
      'x\\..\\..\\escape_overlay.png', 'panoptic.json',
      'panoptic/x/__/__/escape.png', 'two_words_overlay.png',
      'panoptic/two_words.png'))


def test_recursive_folder_keeps_sub_folders_inside_the_output(tmp_path,
                                                              tiny_models):
  folder = tmp_path / 'in'
  image = demo_models.calibration_image(20, 30)
  for name in ('top.png', 'city/a/0001.png', 'city/b/0001.png',
               'city/b/0001.jpg', '.cache/skip.png'):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / name)
  out = tmp_path / 'out'
  assert _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={out}', '--recursive') == demo.EXIT_OK
  names = ['city/a/0001', 'city/b/0001_jpg', 'city/b/0001_png', 'top']
  assert [f for f in _files_under(out) if f.endswith('_overlay.png')] == [
      f'{n}_overlay.png' for n in names]
  annotations = json.loads((out / 'panoptic.json').read_text())['annotations']
  assert sorted(a['file_name'] for a in annotations) == [
      f'{n}.png' for n in names]
  for name in names:
    assert (out / 'panoptic' / f'{name}.png').is_file()
  # Without --recursive only the top folder's file is an input.
  assert _run_cli(f'--model={tiny_models.tflite_path}', f'--input={folder}',
                  f'--output_dir={tmp_path / "flat"}') == demo.EXIT_OK
  assert _files_under(tmp_path / 'flat') == [
      'panoptic.json', 'panoptic/top.png', 'top_overlay.png']
