"""Tests of reading real-world image files."""

import numpy as np
from PIL import Image
import pytest

from maskconver.inference import image_loading


def _save(path, array_or_image, **kwargs):
  image = (array_or_image if isinstance(array_or_image, Image.Image)
           else Image.fromarray(array_or_image))
  image.save(path, **kwargs)
  return str(path)


def test_rgb_png_is_read_as_is(tmp_path):
  rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
  loaded = image_loading.load_image(_save(tmp_path / 'a.png', rgb))
  np.testing.assert_array_equal(loaded, rgb)


def test_grayscale_is_replicated_to_rgb(tmp_path):
  gray = np.array([[0, 77], [200, 255]], np.uint8)
  loaded = image_loading.load_image(_save(tmp_path / 'g.png', gray))
  assert loaded.shape == (2, 2, 3) and loaded.dtype == np.uint8
  np.testing.assert_array_equal(loaded[..., 1], gray)
  np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


def test_rgba_is_composited_over_white(tmp_path):
  rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)
  loaded = image_loading.load_image(_save(tmp_path / 'a.png', rgba))
  np.testing.assert_array_equal(loaded, [[[10, 20, 30], [255, 255, 255]]])


def test_palette_png_with_and_without_transparency(tmp_path):
  image = Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8), mode='P')
  image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
  loaded = image_loading.load_image(_save(tmp_path / 'p.png', image))
  np.testing.assert_array_equal(loaded[0], [[255, 0, 0], [0, 255, 0]])
  np.testing.assert_array_equal(loaded[1, 1], [0, 0, 255])
  transparent = _save(tmp_path / 't.png', image, transparency=1)
  loaded = image_loading.load_image(transparent)
  np.testing.assert_array_equal(loaded[0], [[255, 0, 0], [255, 255, 255]])


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
  gray16 = np.array([[0, 257 * 50], [257 * 200, 65535]], np.uint16)
  loaded = image_loading.load_image(_save(tmp_path / 'g16.png', gray16))
  np.testing.assert_array_equal(loaded[..., 0], [[0, 50], [200, 255]])


def test_16_bit_rgb_png(tmp_path):
  # OpenCV writes 48-bit RGB PNGs (BGR order).
  cv2 = pytest.importorskip('cv2')
  rgb16 = np.zeros((2, 2, 3), np.uint16)
  rgb16[..., 0] = 257 * 100
  rgb16[..., 2] = 65535
  path = str(tmp_path / 'rgb16.png')
  assert cv2.imwrite(path, rgb16[..., ::-1])
  loaded = image_loading.load_image(path)
  np.testing.assert_array_equal(loaded[0, 0], [100, 0, 255])


def test_exif_orientation_is_applied(tmp_path):
  # Stored 10 rows x 20 columns, red on the left half. EXIF orientation 6
  # means "rotate 90 degrees clockwise to display": the left half becomes
  # the top half of a 20 x 10 image.
  stored = np.zeros((10, 20, 3), np.uint8)
  stored[:, :10] = (255, 0, 0)
  exif = Image.Exif()
  exif[0x0112] = 6
  path = _save(tmp_path / 'rotated.jpg', stored, exif=exif, quality=95)
  loaded = image_loading.load_image(path)
  assert loaded.shape == (20, 10, 3)
  assert loaded[3, 5, 0] > 200 and loaded[3, 5, 1] < 60
  assert loaded[16, 5, 0] < 60


def test_one_pixel_image(tmp_path):
  loaded = image_loading.load_image(
      _save(tmp_path / 'dot.png', np.array([[[1, 2, 3]]], np.uint8)))
  np.testing.assert_array_equal(loaded, [[[1, 2, 3]]])


def test_bad_files_name_the_file(tmp_path):
  text = tmp_path / 'notes.txt'
  text.write_text('not an image')
  with pytest.raises(image_loading.ImageLoadError,
                     match=r'notes\.txt: not an image file'):
    image_loading.load_image(str(text))
  with pytest.raises(image_loading.ImageLoadError,
                     match='missing.png: no such'):
    image_loading.load_image(str(tmp_path / 'missing.png'))
  with pytest.raises(image_loading.ImageLoadError, match='is a folder'):
    image_loading.load_image(str(tmp_path))
  good = _save(tmp_path / 'cut.jpg', np.full((64, 64, 3), 9, np.uint8))
  data = open(good, 'rb').read()
  truncated = tmp_path / 'truncated.jpg'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(image_loading.ImageLoadError, match='truncated.jpg'):
    image_loading.load_image(str(truncated))
