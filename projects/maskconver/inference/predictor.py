"""The `Predictor` interface: one image in, one panoptic prediction out.

Backends (`saved_model_predictor`, `tflite_predictor`,
`checkpoint_predictor`) all return a `PanopticPrediction` that knows how to
reach the original image resolution, so the demo, the visualization and the
COCO writer do not care where the model came from.
`predictor_factory.load_predictor` picks the backend.
"""

import abc
import dataclasses
from typing import Mapping, Optional, Tuple

import numpy as np

from maskconver import keys
from maskconver.evaluation import prediction_writer
from maskconver.inference import preprocessing

# The post-processing outputs every backend provides.
OUTPUT_KEYS = (keys.CATEGORY_MASK, keys.INSTANCE_MASK,
               keys.PANOPTIC_SEGMENT_MAP, keys.SEGMENT_CLASSES_OUT,
               keys.SEGMENT_SCORES_OUT, keys.SEGMENT_IS_THING_OUT)
_MAP_KEYS = (keys.CATEGORY_MASK, keys.INSTANCE_MASK, keys.PANOPTIC_SEGMENT_MAP)


@dataclasses.dataclass
class PanopticPrediction:
  """A panoptic segmentation of one image.

  The maps are at the image resolution, or, for fixed-size models, at the
  model input size with `image_info` saying how the image was resized and
  padded into it. `maps_at` and `at_image_size` resize them (nearest
  neighbour) only when asked, so that a 48-megapixel photo is not blown up
  three times just to be drawn at 1600 pixels.

  Attributes:
    category_mask: int32 [h, w] training class, VOID_CLASS on void.
    instance_mask: int32 [h, w], 1 .. n per thing segment, else 0.
    segment_map: int32 [h, w], segment index + 1, 0 on void.
    segment_classes: int32 [num_slots], class of segment index s, VOID_CLASS
      for unused slots.
    segment_scores: float32 [num_slots], score of each segment.
    segment_is_thing: bool [num_slots], True for thing segments.
    image_info: None when [h, w] is the image size; else float32 [4, 2]
      (keys.IMAGE_INFO: original [h, w], content [h, w], scale, offset) and
      [h, w] is the model input size.
  """
  category_mask: np.ndarray
  instance_mask: np.ndarray
  segment_map: np.ndarray
  segment_classes: np.ndarray
  segment_scores: np.ndarray
  segment_is_thing: np.ndarray
  image_info: Optional[np.ndarray] = None

  @property
  def num_segments(self) -> int:
    return int(np.count_nonzero(self.segment_classes != keys.VOID_CLASS))

  @property
  def image_size(self) -> Tuple[int, int]:
    """(height, width) of the image the prediction is for."""
    if self.image_info is None:
      return tuple(self.segment_map.shape)
    return tuple(int(v) for v in np.round(self.image_info[0]))

  @classmethod
  def from_outputs(cls, outputs: Mapping[str, np.ndarray],
                   image_info: Optional[np.ndarray] = None,
                   source: str = 'model') -> 'PanopticPrediction':
    """Builds a prediction from one image's post-processor outputs.

    Args:
      outputs: numpy values of OUTPUT_KEYS, with or without a batch
        dimension of 1.
      image_info: float [4, 2] image info when the maps are at the model
        input size (row 1 may be the content or the input size); None when
        they are at the image size.
      source: what produced the outputs, for errors.

    Returns:
      The prediction.

    Raises:
      ValueError: if an output is missing or has the wrong rank.
    """
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
      raise ValueError(f'{source}: outputs lack {missing}; got '
                       f'{sorted(outputs)}')
    values = {}
    for key in OUTPUT_KEYS:
      value = np.asarray(outputs[key])
      rank = 2 if key in _MAP_KEYS else 1
      if value.ndim == rank + 1:
        if value.shape[0] != 1:
          raise ValueError(f'{source}: output {key!r} has batch size '
                           f'{value.shape[0]}, expected 1')
        value = value[0]
      if value.ndim != rank:
        raise ValueError(f'{source}: output {key!r} has shape {value.shape}, '
                         f'expected rank {rank} (plus batch)')
      values[key] = value
    if image_info is not None:
      image_info = np.array(image_info, np.float32).reshape(4, 2)
      image_info[1] = preprocessing.scaled_size(image_info)
    return cls(
        category_mask=values[keys.CATEGORY_MASK].astype(np.int32),
        instance_mask=values[keys.INSTANCE_MASK].astype(np.int32),
        segment_map=values[keys.PANOPTIC_SEGMENT_MAP].astype(np.int32),
        segment_classes=values[keys.SEGMENT_CLASSES_OUT].astype(np.int32),
        segment_scores=values[keys.SEGMENT_SCORES_OUT].astype(np.float32),
        segment_is_thing=values[keys.SEGMENT_IS_THING_OUT].astype(bool),
        image_info=image_info)

  def maps_at(self, height: int,
              width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The maps resized to any size of the image, e.g. a display size.

    Args:
      height: rows of the output (the image's, or a resized image's).
      width: columns of the output.

    Returns:
      int32 [height, width] category mask, instance mask and segment map;
      each output pixel takes the value under its centre. Sizes larger than
      the image enlarge the image-size maps (so a 1x1 image stays one
      segment).
    """
    maps = (self.category_mask, self.instance_mask, self.segment_map)
    if self.image_info is not None:
      image_height, image_width = self.image_size
      if (height, width) != (image_height, image_width) and (
          height >= image_height and width >= image_width):
        return self.at_image_size().maps_at(height, width)
      return self._from_model_size(height, width)
    if self.segment_map.shape == (height, width):
      return maps
    return tuple(
        prediction_writer.resize_to_original(m, original_size=(height, width))
        .astype(np.int32) for m in maps)

  def _from_model_size(
      self, height: int,
      width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-size maps cropped to the content and resized to height x width."""
    content = np.asarray(self.image_info[1], np.float64)
    # The output is the image at height x width: same content region of the
    # maps, another scale.
    info = np.array([[height, width], content,
                     content / np.array([height, width], np.float64),
                     self.image_info[3]], np.float64)
    maps = (self.category_mask, self.instance_mask, self.segment_map)
    fills = (keys.VOID_CLASS, 0, 0)
    return tuple(
        prediction_writer.resize_to_original(m, image_info=info,
                                             fill_value=f).astype(np.int32)
        for m, f in zip(maps, fills))

  def at_image_size(self) -> 'PanopticPrediction':
    """The same prediction with every map at the image resolution."""
    if self.image_info is None:
      return self
    category, instance, segments = self._from_model_size(*self.image_size)
    return dataclasses.replace(self, category_mask=category,
                               instance_mask=instance, segment_map=segments,
                               image_info=None)

  def filter_by_score(self, threshold: float) -> 'PanopticPrediction':
    """Drops segments scoring below `threshold`; their pixels become void."""
    dropped = ((self.segment_classes != keys.VOID_CLASS) &
               (self.segment_scores < threshold))
    if not dropped.any():
      return self
    lookup = np.concatenate([[False], dropped])
    void = lookup[self.segment_map]
    return dataclasses.replace(
        self,
        category_mask=np.where(void, keys.VOID_CLASS,
                               self.category_mask).astype(np.int32),
        instance_mask=np.where(void, 0, self.instance_mask).astype(np.int32),
        segment_map=np.where(void, 0, self.segment_map).astype(np.int32),
        segment_classes=np.where(dropped, keys.VOID_CLASS,
                                 self.segment_classes).astype(np.int32),
        segment_scores=np.where(dropped, 0.0,
                                self.segment_scores).astype(np.float32),
        segment_is_thing=self.segment_is_thing & ~dropped)


class Predictor(abc.ABC):
  """Runs a MaskConver model on one uint8 RGB image."""

  @property
  @abc.abstractmethod
  def description(self) -> str:
    """What was loaded, e.g. 'SavedModel /path'."""

  @property
  def num_classes(self) -> Optional[int]:
    """Number of training classes, if the model tells."""
    return None

  @property
  def num_thing_classes(self) -> Optional[int]:
    """Number of thing classes, if the model tells."""
    return None

  @abc.abstractmethod
  def predict(self, image: np.ndarray) -> PanopticPrediction:
    """Segments one image.

    Args:
      image: uint8 [height, width, 3] RGB.

    Returns:
      The panoptic prediction of the [height, width] image.
    """
