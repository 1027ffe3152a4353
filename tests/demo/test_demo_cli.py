"""End-to-end runs of the demo CLI on real-world inputs, and its exit codes."""

import json
import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import cv2
import numpy as np
from PIL import Image
import pytest

from maskconver import demo
from maskconver.data import label_map as label_map_lib
from maskconver.inference import demo_runner
from maskconver.inference import image_loading
from maskconver.visualization import class_info
from maskconver.visualization import overlay

import demo_models

FLAGS = flags.FLAGS


def run_cli(*args):
  """Runs demo.main with flags as on a command line; returns the exit code."""
  argv = ['maskconver-demo', '--progress=false'] + list(args)
  with flagsaver.flagsaver():
    return demo.main(FLAGS(argv))


def _photo(height, width):
  """uint8 RGB blocks (the calibration image, so that segments appear)."""
  return demo_models.calibration_image(height, width)


def _make_mixed_folder(folder):
  """One file of each real-world kind; returns {name: (height, width)}."""
  folder.mkdir()
  Image.fromarray(_photo(40, 60)[..., 0]).save(folder / 'gray.png')
  rgba = np.concatenate([_photo(30, 30), np.full((30, 30, 1), 128, np.uint8)],
                        axis=-1)
  Image.fromarray(rgba).save(folder / 'rgba.png')
  Image.fromarray(_photo(36, 48)).quantize(8).save(folder / 'palette.png')
  Image.fromarray((_photo(20, 20)[..., 1].astype(np.uint16) * 257)).save(
      folder / 'gray16.png')
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotate 90 degrees clockwise to display.
  Image.fromarray(_photo(20, 40)).save(folder / 'rotated.jpg', exif=exif)
  Image.fromarray(np.array([[[9, 99, 199]]], np.uint8)).save(folder / 'dot.png')
  (folder / 'notes.txt').write_text('shopping list')
  demo_models.write_video(folder / 'clip.mp4', 3)
  return {'gray': (40, 60), 'rgba': (30, 30), 'palette': (36, 48),
          'gray16': (20, 20), 'rotated': (40, 20), 'dot': (1, 1),
          'clip_000000': (24, 32), 'clip_000001': (24, 32),
          'clip_000002': (24, 32)}


def test_mixed_folder_continues_past_bad_file(tmp_path, tiny_models, capsys):
  sizes = _make_mixed_folder(tmp_path / 'in')
  out = tmp_path / 'out'
  code = run_cli(f'--model={tiny_models.tflite_path}',
                 f'--input={tmp_path / "in"}', f'--output_dir={out}')
  assert code == demo.EXIT_SOME_FAILED
  report = capsys.readouterr().err
  assert 'notes.txt' in report and 'not an image file' in report
  assert '1 failure(s)' in report
  results = json.loads((out / 'panoptic.json').read_text())
  assert sorted(a['file_name'] for a in results['annotations']) == sorted(
      f'{name}.png' for name in sizes)
  for name, size in sizes.items():
    png = np.asarray(Image.open(out / 'panoptic' / f'{name}.png'))
    assert png.shape == size + (3,), name
    if not name.startswith('clip'):
      drawn = np.asarray(Image.open(out / f'{name}_overlay.png'))
      height, width = overlay.display_size(*size)
      assert drawn.shape[0] >= height and drawn.shape[1] > width, name
  # The 1x1 image is drawn at 256x256 (plus the legend).
  assert np.asarray(Image.open(out / 'dot_overlay.png')).shape[0] == 256
  video = cv2.VideoCapture(str(out / 'clip_overlay.mp4'))
  assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
  video.release()


def _save_huge_photo(path):
  """An 8000x6000 JPEG of flat blocks."""
  huge = np.zeros((6000, 8000, 3), np.uint8)
  huge[:3000] = (200, 30, 30)
  huge[3000:, 5000:] = (220, 220, 220)
  Image.fromarray(huge).save(path, quality=80)
  return str(path)


def test_huge_photo_is_predicted_and_drawn_capped(tmp_path, predictors):
  image = image_loading.load_image(_save_huge_photo(tmp_path / 'huge.jpg'))
  prediction = predictors['tflite'].predict(image)
  assert prediction.image_size == (6000, 8000)
  drawn = demo_runner.render_prediction(
      image, prediction, class_info.ClassInfo.from_counts(7, 4),
      demo_runner.DemoOptions(max_display_side=800))
  # 6000x8000 drawn at 600x800, plus the legend on the right.
  assert drawn.shape[0] == 600 and 800 < drawn.shape[1] < 1100


