"""Decodes the panoptic tf.Examples written by the converter.

Pure TF, so it runs inside `tf.data`. The record format is the
`tf.Example features` section of `maskconver.keys`; the output is its
`Decoder output` section.
"""

from typing import Dict

import tensorflow as tf

from official.vision.dataloaders import decoder

from maskconver import keys


def decode_panoptic_png(png_bytes: tf.Tensor) -> tf.Tensor:
  """Decodes a COCO panoptic PNG to segment ids.

  Args:
    png_bytes: string [], an 8-bit RGB (or RGBA) PNG.

  Returns:
    int32 [height, width], `R + 256 * G + 256**2 * B` per pixel (0 = void).
  """
  rgb = tf.cast(tf.io.decode_png(png_bytes, channels=3, dtype=tf.uint8),
                tf.int32)
  rgb.set_shape([None, None, 3])
  base = keys.LABEL_BASE
  return rgb[..., 0] + base * rgb[..., 1] + base * base * rgb[..., 2]


# The features of a panoptic tf.Example, with their types (also what
# maskconver.dataloaders.check_records verifies in every record).
FEATURE_SPEC = {
    keys.IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string),
    keys.IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64),
    keys.IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64),
    keys.IMAGE_SOURCE_ID: tf.io.FixedLenFeature((), tf.string, ''),
    keys.PANOPTIC_ENCODED: tf.io.FixedLenFeature((), tf.string),
    keys.SEGMENT_IDS: tf.io.VarLenFeature(tf.int64),
    keys.SEGMENT_CLASSES: tf.io.VarLenFeature(tf.int64),
    keys.SEGMENT_IS_CROWD: tf.io.VarLenFeature(tf.int64),
}


class TfExampleDecoder(decoder.Decoder):
  """Decodes one serialized panoptic tf.Example into tensors."""

  def __init__(self):
    self._keys_to_features = dict(FEATURE_SPEC)

  def decode(self, serialized_example: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Decodes a serialized tf.Example.

    Args:
      serialized_example: string [], one record.

    Returns:
      A dict keyed by `maskconver.keys`:
        IMAGE: uint8 [height, width, 3] (JPEG or PNG; grayscale becomes RGB,
          alpha is dropped).
        HEIGHT, WIDTH: int32 [].
        SOURCE_ID: string [].
        SEGMENT_MAP: int32 [height, width], COCO segment ids, 0 = void.
        SEGMENT_ID_LIST: int32 [num_segments].
        SEGMENT_CLASS_LIST: int32 [num_segments], training class ids.
        SEGMENT_CROWD_LIST: bool [num_segments].
    """
    parsed = tf.io.parse_single_example(serialized_example,
                                        self._keys_to_features)
    image = tf.io.decode_image(parsed[keys.IMAGE_ENCODED], channels=3,
                               dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    segment_map = decode_panoptic_png(parsed[keys.PANOPTIC_ENCODED])
    height = tf.cast(parsed[keys.IMAGE_HEIGHT], tf.int32)
    width = tf.cast(parsed[keys.IMAGE_WIDTH], tf.int32)
    source_id = parsed[keys.IMAGE_SOURCE_ID]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(image)[:2], tf.stack([height, width]),
            message='image size differs from image/height, image/width'),
        tf.debugging.assert_equal(
            tf.shape(segment_map), tf.shape(image)[:2],
            message='panoptic PNG size differs from image size'),
    ]

    def dense(key):
      return tf.cast(tf.sparse.to_dense(parsed[key]), tf.int32)

    segment_ids = dense(keys.SEGMENT_IDS)
    segment_classes = dense(keys.SEGMENT_CLASSES)
    segment_is_crowd = tf.not_equal(dense(keys.SEGMENT_IS_CROWD), 0)
    checks.append(tf.debugging.assert_equal(
        tf.stack([tf.size(segment_classes), tf.size(segment_is_crowd)]),
        tf.fill([2], tf.size(segment_ids)),
        message='per-segment lists differ in length'))
    with tf.control_dependencies(checks):
      image = tf.identity(image)
      segment_map = tf.identity(segment_map)
    return {
        keys.IMAGE: image,
        keys.HEIGHT: height,
        keys.WIDTH: width,
        keys.SOURCE_ID: source_id,
        keys.SEGMENT_MAP: segment_map,
        keys.SEGMENT_ID_LIST: segment_ids,
        keys.SEGMENT_CLASS_LIST: segment_classes,
        keys.SEGMENT_CROWD_LIST: segment_is_crowd,
    }
