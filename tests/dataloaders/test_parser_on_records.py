"""The parser on real records: converter -> decoder -> parser."""

import numpy as np
import tensorflow as tf

from maskconver import keys
from maskconver.data import label_map as label_map_lib
from maskconver.dataloaders import parser as parser_lib
from maskconver.dataloaders import tf_example_decoder


def test_records_decode_and_parse(training_records):
  labels_map = label_map_lib.LabelMap.load(training_records.label_map_path)
  num_things = labels_map.num_thing_classes
  parser = parser_lib.Parser(
      output_size=[64, 64], min_level=3, max_level=3,
      num_classes=labels_map.num_classes, num_thing_classes=num_things,
      max_instances=32, aug_rand_hflip=False,
      eval_groundtruth_padded_size=[64, 64])
  decoder = tf_example_decoder.TfExampleDecoder()
  dataset = tf.data.Dataset.list_files(training_records.val_pattern,
                                       shuffle=False)
  dataset = tf.data.TFRecordDataset(dataset).map(decoder.decode)
  for decoded in dataset:
    _, labels = parser.parse_fn(is_training=False)(decoded)
    gt = labels[keys.GROUNDTRUTHS]
    segment_map = decoded[keys.SEGMENT_MAP].numpy()
    np.testing.assert_array_equal(gt[keys.GT_SEGMENT_MAP].numpy(),
                                  segment_map)
    # 64x64 images at output 64x64: no resizing, so every non-crowd thing
    # and every stuff class with pixels is one target.
    classes = decoded[keys.SEGMENT_CLASS_LIST].numpy()
    crowd = decoded[keys.SEGMENT_CROWD_LIST].numpy()
    ids = decoded[keys.SEGMENT_ID_LIST].numpy()
    has_pixels = np.isin(ids, segment_map)
    things = np.sum((classes < num_things) & ~crowd & has_pixels)
    stuff = len(set(classes[(classes >= num_things) & ~crowd & has_pixels]))
    assert labels[keys.NUM_INSTANCES].numpy() == things + stuff
    # The slot map holds K + 1 (ignored) exactly on sampled void and crowd.
    sampled = segment_map[2::4, 2::4]
    ignored = np.isin(sampled, np.concatenate([[0], ids[crowd]]))
    np.testing.assert_array_equal(labels[keys.SLOT_MAP].numpy() == 32 + 1,
                                  ignored)
