"""Session fixtures: a tiny synthetic COCO panoptic dataset and its records.

Fixtures (session-scoped: built once per test run, treat them as read-only):

* `synthetic_dataset` -> `SyntheticDataset`: 6 train + 3 val images of
  64x64 written by `maskconver.data.synthetic.generate(seed=0)`. Attributes:
  `root`; `train` and `val`, each a dict with `image_dir`, `panoptic_json`,
  `panoptic_masks_dir` (the converter's inputs).
* `converted_dataset` -> `ConvertedDataset`: that dataset converted by
  `maskconver.data.convert_coco_panoptic.convert`. Attributes: `train_pattern`
  (glob of 2 shards), `val_pattern` (1 shard), `train_shards`, `val_shards`
  (lists of paths), `label_map_path` (train's label map JSON; val's is the
  same), `dataset` (the `SyntheticDataset`).

Helpers for tests that need a dataset of their own, as fixtures returning a
function:

* `panoptic_writer` -> `write_coco_panoptic(root, samples, categories)`:
  writes images, PNGs and a JSON from in-memory arrays and returns the
  converter's inputs.
* `split_copier` -> `copy_split(split_paths, dest)`: copies one split to
  `dest`, e.g. to damage it.
* `grid_categories`: three categories with non-contiguous ids.

These fixtures live in this directory's conftest, so they serve tests under
tests/data/. Tests elsewhere build the same thing in two calls:
`synthetic.generate(...)` then `convert_coco_panoptic.convert(...)`.
"""

import dataclasses
import io
import os
import shutil
from typing import Any, Dict, List, Mapping, Sequence

from PIL import Image
import pytest

from maskconver.data import coco_panoptic_io
from maskconver.data import convert_coco_panoptic
from maskconver.data import synthetic

NUM_TRAIN = 6
NUM_VAL = 3
IMAGE_SIZE = 64
SEED = 0


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
  root: str
  train: Dict[str, str]
  val: Dict[str, str]


@dataclasses.dataclass(frozen=True)
class ConvertedDataset:
  dataset: SyntheticDataset
  train_pattern: str
  val_pattern: str
  train_shards: List[str]
  val_shards: List[str]
  label_map_path: str


@pytest.fixture(scope='session')
def synthetic_dataset(tmp_path_factory) -> SyntheticDataset:
  root = str(tmp_path_factory.mktemp('synthetic'))
  paths = synthetic.generate(root, NUM_TRAIN, NUM_VAL, IMAGE_SIZE, SEED)
  return SyntheticDataset(root=root, train=paths['train'], val=paths['val'])


@pytest.fixture(scope='session')
def converted_dataset(synthetic_dataset, tmp_path_factory) -> ConvertedDataset:
  out = str(tmp_path_factory.mktemp('records'))
  train = convert_coco_panoptic.convert(
      **synthetic_dataset.train, output_prefix=os.path.join(out, 'train'),
      num_shards=2, num_workers=0, progress=False)
  val = convert_coco_panoptic.convert(
      **synthetic_dataset.val, output_prefix=os.path.join(out, 'val'),
      num_shards=1, num_workers=0, progress=False)
  return ConvertedDataset(
      dataset=synthetic_dataset,
      train_pattern=os.path.join(out, 'train-*-of-00002.tfrecord'),
      val_pattern=os.path.join(out, 'val-*-of-00001.tfrecord'),
      train_shards=train.shard_paths, val_shards=val.shard_paths,
      label_map_path=train.label_map_path)


def write_coco_panoptic(root: str, samples: Sequence[Mapping[str, Any]],
                        categories: Sequence[Mapping[str, Any]]
                        ) -> Dict[str, str]:
  """Writes a COCO panoptic dataset from arrays.

  Args:
    root: output directory.
    samples: dicts with `image` (uint8 [h, w, 3] or [h, w]), `segment_map`
      (int [h, w], 0 = void), `segments_info` (COCO list), optional
      `image_format` ('PNG' or 'JPEG', default 'PNG') and `image_id`.
    categories: COCO categories.

  Returns:
    The converter's inputs: image_dir, panoptic_json, panoptic_masks_dir.
  """
  image_dir = os.path.join(root, 'images')
  masks_dir = os.path.join(root, 'panoptic')
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(masks_dir, exist_ok=True)
  images, annotations = [], []
  for index, sample in enumerate(samples):
    image_id = sample.get('image_id', index + 1)
    image_format = sample.get('image_format', 'PNG')
    extension = 'png' if image_format == 'PNG' else 'jpg'
    file_name = f'{image_id}.{extension}'
    buffer = io.BytesIO()
    Image.fromarray(sample['image']).save(buffer, format=image_format)
    with open(os.path.join(image_dir, file_name), 'wb') as f:
      f.write(buffer.getvalue())
    coco_panoptic_io.write_segment_map(
        os.path.join(masks_dir, f'{image_id}.png'), sample['segment_map'])
    height, width = sample['segment_map'].shape
    images.append({'id': image_id, 'file_name': file_name, 'height': height,
                   'width': width})
    annotations.append({'image_id': image_id, 'file_name': f'{image_id}.png',
                        'segments_info': list(sample['segments_info'])})
  panoptic_json = os.path.join(root, 'panoptic.json')
  coco_panoptic_io.write_json(panoptic_json, {
      'images': images, 'annotations': annotations,
      'categories': list(categories)})
  return {'image_dir': image_dir, 'panoptic_json': panoptic_json,
          'panoptic_masks_dir': masks_dir}


def copy_split(split_paths: Mapping[str, str], dest: str) -> Dict[str, str]:
  """Copies one split (images, PNGs, JSON) into `dest`; returns new paths."""
  new_paths = {
      'image_dir': os.path.join(dest, 'images'),
      'panoptic_masks_dir': os.path.join(dest, 'panoptic'),
      'panoptic_json': os.path.join(dest, 'panoptic.json'),
  }
  shutil.copytree(split_paths['image_dir'], new_paths['image_dir'])
  shutil.copytree(split_paths['panoptic_masks_dir'],
                  new_paths['panoptic_masks_dir'])
  shutil.copyfile(split_paths['panoptic_json'], new_paths['panoptic_json'])
  return new_paths


@pytest.fixture
def grid_categories() -> List[Dict[str, Any]]:
  """Two things (ids 7, 3) and one stuff (id 40), listed out of order."""
  return [
      {'id': 40, 'name': 'floor', 'isthing': 0, 'color': [1, 2, 3]},
      {'id': 7, 'name': 'box', 'isthing': 1, 'color': [4, 5, 6]},
      {'id': 3, 'name': 'ball', 'isthing': 1, 'color': [7, 8, 9]},
  ]


@pytest.fixture(scope='session')
def panoptic_writer():
  return write_coco_panoptic


@pytest.fixture(scope='session')
def split_copier():
  return copy_split
