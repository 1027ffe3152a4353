"""The MaskConver task: inputs, losses, train and validation steps, PQ."""

import functools
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import task_factory
from official.vision.dataloaders import input_reader_factory

from maskconver import keys
from maskconver.configs import maskconver as maskconver_cfg
from maskconver.dataloaders import batching
from maskconver.dataloaders import copy_paste
from maskconver.dataloaders import label_map_check
from maskconver.dataloaders import parser as parser_lib
from maskconver.dataloaders import record_files
from maskconver.dataloaders import tf_example_decoder
from maskconver.evaluation import panoptic_evaluator
from maskconver import losses as losses_lib
from maskconver.modeling import factory
from maskconver.modeling.layers import stuff_regions
from maskconver.ops import image_ops
from maskconver.ops import target_ops
from maskconver.visualization import class_info

# Names of the loss entries in the train / validation logs.
TOTAL_LOSS = 'total_loss'
HEATMAP_LOSS = 'heatmap_loss'
BCE_LOSS = 'mask_bce_loss'
DICE_LOSS = 'mask_dice_loss'
STUFF_REGION_LOSS = 'stuff_region_loss'
# Where validation steps hand per-image results to aggregate_logs.
_PANOPTIC_OUTPUTS = 'panoptic_outputs'
# Images per evaluation shown in TensorBoard when allow_image_summary is on.
_NUM_SUMMARY_IMAGES = 4


def _float_outputs(outputs: Mapping[str, Any]) -> Dict[str, Any]:
  """Casts floating outputs to float32 (mixed precision); keeps int outputs."""
  return tf.nest.map_structure(
      lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs)


def _global_batch_mean(total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """`total / max(count, 1)` over the global batch, as one replica's share.

  Args:
    total: float32 [], this replica's sum of per-item losses.
    count: float32 [], this replica's number of items (centers, masks).

  Returns:
    float32 [], `num_replicas * total / max(global count, 1)`: the mean of
    these values over the replicas (what Model Garden logs; the summed,
    1 / num_replicas-scaled gradients follow it) is the loss of the global
    batch, so training does not depend on how the batch is split.
  """
  context = tf.distribute.get_replica_context()
  num_replicas = 1
  if context is not None and context.num_replicas_in_sync > 1:
    num_replicas = context.num_replicas_in_sync
    count = context.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.stop_gradient(count))
  return total * float(num_replicas) / tf.maximum(count, 1.0)


def build_parser(model_config: maskconver_cfg.MaskConverModel,
                 data_config: maskconver_cfg.DataConfig) -> parser_lib.Parser:
  """Builds the parser of one input from the model and data configs."""
  parser_config = data_config.parser
  return parser_lib.Parser(
      output_size=model_config.input_size[:2],
      min_level=model_config.min_level,
      max_level=model_config.max_level,
      num_classes=model_config.num_classes,
      num_thing_classes=model_config.num_thing_classes,
      max_instances=parser_config.max_instances or model_config.num_instances,
      mask_stride=parser_config.mask_stride,
      aug_rand_hflip=parser_config.aug_rand_hflip,
      aug_scale_min=parser_config.aug_scale_min,
      aug_scale_max=parser_config.aug_scale_max,
      center_type=parser_config.center_type,
      gaussian_min_overlap=parser_config.gaussian_min_overlap,
      gaussian_min_radius=parser_config.gaussian_min_radius,
      level_size_measure=parser_config.level_size_measure,
      level_base_size=parser_config.level_base_size,
      level_reference_size=parser_config.level_reference_size,
      copy_paste_prob=parser_config.copy_paste_prob,
      copy_paste_scale_min=parser_config.copy_paste_scale_min,
      copy_paste_scale_max=parser_config.copy_paste_scale_max,
      max_segments=parser_config.max_segments,
      eval_groundtruth_padded_size=(
          parser_config.eval_groundtruth_padded_size or None),
      source_padded_size=parser_config.source_padded_size or None)


