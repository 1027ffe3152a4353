"""Reads real-world image files as uint8 RGB arrays.

Handles what photo folders contain: JPEG with an EXIF orientation (applied,
so the array is upright as viewers show it), grayscale, gray + alpha, RGBA
(composited over white), palette PNGs (with or without transparency), CMYK,
16-bit and 32-bit integer PNG / TIFF (scaled to 8 bits) and float TIFF.
Anything else, or a file Pillow cannot decode, raises `ImageLoadError`
naming the file.

Size is checked from the file header, before any pixel is decoded: a small
file declaring a huge image (a decompression bomb) costs no memory. The
limit is Pillow's own (`2 * Image.MAX_IMAGE_PIXELS`, about 179 MP) or a
lower `max_pixels`.
"""

import os
from typing import Optional
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

# Background of transparent pixels.
ALPHA_BACKGROUND = (255, 255, 255)


class ImageLoadError(ValueError):
  """An input file is missing or is not a readable image."""


def _composite_alpha(image: Image.Image) -> Image.Image:
  """Blends an RGBA image over ALPHA_BACKGROUND; returns RGB."""
  background = Image.new('RGBA', image.size, ALPHA_BACKGROUND + (255,))
  return Image.alpha_composite(background, image).convert('RGB')


def _scale_to_uint8(values: np.ndarray, path: str) -> np.ndarray:
  """Maps a high-bit-depth single-channel array to uint8."""
  values = np.asarray(values)
  if values.dtype.kind == 'f':
    finite = values[np.isfinite(values)]
    if finite.size == 0:
      raise ImageLoadError(f'{path}: float image has no finite pixel')
    # Float images in [0, 1] are fractions; otherwise assume 0 .. 255.
    scale = 255.0 if finite.max() <= 1.0 and finite.min() >= 0.0 else 1.0
    return np.clip(np.nan_to_num(values) * scale, 0, 255).round().astype(
        np.uint8)
  # Integer modes ('I;16', 'I'): 16-bit data unless larger values occur.
  maximum = int(values.max(initial=0))
  bits = 16 if maximum <= 0xFFFF else 32
  return (np.clip(values.astype(np.float64), 0, None) /
          (2**bits - 1) * 255.0).round().astype(np.uint8)


def to_rgb_array(image: Image.Image, path: str = '<image>') -> np.ndarray:
  """Converts a decoded Pillow image (any mode) to uint8 [h, w, 3] RGB.

  Args:
    image: a loaded Pillow image; its EXIF orientation is not applied here.
    path: file name used in errors.

  Returns:
    uint8 [height, width, 3].
  """
  mode = image.mode
  if mode == 'P':
    image = image.convert('RGBA' if 'transparency' in image.info else 'RGB')
  elif mode in ('LA', 'La', 'PA', 'RGBa'):
    image = image.convert('RGBA')
  elif mode.startswith('I') or mode == 'F':
    gray = _scale_to_uint8(np.asarray(image), path)
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode == 'RGBA':
    image = _composite_alpha(image)
  elif image.mode != 'RGB':
    try:
      image = image.convert('RGB')
    except ValueError as e:
      raise ImageLoadError(f'{path}: cannot convert image mode {mode!r} to '
                           f'RGB ({e})') from e
  array = np.asarray(image)
  if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
    raise ImageLoadError(f'{path}: decoded to an unexpected array '
                         f'{array.shape} {array.dtype} (mode {mode!r})')
  return array


def load_image(path: str, max_pixels: Optional[int] = None) -> np.ndarray:
  """Reads an image file upright, as uint8 RGB.

  Args:
    path: an image file Pillow can decode (JPEG, PNG, BMP, GIF, TIFF, WebP).
    max_pixels: refuse images of more pixels (height * width, from the
      header); None keeps Pillow's limit.

  Returns:
    uint8 [height, width, 3], with the EXIF orientation applied.

  Raises:
    ImageLoadError: if the file is missing, not an image, truncated, too
      large or of an unsupported kind; the message names the file.
  """
  if not os.path.exists(path):
    raise ImageLoadError(f'{path}: no such file')
  if os.path.isdir(path):
    raise ImageLoadError(f'{path}: is a folder, not an image')
  try:
    with warnings.catch_warnings():
      # Large photos (> 89 MP) are legitimate; Pillow still refuses > 179 MP.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      with Image.open(path) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
          raise ImageLoadError(
              f'{path}: image of {width}x{height} pixels ({width * height} '
              f'pixels) is larger than the limit of {max_pixels}; nothing '
              'was decoded')
        image.load()
        upright = ImageOps.exif_transpose(image)
        array = to_rgb_array(upright, path)
  except Image.DecompressionBombError as e:
    raise ImageLoadError(f'{path}: image too large ({e})') from e
  except Image.UnidentifiedImageError as e:
    raise ImageLoadError(f'{path}: not an image file (Pillow cannot identify '
                         'its format)') from e
  except (OSError, SyntaxError) as e:
    raise ImageLoadError(f'{path}: unreadable or truncated image ({e})') from e
  if array.shape[0] == 0 or array.shape[1] == 0:
    raise ImageLoadError(f'{path}: image has no pixels ({array.shape[:2]})')
  return array