@pytest.mark.slow
def test_huge_photo_through_the_cli(tmp_path, tiny_models):
  path = _save_huge_photo(tmp_path / 'huge.jpg')
  out = tmp_path / 'out'
  code = run_cli(f'--model={tiny_models.tflite_path}', f'--input={path}',
                 f'--output_dir={out}')
  assert code == demo.EXIT_OK
  drawn = Image.open(out / 'huge_overlay.png')
  assert drawn.size[1] == 1200 and 1600 < drawn.size[0] < 2000
  assert Image.open(out / 'panoptic' / 'huge.png').size == (8000, 6000)


def test_all_good_inputs_exit_zero_with_label_map(tmp_path, tiny_models):
  folder = tmp_path / 'in'
  folder.mkdir()
  Image.fromarray(_photo(32, 32)).save(folder / 'a.png')
  Image.fromarray(_photo(50, 40)).save(folder / 'b.jpg')
  classes = [{'id': 101 + i, 'name': f'kind{i}', 'isthing': int(i < 4)}
             for i in range(tiny_models.num_classes)]
  label_map_path = str(tmp_path / 'train_label_map.json')
  label_map_lib.LabelMap.from_coco_categories(classes).save(label_map_path)
  out = tmp_path / 'out'
  code = run_cli(f'--model={tiny_models.saved_model_dir}',
                 f'--input={folder}', f'--output_dir={out}',
                 f'--label_map={label_map_path}')
  assert code == demo.EXIT_OK
  results = json.loads((out / 'panoptic.json').read_text())
  category_ids = {s['category_id'] for a in results['annotations']
                  for s in a['segments_info']}
  # The segments are reported in the dataset's ids (training id + 101).
  assert category_ids and category_ids <= set(range(101, 108))
  assert (out / 'a_overlay.png').exists() and (out / 'b_overlay.png').exists()


def test_experiment_and_checkpoint_backend(tmp_path, tiny_models):
  image = tmp_path / 'a.png'
  Image.fromarray(_photo(32, 32)).save(image)
  out = tmp_path / 'out'
  code = run_cli(f'--experiment={demo_models.EXPERIMENT}',
                 f'--checkpoint_path={tiny_models.checkpoint_dir}',
                 f'--params_override={tiny_models.params_override}',
                 f'--input={image}', f'--output_dir={out}',
                 '--score_threshold=0.0')
  assert code == demo.EXIT_OK
  assert (out / 'a_overlay.png').exists()
  annotation, = json.loads((out / 'panoptic.json').read_text())['annotations']
  assert annotation['segments_info']


@pytest.mark.parametrize('args, message', [
    (['--input={empty}'], 'contains no files'),
    (['--input={missing}'], 'no such file or folder'),
    (['--input={image}', '--model={missing}'], 'no such file or directory'),
    (['--input={image}'], 'give --model'),
    (['--input={image}', '--model={tflite}', '--label_map={missing}'],
     'no such file'),
])
def test_usage_errors_exit_2(tmp_path, tiny_models, capsys, args, message):
  (tmp_path / 'empty').mkdir()
  image = tmp_path / 'a.png'
  Image.fromarray(_photo(8, 8)).save(image)
  paths = dict(empty=tmp_path / 'empty', missing=tmp_path / 'missing',
               image=image, tflite=tiny_models.tflite_path)
  args = [a.format(**paths) for a in args]
  code = run_cli(*args, f'--output_dir={tmp_path / "out"}')
  assert code == demo.EXIT_USAGE
  assert message in capsys.readouterr().err


def test_module_entry_point_exit_status(tmp_path):
  # The real `python -m maskconver.demo`: an empty folder is an error.
  (tmp_path / 'empty').mkdir()
  process = subprocess.run(
      [sys.executable, '-m', 'maskconver.demo',
       f'--input={tmp_path / "empty"}', f'--output_dir={tmp_path / "out"}',
       '--model=unused'],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert process.returncode == demo.EXIT_USAGE
  assert 'contains no files' in process.stderr
