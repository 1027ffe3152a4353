"""MaskConver parser: augmentation, training targets and eval ground truth.

Training: optional panoptic copy-paste (`copy_paste.py`), random horizontal
flip, random scale jitter with random crop and pad to `output_size` (Model
Garden's `resize_and_crop_image`; the segment map follows with
nearest-neighbour sampling, its padding is `keys.PADDING_SEGMENT_ID`,
background), then the compact target description of
`targets.describe_targets`. Images leave as uint8 (padding: the mean pixel);
the steps normalize them and build dense targets on the device
(`maskconver.ops`).

The segment map is never resampled to the output size: the targets are read
from it at its source resolution through the scale jitter's index window
(`resampling.Window`), with identical results. With `source_padded_size` the
image is not resized either: it leaves as its padded source with
`labels[keys.RESIZE_INFO]`, and the steps resize it on the device
(`maskconver.ops.image_ops.resize_window`, the same pixels).

Evaluation: resize keeping the aspect ratio to fit `output_size` and pad, the
same targets (for validation losses), plus `labels[keys.GROUNDTRUTHS]` with
the original-resolution segment map padded to `eval_groundtruth_padded_size`,
the segment lists padded to `max_segments`, the source id as bytes
(`keys.GT_SOURCE_ID`: no strings reach the device) and IMAGE_INFO whose row 1
is the content size `round(original * scale)` inside the padded image.

Centers, cells and masks follow the conventions of `targets.py`: pixel
`(i, j)` covers `[i, i + 1) x [j, j + 1)` of the output image.

Labels on the wire (`targets.label_bytes`): 0.23 MB per example at
1280x1280 with K = 256 (R50 recipe), 0.03 MB at 640x640 with K = 50 (mobile),
against 45 MB and 6.1 MB of dense float32 heatmaps and uint8 masks.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from official.vision.dataloaders import parser
from official.vision.ops import preprocess_ops

from maskconver import keys
from maskconver.dataloaders import copy_paste
from maskconver.dataloaders import resampling
from maskconver.dataloaders import targets
from maskconver.ops import image_ops


def source_id_bytes(source_id: tf.Tensor) -> tf.Tensor:
  """A source id string as uint8 [keys.SOURCE_ID_LENGTH], zero-padded.

  Raises (when run) InvalidArgumentError naming the id if it is longer.
  """
  raw = tf.io.decode_raw(source_id, tf.uint8)
  length = tf.shape(raw)[0]
  check = tf.debugging.Assert(
      length <= keys.SOURCE_ID_LENGTH,
      ['source_id', source_id, 'is longer than', keys.SOURCE_ID_LENGTH,
       'bytes (keys.SOURCE_ID_LENGTH)'])
  with tf.control_dependencies([check]):
    padded = tf.pad(raw, [[0, keys.SOURCE_ID_LENGTH - length]])
  return tf.ensure_shape(padded, [keys.SOURCE_ID_LENGTH])


def source_id_string(source_id) -> str:
  """The inverse of `source_id_bytes` on the host: uint8 array -> str."""
  return bytes(bytearray(source_id)).rstrip(b'\x00').decode(
      'utf-8', errors='replace')


class Parser(parser.Parser):
  """Parses decoded panoptic examples into MaskConver inputs and labels."""

  def __init__(self,
               output_size: Sequence[int],
               min_level: int,
               max_level: int,
               num_classes: int,
               num_thing_classes: int,
               max_instances: int = 100,
               mask_stride: int = 4,
               aug_rand_hflip: bool = True,
               aug_scale_min: float = 1.0,
               aug_scale_max: float = 1.0,
               center_type: str = 'mask',
               gaussian_min_overlap: float = 0.7,
               gaussian_min_radius: int = 0,
               level_size_measure: str = 'sqrt_area',
               level_base_size: float = 64.0,
               level_reference_size: float = 1024.0,
               copy_paste_prob: float = 0.0,
               copy_paste_scale_min: float = 0.1,
               copy_paste_scale_max: float = 2.0,
               copy_paste_segment_prob: float = 0.5,
               copy_paste_stuff: bool = False,
               max_segments: int = 256,
               eval_groundtruth_padded_size: Optional[Sequence[int]] = None,
               source_padded_size: Optional[Sequence[int]] = None):
    """Initializes the parser.

    Args:
      output_size: [height, width] of the network input; multiples of
        `2**max_level` and of `mask_stride`.
      min_level: finest head level (3 in both paper recipes).
      max_level: coarsest head level (7 for ResNet, 3 for mobile).
      num_classes: number of training classes.
      num_thing_classes: classes `0 .. num_thing_classes - 1` are things.
      max_instances: number of target slots K.
      mask_stride: stride of the mask targets (the mask features' stride).
      aug_rand_hflip: whether to flip training images left-right at random.
      aug_scale_min: smallest random scale (paper: 0.05).
      aug_scale_max: largest random scale (paper: 2.9).
      center_type: 'mask' (centroid of the mask) or 'box' (box center).
      gaussian_min_overlap: IoU of CenterNet's Gaussian radius rule.
      gaussian_min_radius: smallest Gaussian radius in cells.
      level_size_measure: 'sqrt_area' or 'box_side', see
        `targets.build_targets`.
      level_base_size: size boundary between the two finest levels at
        `level_reference_size`, see `targets.level_boundaries`.
      level_reference_size: longer image side `level_base_size` refers to.
      copy_paste_prob: probability of panoptic copy-paste per training example
        (0 = off); needs `copy_paste.pair_examples` upstream.
      copy_paste_scale_min: smallest scale of the pasted source.
      copy_paste_scale_max: largest scale of the pasted source.
      copy_paste_segment_prob: probability to paste each source segment.
      copy_paste_stuff: whether stuff segments are pasted too.
      max_segments: length of the padded eval ground-truth segment lists.
      eval_groundtruth_padded_size: [height, width] to which the original eval
        segment map is padded; defaults to `output_size`. Must hold the
        largest original image.
      source_padded_size: [height, width]; when given, images leave as
        their source (after copy-paste and flip) padded to this size, with
        `labels[keys.RESIZE_INFO]`, and the steps resize them on the device.
        Must hold the largest source image.
    """
    self._output_size = [int(s) for s in output_size]
    if len(self._output_size) != 2:
      raise ValueError(f'output_size must be [height, width], got '
                       f'{output_size}')
    if not 0 < min_level <= max_level:
      raise ValueError(f'need 0 < min_level <= max_level, got {min_level}, '
                       f'{max_level}')
    if not 0 <= num_thing_classes <= num_classes:
      raise ValueError(f'need 0 <= num_thing_classes <= num_classes, got '
                       f'{num_thing_classes}, {num_classes}')
    if not 0.0 < aug_scale_min <= aug_scale_max:
      raise ValueError(f'need 0 < aug_scale_min <= aug_scale_max, got '
                       f'{aug_scale_min}, {aug_scale_max}')
    if center_type not in targets.CENTER_TYPES:
      raise ValueError(f'center_type must be one of {targets.CENTER_TYPES}, '
                       f'got {center_type!r}')
    if level_size_measure not in targets.LEVEL_SIZE_MEASURES:
      raise ValueError(f'level_size_measure must be one of '
                       f'{targets.LEVEL_SIZE_MEASURES}, got '
                       f'{level_size_measure!r}')
    if not 0.0 <= copy_paste_prob <= 1.0:
      raise ValueError(f'copy_paste_prob must lie in [0, 1], got '
                       f'{copy_paste_prob}')
    targets.validate_level_grid(self._output_size, max_level, mask_stride)
    self._min_level = min_level
    self._max_level = max_level
    self._num_classes = num_classes
    self._num_thing_classes = num_thing_classes
    self._max_instances = max_instances
    self._mask_stride = mask_stride
    self._aug_rand_hflip = aug_rand_hflip
    self._aug_scale_min = aug_scale_min
    self._aug_scale_max = aug_scale_max
    self._target_options = dict(
        num_classes=num_classes,
        num_thing_classes=num_thing_classes,
        max_instances=max_instances,
        min_level=min_level,
        max_level=max_level,
        mask_stride=mask_stride,
        center_type=center_type,
        gaussian_min_overlap=gaussian_min_overlap,
        gaussian_min_radius=gaussian_min_radius,
        level_size_measure=level_size_measure,
        level_size_boundaries=targets.level_boundaries(
            max_level - min_level + 1, level_base_size, level_reference_size,
            self._output_size))
    self._copy_paste_prob = copy_paste_prob
    self._copy_paste_options = dict(
        num_thing_classes=num_thing_classes,
        prob=copy_paste_prob,
        scale_min=copy_paste_scale_min,
        scale_max=copy_paste_scale_max,
        segment_prob=copy_paste_segment_prob,
        paste_stuff=copy_paste_stuff)
    self._max_segments = max_segments
    self._gt_padded_size = [
        int(s) for s in (eval_groundtruth_padded_size or self._output_size)]
    self._source_padded_size = [int(s) for s in (source_padded_size or [])]
    if self._source_padded_size and len(self._source_padded_size) != 2:
      raise ValueError(f'source_padded_size must be [height, width], got '
                       f'{source_padded_size}')

  def _build_labels(self, segment_map: tf.Tensor,
                    window: resampling.Window,
                    decoded: Dict[str, Any]) -> Dict[str, Any]:
    """Targets of the output map `segment_map` (source) read through
    `window`."""
    classes = tf.cast(decoded[keys.SEGMENT_CLASS_LIST], tf.int32)
    check = tf.debugging.Assert(
        tf.reduce_all(classes < self._num_classes),
        ['source_id', decoded[keys.SOURCE_ID], 'has segment class ids',
         classes, f'>= task.model.num_classes={self._num_classes}: the '
         'records were converted with a label map of more classes than the '
         'model has'])
    with tf.control_dependencies([check]):
      segment_map = tf.identity(segment_map)
    return targets.describe_targets(
        segment_map, decoded[keys.SEGMENT_ID_LIST],
        decoded[keys.SEGMENT_CLASS_LIST], decoded[keys.SEGMENT_CROWD_LIST],
        window=window, **self._target_options)

  def _resize(self, image: tf.Tensor, scale_min: float, scale_max: float,
              source_id: tf.Tensor
              ) -> Tuple[tf.Tensor, resampling.Window, tf.Tensor]:
    """Scale jitter of the uint8 image; the segment map's window.

    On the host: `resize_and_crop_image` on the mean-subtracted float32
    image (its zero padding becomes the mean pixel), rounded to uint8 (at
    most 0.5 / 255 from the float image). With `source_padded_size`: the
    same `image_info` (same random draws), and the source itself padded to
    that size; the steps resize it on the device
    (`maskconver.ops.image_ops.resize_window`, the same pixels).

    The segment map is never resampled whole: the returned window reads it
    (nearest neighbour, padding outside the scaled image).

    Returns:
      (uint8 image, `resampling.Window`, float32 [4, 2] image_info).
    """
    if self._source_padded_size:
      image_info = resampling.scale_and_crop_info(
          image, self._output_size, scale_min, scale_max)
      image = self._pad_source(image, source_id)
    else:
      mean = tf.constant(image_ops.MEAN_RGB, tf.float32)
      image, image_info = preprocess_ops.resize_and_crop_image(
          tf.cast(image, tf.float32) - mean, self._output_size,
          self._output_size, aug_scale_min=scale_min,
          aug_scale_max=scale_max)
      # A bilinear sample of uint8 values lies in [0, 255] up to rounding far
      # below 0.5, so rounding needs no clip.
      image = tf.ensure_shape(tf.cast(tf.round(image + mean), tf.uint8),
                              self._output_size + [3])
    window = resampling.nearest_window(image_info, self._output_size)
    return image, window, image_info

  def _pad_source(self, image: tf.Tensor, source_id: tf.Tensor) -> tf.Tensor:
    """The uint8 source in the top-left corner of `source_padded_size`."""
    padded_h, padded_w = self._source_padded_size
    size = tf.shape(image)[:2]
    check = tf.debugging.Assert(
        tf.reduce_all(size <= [padded_h, padded_w]),
        ['source_id', source_id, 'has an image of', size, 'pixels, larger '
         'than train_data/validation_data.parser.source_padded_size',
         [padded_h, padded_w]])
    with tf.control_dependencies([check]):
      image = tf.pad(image, [[0, padded_h - size[0]], [0, padded_w - size[1]],
                             [0, 0]])
    return tf.ensure_shape(image, [padded_h, padded_w, 3])

  def _labels(self, segment_map, window, image_info, decoded):
    labels = self._build_labels(segment_map, window, decoded)
    if self._source_padded_size:
      labels[keys.RESIZE_INFO] = image_info
    return labels

  def _parse_train_data(
      self, decoded_tensors: Dict[str, Any]
  ) -> Tuple[tf.Tensor, Dict[str, Any]]:
    """Augments a decoded example and builds its training targets.

    Args:
      decoded_tensors: decoder output dict (see `keys.py`), optionally with
        `keys.COPY_PASTE_SOURCE`.

    Returns:
      image: uint8 [output_height, output_width, 3].
      labels: dict with the compact training label keys of `keys.py`.
    """
    decoded = dict(decoded_tensors)
    if self._copy_paste_prob > 0.0:
      if keys.COPY_PASTE_SOURCE not in decoded:
        raise ValueError(
            f'copy_paste_prob={self._copy_paste_prob} needs decoded examples '
            f'with {keys.COPY_PASTE_SOURCE!r}; apply '
            'maskconver.dataloaders.copy_paste.pair_examples to the decoded '
            'dataset first')
      decoded = copy_paste.random_copy_paste(
          decoded, decoded[keys.COPY_PASTE_SOURCE], **self._copy_paste_options)
    image = decoded[keys.IMAGE]
    segment_map = tf.cast(decoded[keys.SEGMENT_MAP], tf.int32)
    if self._aug_rand_hflip:
      flip = tf.random.uniform([]) < 0.5
      image, segment_map = tf.cond(
          flip, lambda: (image[:, ::-1], segment_map[:, ::-1]),
          lambda: (image, segment_map))
    image, window, image_info = self._resize(
        image, self._aug_scale_min, self._aug_scale_max,
        decoded[keys.SOURCE_ID])
    return image, self._labels(segment_map, window, image_info, decoded)

  def _parse_eval_data(
      self, decoded_tensors: Dict[str, Any]
  ) -> Tuple[tf.Tensor, Dict[str, Any]]:
    """Resizes a decoded example and builds targets and ground truth.

    Args:
      decoded_tensors: decoder output dict (see `keys.py`).

    Returns:
      image: uint8 [output_height, output_width, 3].
      labels: the compact training labels plus `keys.GROUNDTRUTHS`.
    """
    decoded = decoded_tensors
    original_map = tf.cast(decoded[keys.SEGMENT_MAP], tf.int32)
    image, window, image_info = self._resize(decoded[keys.IMAGE], 1.0, 1.0,
                                             decoded[keys.SOURCE_ID])
    labels = self._labels(original_map, window, image_info, decoded)
    # Row 1 becomes the size of the image content inside the padded output,
    # as keys.IMAGE_INFO documents (`resize_and_crop_image` puts the desired
    # output size there).
    scaled_size = tf.round(image_info[0] * image_info[2])
    image_info = tf.stack(
        [image_info[0], scaled_size, image_info[2], image_info[3]])
    labels[keys.GROUNDTRUTHS] = self._groundtruths(decoded, original_map,
                                                   image_info)
    return image, labels

  def _groundtruths(self, decoded: Dict[str, Any], original_map: tf.Tensor,
                    image_info: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Pads the original segment map and lists to static shapes."""
    source_id = decoded[keys.SOURCE_ID]
    map_size = tf.shape(original_map)
    padded_h, padded_w = self._gt_padded_size
    num_segments = tf.shape(decoded[keys.SEGMENT_ID_LIST])[0]
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(map_size <= [padded_h, padded_w]),
            ['eval_groundtruth_padded_size', [padded_h, padded_w],
             'is smaller than the segment map of source_id', source_id,
             map_size]),
        tf.debugging.Assert(
            num_segments <= self._max_segments,
            ['max_segments', self._max_segments, 'is smaller than the',
             num_segments, 'segments of source_id', source_id]),
    ]
    with tf.control_dependencies(checks):
      padded_map = tf.pad(
          original_map,
          [[0, padded_h - map_size[0]], [0, padded_w - map_size[1]]],
          constant_values=keys.VOID_SEGMENT_ID)
    padded_map = tf.ensure_shape(padded_map, [padded_h, padded_w])

    def pad_list(values, dtype, fill):
      values = tf.cast(values, dtype)
      values = tf.pad(values, [[0, self._max_segments - num_segments]],
                      constant_values=fill)
      return tf.ensure_shape(values, [self._max_segments])

    return {
        keys.IMAGE_INFO: image_info,
        keys.GT_SEGMENT_MAP: padded_map,
        keys.GT_SEGMENT_IDS: pad_list(decoded[keys.SEGMENT_ID_LIST], tf.int32,
                                      0),
        keys.GT_SEGMENT_CLASSES: pad_list(decoded[keys.SEGMENT_CLASS_LIST],
                                          tf.int32, keys.VOID_CLASS),
        keys.GT_SEGMENT_IS_CROWD: pad_list(decoded[keys.SEGMENT_CROWD_LIST],
                                           tf.bool, False),
        keys.GT_SOURCE_ID: source_id_bytes(source_id),
    }