@task_factory.register_task_cls(maskconver_cfg.MaskConverTask)
class MaskConverTask(base_task.Task):
  """Trains and evaluates MaskConver the Model Garden way."""

  def __init__(self, params: maskconver_cfg.MaskConverTask,
               logging_dir: Optional[str] = None, name: Optional[str] = None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    model_config = params.model
    self._postprocessor = factory.build_panoptic_postprocessor(model_config)
    self._evaluator = None

  # --------------------------------------------------------------- model ---

  def build_model(self) -> tf_keras.Model:
    """Builds the MaskConver model from the task config."""
    model_config = self.task_config.model
    input_specs = tf_keras.layers.InputSpec(
        shape=[None] + list(model_config.input_size))
    l2_weight_decay = self.task_config.losses.l2_weight_decay
    # Divided by 2 as tf_keras' L2 is sum(w**2) and the config is in the
    # weight-decay convention 0.5 * sum(w**2).
    l2_regularizer = (tf_keras.regularizers.l2(l2_weight_decay / 2.0)
                      if l2_weight_decay else None)
    return factory.build_maskconver_model(input_specs, model_config,
                                          l2_regularizer)

  def initialize(self, model: tf_keras.Model) -> None:
    """Loads `init_checkpoint` into the modules named in the config."""
    path = self.task_config.init_checkpoint
    if not path:
      return
    if tf.io.gfile.isdir(path):
      latest = tf.train.latest_checkpoint(path)
      if latest is None:
        raise ValueError(f'task.init_checkpoint: no checkpoint in {path}')
      path = latest
    modules = self.task_config.init_checkpoint_modules
    if 'all' in modules:
      items = {'model': model}
    else:
      unknown = sorted(set(modules) - set(model.checkpoint_items))
      if unknown:
        raise ValueError(
            f'task.init_checkpoint_modules: unknown module(s) {unknown}; '
            f'choose from {sorted(model.checkpoint_items)} or "all"')
      items = {m: model.checkpoint_items[m] for m in modules}
    status = tf.train.Checkpoint(**items).read(path)
    status.expect_partial().assert_existing_objects_matched()
    logging.info('Loaded %s from %s', sorted(items), path)

  # -------------------------------------------------------------- inputs ---

  def build_inputs(
      self,
      params: maskconver_cfg.DataConfig,
      input_context: Optional[tf.distribute.InputContext] = None
  ) -> tf.data.Dataset:
    """Reads, decodes, (copy-pastes,) parses and batches one input.

    Before anything is read, every file of `params.input_path` is checked
    (a TFRecord file, not empty; see `record_files`) and the input's label
    map (`label_map_path`, else the converter's one beside the shards) must
    have the model's classes; errors name the file and the field to fix.
    """
    field = 'task.train_data' if params.is_training else (
        'task.validation_data')
    file_sizes = record_files.checked_record_files(
        params.input_path, f'{field}.input_path')
    model_config = self.task_config.model
    label_map_path = params.label_map_path
    source = f'{field}.label_map_path={label_map_path}'
    if not label_map_path:
      label_map_path = record_files.label_map_beside(list(file_sizes))
      source = (f'{label_map_path}, the label map beside the shards of '
                f'{field}.input_path')
    if label_map_path:
      label_map_check.check_label_map(
          label_map_path, model_config.num_classes,
          model_config.num_thing_classes, source)
    label_map_check.check_input_label_maps(
        self.task_config.train_data.label_map_path,
        'task.train_data.label_map_path',
        self.task_config.validation_data.label_map_path,
        'task.validation_data.label_map_path')
    batch_size = batching.per_replica_batch_size(
        params.global_batch_size, input_context, f'{field}.global_batch_size')
    postprocess_fn = None
    if not params.is_training:
      # Static batches (TPUs, XLA): the last partial one is padded.
      postprocess_fn = functools.partial(
          batching.pad_batch, batch_size=batch_size,
          min_level=model_config.min_level)
    parser = build_parser(model_config, params)
    use_copy_paste = params.is_training and params.parser.copy_paste_prob > 0
    reader = input_reader_factory.input_reader_generator(
        params,
        dataset_fn=record_files.make_dataset_fn(
            file_sizes, f'{field}.input_path', params.skip_corrupt_records),
        decoder_fn=tf_example_decoder.TfExampleDecoder().decode,
        sample_fn=copy_paste.pair_examples if use_copy_paste else None,
        parser_fn=parser.parse_fn(params.is_training),
        postprocess_fn=postprocess_fn)
    return reader.read(input_context=input_context)

  # -------------------------------------------------------------- losses ---

  def build_losses(self, labels: Mapping[str, Any],
                   model_outputs: Mapping[str, Any],
                   aux_losses: Optional[List[tf.Tensor]] = None
                   ) -> Dict[str, tf.Tensor]:
    """Focal loss on the heatmaps, BCE and Dice on ground-truth-center masks.

    Args:
      labels: parser training labels (keys.py).
      model_outputs: model outputs with MASK_LOGITS for the ground-truth
        centers, in float32.
      aux_losses: regularization losses of the model.

    Returns:
      {TOTAL_LOSS, HEATMAP_LOSS, BCE_LOSS, DICE_LOSS}, per replica. The focal
      loss is normalized by the centers and the mask losses by the masks of
      the global batch (summed over replicas), so that the replicas' mean is
      the loss of the global batch.
    """
    config = self.task_config.losses
    heatmaps = labels[keys.CENTER_HEATMAPS]
    if self._stuff_as_regions:
      # The center heads predict things only; stuff comes from regions.
      things = self.task_config.model.num_thing_classes
      heatmaps = {k: v[..., :things] for k, v in heatmaps.items()}
    heatmap_sum, num_centers = losses_lib.focal_loss_terms(
        model_outputs[keys.CLASS_HEATMAP_LOGITS], heatmaps,
        labels[keys.HEATMAP_WEIGHTS], alpha=config.focal_alpha,
        beta=config.focal_beta)
    heatmap_loss = _global_batch_mean(heatmap_sum, num_centers)
    mask_args = (model_outputs[keys.MASK_LOGITS], labels[keys.MASKS],
                 labels[keys.MASK_WEIGHTS])
    valid = tf.cast(labels[keys.VALID], tf.float32)
    num_masks = tf.reduce_sum(valid)
    bce_loss = _global_batch_mean(
        tf.reduce_sum(valid * losses_lib.per_mask_bce(*mask_args)), num_masks)
    dice_loss = _global_batch_mean(
        tf.reduce_sum(valid * losses_lib.per_mask_dice(*mask_args)), num_masks)
    total = (config.heatmap_weight * heatmap_loss +
             config.bce_weight * bce_loss + config.dice_weight * dice_loss)
    losses = {HEATMAP_LOSS: heatmap_loss, BCE_LOSS: bce_loss,
              DICE_LOSS: dice_loss}
    if self._stuff_as_regions:
      losses[STUFF_REGION_LOSS] = self._stuff_region_loss(labels,
                                                          model_outputs)
      total += config.stuff_region_weight * losses[STUFF_REGION_LOSS]
    if aux_losses:
      total += tf.add_n([tf.cast(l, tf.float32) for l in aux_losses])
    losses[TOTAL_LOSS] = total
    return losses

  @property
  def _stuff_as_regions(self) -> bool:
    return self.task_config.model.stuff_representation == 'region'

  def _stuff_region_loss(self, labels: Mapping[str, Any],
                         model_outputs: Mapping[str, Any]) -> tf.Tensor:
    """BCE of the stuff region logits against each cell's stuff share.

    Targets are the stride-`2**min_level` share of each cell covered by each
    stuff class, from the target masks; cells are weighted by their share of
    non-void pixels. Normalized by the weight of the global batch.
    """
    model_config = self.task_config.model
    logits = tf.cast(model_outputs[keys.STUFF_REGION_LOGITS], tf.float32)
    # Mask cells per region cell (2 for stride-4 masks and regions on L3).
    factor = labels[keys.MASKS].shape[-1] // logits.shape[2]
    targets, weights = stuff_regions.stuff_region_targets(
        labels[keys.MASKS], labels[keys.CLASSES], labels[keys.IS_THING],
        labels[keys.VALID], labels[keys.MASK_WEIGHTS],
        model_config.num_thing_classes,
        model_config.num_classes - model_config.num_thing_classes, factor)
    per_cell = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=targets, logits=logits), axis=-1)
    return _global_batch_mean(tf.reduce_sum(weights * per_cell),
                              tf.reduce_sum(weights))

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    """Running means of each loss term (the total is the task's `loss`).

    For validation, also builds the PQ evaluator (`aggregate_logs`), so that
    a bad `validation_data.label_map_path` fails before training starts.
    """
    names = [HEATMAP_LOSS, BCE_LOSS, DICE_LOSS]
    if self._stuff_as_regions:
      names.append(STUFF_REGION_LOSS)
    if not training:
      self._panoptic_evaluator()
    return [tf_keras.metrics.Mean(name, dtype=tf.float32) for name in names]

  def _log_losses(self, losses: Mapping[str, tf.Tensor],
                  metrics: Optional[List[tf_keras.metrics.Metric]]
                  ) -> Dict[str, tf.Tensor]:
    logs = {self.loss: losses[TOTAL_LOSS]}
    for metric in metrics or []:
      metric.update_state(losses[metric.name])
      logs[metric.name] = metric.result()
    return logs

  # ------------------------------------------------ on-device inputs ---

  def input_images(self, images: tf.Tensor,
                   labels: Mapping[str, Any]) -> tf.Tensor:
    """uint8 images at `model.input_size`: `build_inputs`' images, resized
    here when the parser sent padded sources (`keys.RESIZE_INFO`)."""
    if keys.RESIZE_INFO not in labels:
      return images
    return image_ops.resize_window(images, labels[keys.RESIZE_INFO],
                                   self.task_config.model.input_size[:2])

  def prepare_inputs(self, images: tf.Tensor, labels: Mapping[str, Any],
                     data_config: maskconver_cfg.DataConfig
                     ) -> Tuple[tf.Tensor, Dict[str, Any]]:
    """Resizes (`input_images`) and normalizes the uint8 images and
    expands the compact labels.

    Runs inside the train and validation steps (on the device, under XLA).

    Args:
      images: uint8 [batch, height, width, 3] from `build_inputs`.
      labels: the parser's compact labels (keys.py).
      data_config: the input's config (image dtype, heatmap weights).

    Returns:
      (normalized images in `data_config.dtype`, the labels with the dense
      training keys of keys.py added and `keys.RESIZE_INFO` consumed).
    """
    images = self.input_images(images, labels)
    labels = {k: v for k, v in labels.items() if k != keys.RESIZE_INFO}
    model_config = self.task_config.model
    dense = target_ops.dense_targets(
        labels, num_classes=model_config.num_classes,
        num_thing_classes=model_config.num_thing_classes,
        min_level=model_config.min_level, max_level=model_config.max_level,
        heatmap_ignore_fraction=data_config.parser.heatmap_ignore_fraction)
    labels = dict(labels)
    labels.update(dense)
    return image_ops.normalize_images(images, data_config.dtype), labels

  def _region_targets(self, labels: Mapping[str, Any]) -> Dict[str, Any]:
    """The extra model arguments of stuff as regions (Table 7), else none."""
    if not self._stuff_as_regions:
      return {}
    return {'is_thing': labels[keys.IS_THING],
            'target_masks': labels[keys.MASKS]}

  # ----------------------------------------------------------- training ---

  def train_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer,
                 metrics: Optional[List[Any]] = None) -> Dict[str, tf.Tensor]:
    """One optimizer step with teacher forcing on ground-truth centers."""
    images, labels = self.prepare_inputs(*inputs, self.task_config.train_data)
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = model(images, center_indices=labels[keys.CENTER_INDICES],
                      classes=labels[keys.CLASSES], training=True,
                      **self._region_targets(labels))
      outputs = _float_outputs(outputs)
      losses = self.build_losses(labels, outputs, aux_losses=model.losses)
      # Gradients are summed over replicas by the optimizer.
      scaled_loss = losses[TOTAL_LOSS] / num_replicas
      if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        scaled_loss = optimizer.get_scaled_loss(scaled_loss)
    variables = model.trainable_variables
    grads = tape.gradient(scaled_loss, variables)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, variables)))
    return self._log_losses(losses, metrics)

  # --------------------------------------------------------- validation ---

  def validation_step(self, inputs: Tuple[Any, Any], model: tf_keras.Model,
                      metrics: Optional[List[Any]] = None
                      ) -> Dict[str, Any]:
    """Losses on ground-truth centers, plus the panoptic prediction for PQ."""
    raw_images = self.input_images(*inputs)
    labels = {k: v for k, v in inputs[1].items() if k != keys.RESIZE_INFO}
    images, labels = self.prepare_inputs(raw_images, labels,
                                         self.task_config.validation_data)
    outputs = _float_outputs(model(images, training=False))
    # The losses use the masks of the ground-truth centers, computed from this
    # forward pass's features.
    loss_outputs = dict(outputs)
    loss_outputs[keys.MASK_LOGITS] = tf.cast(
        model.masks_for_centers(outputs, labels[keys.CENTER_INDICES],
                                labels[keys.CLASSES],
                                **self._region_targets(labels)), tf.float32)
    losses = self.build_losses(labels, loss_outputs, aux_losses=model.losses)
    logs = self._log_losses(losses, metrics)
    panoptic = self._postprocessor(outputs, tf.shape(images)[1:3])
    groundtruths = labels[keys.GROUNDTRUTHS]
    logs[_PANOPTIC_OUTPUTS] = {
        keys.PANOPTIC_SEGMENT_MAP: panoptic[keys.PANOPTIC_SEGMENT_MAP],
        keys.SEGMENT_CLASSES_OUT: panoptic[keys.SEGMENT_CLASSES_OUT],
        keys.SEGMENT_SCORES_OUT: panoptic[keys.SEGMENT_SCORES_OUT],
        keys.IMAGE_INFO: groundtruths[keys.IMAGE_INFO],
        keys.GT_SEGMENT_MAP: groundtruths[keys.GT_SEGMENT_MAP],
        keys.GT_SEGMENT_IDS: groundtruths[keys.GT_SEGMENT_IDS],
        keys.GT_SEGMENT_CLASSES: groundtruths[keys.GT_SEGMENT_CLASSES],
        keys.GT_SEGMENT_IS_CROWD: groundtruths[keys.GT_SEGMENT_IS_CROWD],
        keys.GT_SOURCE_ID: groundtruths[keys.GT_SOURCE_ID],
    }
    if self.task_config.allow_image_summary:
      logs[_PANOPTIC_OUTPUTS][keys.IMAGE] = raw_images
    return logs

  def _panoptic_evaluator(self) -> panoptic_evaluator.PanopticEvaluator:
    """The evaluator of this task's validations (built once)."""
    if self._evaluator is not None:
      return self._evaluator
    config = self.task_config
    model_config = config.model
    path = config.validation_data.label_map_path
    if path:
      classes = class_info.ClassInfo.from_label_map(
          label_map_check.check_label_map(
              path, model_config.num_classes, model_config.num_thing_classes,
              f'task.validation_data.label_map_path={path}'))
    else:
      classes = class_info.ClassInfo.from_counts(
          model_config.num_classes, model_config.num_thing_classes,
          name_format='{}')
    self._evaluator = panoptic_evaluator.PanopticEvaluator(
        classes, predictions_dir=config.predictions_dir or None,
        num_summary_images=(_NUM_SUMMARY_IMAGES if config.allow_image_summary
                            else 0),
        metrics_path=(os.path.join(self.logging_dir,
                                   panoptic_evaluator.EVAL_METRICS_FILE)
                      if self.logging_dir else None))
    return self._evaluator

  def aggregate_logs(self,
                     state: Optional[panoptic_evaluator.PanopticEvaluator],
                     step_outputs: Mapping[str, Any]
                     ) -> panoptic_evaluator.PanopticEvaluator:
    """Adds a validation step's predictions to the evaluator.

    `state` None starts an evaluation: PQ from zero, a new predictions JSON
    (in task.predictions_dir) and new panels.
    """
    if state is None:
      state = self._panoptic_evaluator()
      state.reset_states()
    state.update_state(step_outputs[_PANOPTIC_OUTPUTS])
    return state

  def reduce_aggregated_logs(
      self, aggregated_logs: Optional[panoptic_evaluator.PanopticEvaluator],
      global_step: Optional[tf.Tensor] = None) -> Dict[str, Any]:
    """PQ (x100, like panopticapi), per class, and the image panels.

    Also writes the predictions JSON and <logging_dir>/eval_metrics.json.
    """
    if aggregated_logs is None:
      return {}
    return aggregated_logs.result(global_step)
