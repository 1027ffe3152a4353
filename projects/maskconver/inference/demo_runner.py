"""Runs a `Predictor` over images and videos: overlays and COCO results.

The work behind `maskconver.demo`: for every image or video frame it writes
`<output_dir>/<name>_overlay.png` (or, for videos, frames of
`<output_dir>/<video>_overlay.mp4`) and the COCO panoptic PNG, then
`<output_dir>/panoptic.json`. Whatever goes wrong with one input is recorded
with its reason and the others are still processed.
"""

import dataclasses
import os
import sys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image
import tqdm

from maskconver.data import label_map as label_map_lib
from maskconver.evaluation import prediction_writer
from maskconver.inference import image_loading
from maskconver.inference import media_inputs
from maskconver.inference import predictor as predictor_lib
from maskconver.visualization import class_info as class_info_lib
from maskconver.visualization import legend as legend_lib
from maskconver.visualization import overlay

# Classes of a model that does not tell its class count, without a label map.
UNNAMED_CLASS_LIMIT = 1000
_VIDEO_FOURCC = 'mp4v'


@dataclasses.dataclass
class DemoOptions:
  """How the demo draws and what it writes.

  Attributes:
    score_threshold: drop segments scoring below; None keeps all.
    alpha: opacity of the segment colours.
    max_display_side: cap of the overlays' long side.
    video_stride: process every n-th video frame.
    max_frames: frames per video at most; None for all.
    frame_overlays: write an overlay PNG per video frame too.
    progress: show tqdm progress bars.
    max_image_pixels: refuse larger images (checked on the file header,
      before decoding); None keeps Pillow's limit (about 179 MP).
  """
  score_threshold: Optional[float] = None
  alpha: float = overlay.DEFAULT_ALPHA
  max_display_side: int = overlay.MAX_DISPLAY_SIDE
  video_stride: int = 1
  max_frames: Optional[int] = None
  frame_overlays: bool = False
  progress: bool = True
  max_image_pixels: Optional[int] = None


@dataclasses.dataclass
class DemoSummary:
  """What a run did.

  Attributes:
    processed: names of the images and frames written.
    failures: (input path, possibly with a frame, reason) of each failure.
    videos: paths of the overlay videos written.
    json_path: the COCO panoptic results JSON.
  """
  processed: List[str] = dataclasses.field(default_factory=list)
  failures: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
  videos: List[str] = dataclasses.field(default_factory=list)
  json_path: Optional[str] = None

  def report(self) -> str:
    lines = [f'Processed {len(self.processed)} image(s) / frame(s); '
             f'{len(self.failures)} failure(s).']
    for where, reason in self.failures:
      lines.append(f'  FAILED {where}: {reason}')
    if self.json_path:
      lines.append(f'COCO panoptic results: {self.json_path}')
    return '\n'.join(lines)


def resolve_classes(label_map_path: Optional[str],
                    predictor: predictor_lib.Predictor
                    ) -> class_info_lib.ClassInfo:
  """Classes from the label map, else named by id.

  Raises:
    ValueError: if the label map is unreadable or disagrees with the model's
      class counts.
  """
  if label_map_path:
    classes = class_info_lib.ClassInfo.from_label_map(
        label_map_lib.LabelMap.load(label_map_path))
    counts = (predictor.num_classes, predictor.num_thing_classes)
    if counts[0] is not None and counts != (classes.num_classes,
                                            classes.num_thing_classes):
      raise ValueError(
          f'--label_map={label_map_path}: {classes.num_classes} classes '
          f'({classes.num_thing_classes} things) but the model has '
          f'{counts[0]} ({counts[1]} things)')
    return classes
  if predictor.num_classes is not None:
    return class_info_lib.ClassInfo.from_counts(predictor.num_classes,
                                                predictor.num_thing_classes)
  return class_info_lib.ClassInfo.from_counts(UNNAMED_CLASS_LIMIT, None)


def _thing_flags(classes: class_info_lib.ClassInfo,
                 prediction: predictor_lib.PanopticPrediction) -> np.ndarray:
  """Per-class thing flags, completed by the model's own segment flags."""
  is_thing = np.asarray(classes.is_thing, bool).copy()
  thing_classes = prediction.segment_classes[prediction.segment_is_thing]
  is_thing[thing_classes[(thing_classes >= 0) &
                         (thing_classes < len(is_thing))]] = True
  return is_thing


def render_prediction(image: np.ndarray,
                      prediction: predictor_lib.PanopticPrediction,
                      classes: class_info_lib.ClassInfo,
                      options: DemoOptions,
                      legend_width: Optional[int] = None) -> np.ndarray:
  """The overlay of one prediction, long side <= options.max_display_side.

  Args:
    image: uint8 [height, width, 3], the image the prediction is for.
    prediction: its prediction.
    classes: names and colours.
    options: alpha and display size.
    legend_width: fixed legend width (videos); None fits the legend.

  Returns:
    uint8 [display height (or the legend's), display width + legend, 3].
  """
  height, width = overlay.display_size(*image.shape[:2],
                                       max_side=options.max_display_side)
  if (height, width) != image.shape[:2]:
    shrink = height < image.shape[0]
    image = cv2.resize(image, (width, height),
                       interpolation=cv2.INTER_AREA if shrink
                       else cv2.INTER_NEAREST)
  category, instance, _ = prediction.maps_at(height, width)
  return overlay.render_overlay(
      image, category, instance, classes.names,
      _thing_flags(classes, prediction), classes.colors, alpha=options.alpha,
      legend_width=legend_width)


