"""Session fixture shared by the task and training tests: tiny TFRecords.

* `training_records` -> `TrainingRecords`: 8 train + 4 val synthetic images
  of 64x64 (`maskconver.data.synthetic.generate(seed=0)`), converted by
  `maskconver.data.convert_coco_panoptic.convert` into ONE train shard and
  ONE val shard. One shard keeps the record order fixed, so a run without
  shuffling sees the same examples in the same order on any number of
  replicas or workers. Attributes: `train_pattern`, `val_pattern` (globs),
  `label_map_path`, `root` (the COCO panoptic dataset), `num_train`,
  `num_val`. Built once per session; treat it as read-only.
"""

import dataclasses
import os

import pytest

from maskconver.data import convert_coco_panoptic
from maskconver.data import synthetic

TRAIN_IMAGES = 8
VAL_IMAGES = 4
IMAGE_SIZE = 64
SEED = 0


@dataclasses.dataclass(frozen=True)
class TrainingRecords:
  root: str
  train_pattern: str
  val_pattern: str
  label_map_path: str
  num_train: int
  num_val: int


@pytest.fixture(scope='session')
def training_records(tmp_path_factory) -> TrainingRecords:
  root = str(tmp_path_factory.mktemp('training_dataset'))
  paths = synthetic.generate(os.path.join(root, 'coco'), TRAIN_IMAGES,
                             VAL_IMAGES, IMAGE_SIZE, SEED)
  records = os.path.join(root, 'records')
  train = convert_coco_panoptic.convert(
      **paths['train'], output_prefix=os.path.join(records, 'train'),
      num_shards=1, num_workers=0, progress=False)
  convert_coco_panoptic.convert(
      **paths['val'], output_prefix=os.path.join(records, 'val'),
      num_shards=1, num_workers=0, progress=False)
  return TrainingRecords(
      root=os.path.join(root, 'coco'),
      train_pattern=os.path.join(records, 'train-*-of-00001.tfrecord'),
      val_pattern=os.path.join(records, 'val-*-of-00001.tfrecord'),
      label_map_path=train.label_map_path,
      num_train=TRAIN_IMAGES, num_val=VAL_IMAGES)
