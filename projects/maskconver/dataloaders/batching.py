"""Batch sizes that fit the replicas, and the padded last validation batch."""

from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

from maskconver import keys


def per_replica_batch_size(global_batch_size: int,
                           input_context: Optional[tf.distribute.InputContext],
                           flag: str) -> int:
  """The batch of one replica; a clear error when the global one does not divide.

  Args:
    global_batch_size: the config's global batch size.
    input_context: the strategy's input context, or None (one replica).
    flag: the config field to name in errors, e.g.
      'task.validation_data.global_batch_size'.

  Returns:
    `global_batch_size / num_replicas_in_sync`.

  Raises:
    ValueError: naming `flag` when the batch is not a positive multiple of the
      replica count.
  """
  replicas = input_context.num_replicas_in_sync if input_context else 1
  if global_batch_size <= 0 or global_batch_size % replicas:
    raise ValueError(
        f'{flag}={global_batch_size} must be a positive multiple of the '
        f'{replicas} replicas of this distribution strategy; set it to e.g. '
        f'{max(1, global_batch_size // replicas) * replicas}')
  return global_batch_size // replicas


def _pad_value(key: str, labels: Mapping[str, Any], min_level: int) -> int:
  """Fill value of padded examples: everything they hold is ignored."""
  if key == keys.SLOT_MAP:
    return labels[keys.CLASSES].shape[-1] + 1  # void: no mask loss
  if key == keys.HEATMAP_IGNORE_COUNT:
    return 4**min_level  # every pixel ignored: no heatmap loss
  return 0  # no targets; image_info of 0 marks the example as padding


def pad_batch(images: tf.Tensor, labels: Dict[str, Any], batch_size: int,
              min_level: int) -> Tuple[tf.Tensor, Dict[str, Any]]:
  """Pads a (last, partial) batch to `batch_size` examples.

  Padded examples have no targets, all heatmap and mask pixels ignored, and
  an all-zero image_info, which the PQ accumulation skips. Every tensor gets
  the static batch dimension that TPUs and XLA need.

  Args:
    images: [n, height, width, 3] with n <= batch_size.
    labels: the parser's labels of the batch (nested dicts allowed).
    batch_size: the per-replica batch size.
    min_level: finest head level (fixes the ignore-count fill value).

  Returns:
    (images, labels), each with batch dimension `batch_size`.
  """
  missing = batch_size - tf.shape(images)[0]

  def pad(tensor, value):
    paddings = [[0, missing]] + [[0, 0]] * (tensor.shape.rank - 1)
    padded = tf.pad(tensor, paddings, constant_values=tf.cast(
        value, tensor.dtype))
    return tf.ensure_shape(padded, [batch_size] + tensor.shape[1:].as_list())

  def pad_dict(values):
    return {key: pad_dict(value) if isinstance(value, dict) else
            pad(value, _pad_value(key, values, min_level))
            for key, value in values.items()}

  return pad(images, 0), pad_dict(labels)