def _save_png(path: str, image: np.ndarray) -> None:
  Image.fromarray(image).save(path, format='PNG')


class _Runner:
  """Processes inputs one by one, recording failures."""

  def __init__(self, predictor: predictor_lib.Predictor,
               classes: class_info_lib.ClassInfo, output_dir: str,
               options: DemoOptions):
    self._predictor = predictor
    self._classes = classes
    self._output_dir = output_dir
    self._options = options
    self._writer = prediction_writer.PanopticPredictionWriter(
        output_dir, category_ids=classes.category_ids,
        is_thing=classes.is_thing)
    self.summary = DemoSummary()

  def _output_path(self, name: str, suffix: str) -> str:
    """`<output_dir>/<name><suffix>`, creating the name's sub-folders.

    Names come from `media_inputs` (relative paths without '..'), so the
    path is inside the output folder.
    """
    path = os.path.join(self._output_dir, *f'{name}{suffix}'.split('/'))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

  def _fail(self, where: str, error: Exception) -> None:
    reason = f'{type(error).__name__}: {error}'
    self.summary.failures.append((where, reason))
    tqdm.tqdm.write(f'FAILED {where}: {reason}', file=sys.stderr)

  def _predict_and_write(self, name: str,
                         image: np.ndarray) -> predictor_lib.PanopticPrediction:
    prediction = self._predictor.predict(image)
    if self._options.score_threshold is not None:
      prediction = prediction.filter_by_score(self._options.score_threshold)
    self._writer.add_segments(
        image_id=name, file_name=name + '.png',
        segment_map=prediction.segment_map,
        segment_classes=prediction.segment_classes,
        image_info=prediction.image_info)
    return prediction

  def process_image(self, item: media_inputs.InputFile) -> None:
    image = image_loading.load_image(
        item.path, max_pixels=self._options.max_image_pixels)
    prediction = self._predict_and_write(item.name, image)
    _save_png(self._output_path(item.name, '_overlay.png'),
              render_prediction(image, prediction, self._classes,
                                self._options))
    self.summary.processed.append(item.name)

  def process_video(self, item: media_inputs.InputFile) -> None:
    options = self._options
    count, fps = media_inputs.video_properties(item.path)
    total = None if count is None else -(-count // options.video_stride)
    if total is not None and options.max_frames is not None:
      total = min(total, options.max_frames)
    # Every frame of the video gets the same legend width, hence one size.
    legend_width = None
    video_path = self._output_path(item.name, '_overlay.mp4')
    video = None
    frame_size = None
    bar = tqdm.tqdm(total=total, desc=item.name, unit='frame', leave=False,
                    disable=not options.progress)
    try:
      for index, frame in media_inputs.read_video_frames(
          item.path, options.video_stride, options.max_frames):
        name = media_inputs.frame_name(item.name, index)
        bar.update(1)
        try:
          prediction = self._predict_and_write(name, frame)
          if legend_width is None:
            height, width = overlay.display_size(
                *frame.shape[:2], max_side=options.max_display_side)
            font_size = legend_lib.default_font_size(height, width)
            legend_width = legend_lib.legend_width(
                [f'{n} (99)' for n in self._classes.names], font_size)
          drawn = render_prediction(frame, prediction, self._classes, options,
                                    legend_width=legend_width)
        except Exception as e:  # pylint: disable=broad-except
          # A bad frame is reported; the rest of the video is processed.
          self._fail(f'{item.path} frame {index}', e)
          continue
        if frame_size is None:
          frame_size = drawn.shape[:2]
          video = cv2.VideoWriter(
              video_path, cv2.VideoWriter_fourcc(*_VIDEO_FOURCC),
              fps / options.video_stride, (frame_size[1], frame_size[0]))
          if not video.isOpened():
            raise OSError(f'{video_path}: OpenCV cannot write an '
                          f'{_VIDEO_FOURCC} video')
        canvas = np.zeros(frame_size + (3,), np.uint8)
        rows = min(frame_size[0], drawn.shape[0])
        cols = min(frame_size[1], drawn.shape[1])
        canvas[:rows, :cols] = drawn[:rows, :cols]
        video.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        if options.frame_overlays:
          _save_png(self._output_path(name, '_overlay.png'),
                    drawn)
        self.summary.processed.append(name)
    finally:
      bar.close()
      if video is not None:
        video.release()
        self.summary.videos.append(video_path)

  def run(self, inputs: Sequence[media_inputs.InputFile]) -> DemoSummary:
    for item in tqdm.tqdm(inputs, desc='inputs', unit='file',
                          disable=not self._options.progress or
                          len(inputs) < 2):
      try:
        if item.is_video:
          self.process_video(item)
        else:
          self.process_image(item)
      except Exception as e:  # pylint: disable=broad-except
        # Whatever breaks one input is reported; the others are processed.
        self._fail(item.path, e)
    self.summary.json_path = self._writer.write_json()
    return self.summary


def run_demo(inputs: Sequence[media_inputs.InputFile],
             predictor: predictor_lib.Predictor,
             classes: class_info_lib.ClassInfo,
             output_dir: str,
             options: Optional[DemoOptions] = None) -> DemoSummary:
  """Segments every input, writes overlays and COCO panoptic results.

  Args:
    inputs: from `media_inputs.collect_inputs`.
    predictor: the model.
    classes: names, colours and category ids (see `resolve_classes`).
    output_dir: created if needed.
    options: drawing and video options.

  Returns:
    What was processed and what failed (with reasons).
  """
  os.makedirs(output_dir, exist_ok=True)
  runner = _Runner(predictor, classes, output_dir, options or DemoOptions())
  return runner.run(inputs)


