"""MaskConver's description packed into a .tflite file, and read back.

A deployer gets one file: the model plus, in the flatbuffer's `metadata`
list, an entry named METADATA_NAME whose buffer is UTF-8 JSON:

    {"format": "maskconver-tflite/1",
     "input": {"name", "dtype", "shape", "color": "RGB",
               "resize": ..., "normalization": {"inside_model", "mean",
               "std", "scale"}},
     "outputs": {name: {"dtype", "shape", "meaning"}},
     "labels": [{"id": training id, "name", "isthing", "category_id"}],
     "num_classes", "num_thing_classes", "void_class"}

Any flatbuffer reader gets it (`Model.metadata(i).name()` /
`.buffer()` in the TFLite schema); in Python `read_metadata` does.

Why not the TFLite Support metadata (`TFLITE_METADATA`, ModelMetadata
tables): its maintained writer is MediaPipe's (`mediapipe.tasks.python.
metadata.metadata_writers`); mediapipe 1.2.2 pip-installs but requires
absl-py~=2.3 and opencv-contrib-python, which conflict with this project's
environment (absl-py 1.4.0 from the TensorFlow / Model Garden stack,
opencv-python-headless); `tflite-support` has had no release since 0.4.4
(2023) and pins protobuf<4. Its writers also only describe classifier,
detector and semantic-segmenter outputs, none of which is a panoptic
result, so the Task Library could not read ours anyway. The entry is
written with LiteRT's own flatbuffer schema (ai-edge-litert, already a
dependency of the TFLite runtime path), so nothing new is installed.
"""

import json
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from official.vision.ops import preprocess_ops

from maskconver import keys

METADATA_NAME = 'maskconver_metadata'
FORMAT = 'maskconver-tflite/1'


def _schema():
  # ai-edge-litert (setup.py). pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated
  from ai_edge_litert.tools import flatbuffer_utils
  return schema_py_generated, flatbuffer_utils


def describe(input_details: Mapping[str, Any],
             output_details: Mapping[str, Mapping[str, Any]],
             num_classes: int, num_thing_classes: int,
             labels: Optional[Sequence[Mapping[str, Any]]] = None
             ) -> Dict[str, Any]:
  """The metadata of a MaskConver TFLite model (module doc).

  Args:
    input_details: {'name', 'dtype' (numpy dtype), 'shape', optional
      'quantization' (scale, zero point)} of the input.
    output_details: {output name: {'dtype', 'shape'}}.
    num_classes: training classes.
    num_thing_classes: how many of them are things (ids 0 .. n - 1).
    labels: one {'id', 'name', 'isthing', 'category_id'} per training
      class, e.g. from the converter's label map; None names them class_<id>.

  Returns:
    The JSON-serializable metadata.
  """
  height, width = (int(v) for v in input_details['shape'][1:3])
  dtype = np.dtype(input_details['dtype']).name
  uint8 = dtype == 'uint8'
  quantization = input_details.get('quantization') or (0.0, 0)
  normalization = {
      'inside_model': uint8 and not quantization[0],
      'mean': [round(v, 4) for v in preprocess_ops.MEAN_RGB],
      'std': [round(v, 4) for v in preprocess_ops.STDDEV_RGB],
      'formula': '(pixel - mean) / std, pixel in [0, 255]',
  }
  if quantization[0]:
    normalization['quantization'] = {
        'scale': float(quantization[0]), 'zero_point': int(quantization[1]),
        'formula': 'round(normalized / scale + zero_point)'}
  meanings = {
      keys.CATEGORY_MASK: 'training class id per pixel, void_class on void',
      keys.INSTANCE_MASK: '1 .. n per thing segment, 0 on stuff and void',
      keys.PANOPTIC_SEGMENT_MAP: 'segment index s + 1 per pixel, 0 on void',
      keys.SEGMENT_CLASSES_OUT: 'class of segment index s, void_class if '
                                'slot s is no segment',
      keys.SEGMENT_SCORES_OUT: 'score of segment index s, 0 if unused',
      keys.SEGMENT_IS_THING_OUT: 'true for thing segments',
      keys.IMAGE_INFO: '[[h, w], [h, w], [1, 1], [0, 0]] of the input',
  }
  if labels is None:
    labels = [{'id': i, 'name': f'class_{i}',
               'isthing': i < num_thing_classes, 'category_id': i}
              for i in range(num_classes)]
  return {
      'format': FORMAT,
      'input': {
          'name': input_details['name'],
          'dtype': dtype,
          'shape': [int(v) for v in input_details['shape']],
          'color': 'RGB',
          'resize': (f'scale the image by min({height} / image height, '
                     f'{width} / image width) (aspect ratio kept, '
                     f'bilinear) and pad it bottom / right to '
                     f'{height}x{width} with the mean color (124, 116, '
                     f'104), which normalizes to 0 as in training'),
          'normalization': normalization,
      },
      'outputs': {
          name: {'dtype': np.dtype(details['dtype']).name,
                 'shape': [int(v) for v in details['shape']],
                 'meaning': meanings.get(name, '')}
          for name, details in output_details.items()},
      'labels': [dict(label) for label in labels],
      'num_classes': num_classes,
      'num_thing_classes': num_thing_classes,
      'void_class': keys.VOID_CLASS,
  }


def add_metadata(tflite_model: bytes, metadata: Mapping[str, Any]) -> bytes:
  """The model with `metadata` as its METADATA_NAME entry (replaced if any).

  Args:
    tflite_model: the TFLite flatbuffer.
    metadata: JSON-serializable metadata.

  Returns:
    The new flatbuffer; its graph, weights and signatures are unchanged.
  """
  schema, utils = _schema()
  model = utils.read_model_from_bytearray(bytearray(tflite_model))
  buffer = schema.BufferT()
  buffer.data = list(json.dumps(metadata, sort_keys=True).encode('utf-8'))
  entries = [m for m in (model.metadata or [])
             if _name(m.name) != METADATA_NAME]
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name = METADATA_NAME
  entry.buffer = len(model.buffers) - 1
  model.metadata = entries + [entry]
  return bytes(utils.convert_object_to_bytearray(model))


def read_metadata(tflite_model: bytes) -> Optional[Dict[str, Any]]:
  """The METADATA_NAME entry of a TFLite model, or None if it has none."""
  schema, _ = _schema()
  model = schema.Model.GetRootAsModel(bytearray(tflite_model), 0)
  for i in range(model.MetadataLength()):
    entry = model.Metadata(i)
    if _name(entry.Name()) == METADATA_NAME:
      data = model.Buffers(entry.Buffer()).DataAsNumpy()
      return json.loads(bytes(data).decode('utf-8'))
  return None


def _name(name: Any) -> str:
  return name.decode('utf-8') if isinstance(name, bytes) else str(name)
