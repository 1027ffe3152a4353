"""Helpers for the dataloader tests: hand-built decoder outputs."""

from typing import Optional, Sequence

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys


def _decoded(segment_map: np.ndarray, ids: Sequence[int],
             classes: Sequence[int], crowd: Sequence[bool],
             image: Optional[np.ndarray] = None, source_id: str = 'img'):
  """A dict shaped like `TfExampleDecoder.decode()`'s output."""
  height, width = segment_map.shape
  if image is None:
    image = np.zeros((height, width, 3), np.uint8)
  return {
      keys.IMAGE: tf.constant(image, tf.uint8),
      keys.HEIGHT: tf.constant(height, tf.int32),
      keys.WIDTH: tf.constant(width, tf.int32),
      keys.SOURCE_ID: tf.constant(source_id),
      keys.SEGMENT_MAP: tf.constant(segment_map, tf.int32),
      keys.SEGMENT_ID_LIST: tf.constant(list(ids), tf.int32),
      keys.SEGMENT_CLASS_LIST: tf.constant(list(classes), tf.int32),
      keys.SEGMENT_CROWD_LIST: tf.constant(list(crowd), tf.bool),
  }


@pytest.fixture
def make_decoded():
  return _decoded
