"""The in-training panoptic evaluation: PQ, prediction files, image panels.

Host-side work after the validation steps: the task hands each step's
outputs to `update_state` and the evaluation's logs come from `result`, as
Model Garden's tasks do with their COCO evaluator. One evaluator serves one
evaluation at a time; `reset_states` starts the next.
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import parser as parser_lib
from maskconver.evaluation import panoptic_quality
from maskconver.evaluation import prediction_writer
from maskconver.visualization import class_info
from maskconver.visualization import panels

# Written into the model directory at each evaluation.
EVAL_METRICS_FILE = 'eval_metrics.json'


class PanopticEvaluator:
  """Accumulates PQ, writes predictions and renders panels of one evaluation.

  PQ is computed in training class ids (a 1:1 map of the dataset's ids, so
  the same PQ), at each image's original size: predictions are cropped and
  resized back as the prediction writer does, and segments too small to
  survive that resize are not predictions.
  """

  def __init__(self, classes: class_info.ClassInfo,
               predictions_dir: Optional[str] = None,
               num_summary_images: int = 0,
               metrics_path: Optional[str] = None):
    """Initializes the evaluator and its first evaluation.

    Args:
      classes: names, thing flags, colours and dataset category ids of the
        training classes (things first).
      predictions_dir: where each evaluation writes its predictions in COCO
        panoptic format (`prediction_writer`); None writes none.
      num_summary_images: how many images per evaluation get an
        input | ground truth | prediction panel among the logs (they need
        keys.IMAGE in the outputs); 0 for none.
      metrics_path: a JSON file each `result` writes the scalar metrics and
        the per-class counts to; None writes none.
    """
    if num_summary_images < 0:
      raise ValueError(
          f'num_summary_images must be >= 0, got {num_summary_images}')
    self._classes = classes
    self._predictions_dir = predictions_dir
    self._num_summary_images = num_summary_images
    self._metrics_path = metrics_path
    self.reset_states()

  @property
  def panoptic_quality(self) -> panoptic_quality.PanopticQuality:
    """The PQ accumulator of the current evaluation."""
    return self._pq

  def reset_states(self) -> None:
    """Starts an evaluation: no images, a new predictions JSON, no panels."""
    self._pq = panoptic_quality.PanopticQuality(
        panoptic_quality.training_categories(
            self._classes.num_classes, self._classes.num_thing_classes))
    self._writer = None
    if self._predictions_dir:
      self._writer = prediction_writer.PanopticPredictionWriter(
          self._predictions_dir, category_ids=self._classes.category_ids,
          is_thing=self._classes.is_thing)
    # uint8 [h, w, 3] panels of this evaluation's first images.
    self._panels: List[np.ndarray] = []

  def update_state(self, outputs: Mapping[str, Any]) -> None:
    """Adds one validation step's images.

    Args:
      outputs: numpy or tensor values, each [batch, ...], of
        keys.PANOPTIC_SEGMENT_MAP and keys.SEGMENT_CLASSES_OUT (the
        post-processor's), keys.IMAGE_INFO, keys.GT_SEGMENT_MAP,
        keys.GT_SEGMENT_IDS, keys.GT_SEGMENT_CLASSES,
        keys.GT_SEGMENT_IS_CROWD and keys.GT_SOURCE_ID (the parser's
        ground truth), and keys.IMAGE (uint8 inputs) for panels; under a
        distribution strategy, a tuple of the replicas' values per key.
        Images whose `keys.IMAGE_INFO` has height 0 (the padding of a last
        batch) are skipped.
    """
    per_replica = {k: v if isinstance(v, (tuple, list)) else (v,)
                   for k, v in outputs.items()}
    num_replicas = len(per_replica[keys.IMAGE_INFO])
    for replica in range(num_replicas):
      batch = {k: np.asarray(v[replica]) for k, v in per_replica.items()}
      for i in range(batch[keys.IMAGE_INFO].shape[0]):
        self._add_image({k: v[i] for k, v in batch.items()})

  def _add_image(self, image: Mapping[str, np.ndarray]) -> None:
    """Adds one image's prediction and ground truth."""
    info = image[keys.IMAGE_INFO]
    height, width = np.round(info[0]).astype(np.int64)
    if height <= 0:
      return
    gt_map = image[keys.GT_SEGMENT_MAP][:height, :width]
    gt_segments = panoptic_quality.segments_from_arrays(
        image[keys.GT_SEGMENT_IDS], image[keys.GT_SEGMENT_CLASSES],
        image[keys.GT_SEGMENT_IS_CROWD])
    pred_map = prediction_writer.resize_to_original(
        image[keys.PANOPTIC_SEGMENT_MAP], image_info=info)
    classes = image[keys.SEGMENT_CLASSES_OUT]
    pred_segments = [{'id': int(s), 'category_id': int(classes[s - 1])}
                     for s in np.unique(pred_map) if s != 0]
    name = parser_lib.source_id_string(image[keys.GT_SOURCE_ID])
    self._pq.update(gt_map, gt_segments, pred_map, pred_segments, name=name)
    if keys.IMAGE in image and len(self._panels) < self._num_summary_images:
      self._panels.append(panels.evaluation_panel(
          image[keys.IMAGE], info, gt_map, image[keys.GT_SEGMENT_IDS],
          image[keys.GT_SEGMENT_CLASSES], image[keys.GT_SEGMENT_IS_CROWD],
          pred_map, classes, self._classes))
    if self._writer is not None:
      self._writer.add_segments(
          image_id=name, file_name=name,
          segment_map=image[keys.PANOPTIC_SEGMENT_MAP],
          segment_classes=classes, image_info=info)

  def result(self, global_step: Optional[tf.Tensor] = None
             ) -> Dict[str, Any]:
    """The evaluation's logs; writes the predictions and metrics JSON files.

    Args:
      global_step: int [], the training step, recorded in the metrics file.

    Returns:
      {'PQ_all', 'SQ_all', 'RQ_all', ... '_things', '_stuff': float, x100
       like panopticapi; 'PQ_per_class/<class name>': float;
       'image/eval_<i>': uint8 [1, h, w, 3] panels}.
    """
    result = self._pq.result()
    logs = {}
    for group in ('All', 'Things', 'Stuff'):
      for metric in ('pq', 'sq', 'rq'):
        logs[f'{metric.upper()}_{group.lower()}'] = (
            100.0 * result[group][metric])
    for class_id, values in result['per_class'].items():
      name = self._classes.names[int(class_id)]
      logs[f'PQ_per_class/{name}'] = 100.0 * values['pq']
    for index, panel in enumerate(self._panels):
      logs[f'image/eval_{index}'] = panel[np.newaxis]
    if self._writer is not None:
      self._writer.write_json()
    if self._metrics_path:
      record = {'step': int(global_step.numpy()) if global_step is not None
                else None}
      record.update({k: float(v) for k, v in logs.items()
                     if not k.startswith(('PQ_per_class/', 'image/'))})
      record['per_class'] = result['per_class']
      directory = os.path.dirname(self._metrics_path)
      if directory:
        tf.io.gfile.makedirs(directory)
      with tf.io.gfile.GFile(self._metrics_path, 'w') as f:
        json.dump(record, f, indent=1)
    return logs
