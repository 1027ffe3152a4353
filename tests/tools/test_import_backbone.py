"""Tests of import_backbone: ImageNet ResNet-50 weights onto Model Garden's.

Random weights in torchvision's and in Keras Applications' layouts are
imported, and the backbone's L2..L5 outputs are compared with a NumPy forward
pass of the same weights written here from the architectures' definitions
(PyTorch's symmetric padding, v1.5 or v1 strides, Keras' caffe input), in
float64.

Tolerance: each stage's largest absolute difference, divided by the stage's
largest absolute value, is at most 1e-3. TensorFlow computes in float32: a
dot product of n terms (n <= 4608 here) is off by about sqrt(n) * 6e-8 of
its terms' magnitudes, whatever summation order, blocking or FMA use the x86
kernels (SSE, AVX2, AVX-512) choose; batch norms whose variance is near
1e-5..1e-3 (as here, and in trained networks) amplify that by up to
1 / sqrt(var + 1e-3) ~ 30, and 53 layers compound it: measured 2e-6 (L2) to
5e-5 (L5), 20x below the tolerance. A wrong mapping is far above it:
epsilon left uncompensated 0.46, PyTorch's padding at an even size 0.8,
Keras' v1 strides 0.8 (printed with `pytest -s`).
"""

import json
import os
import subprocess
import sys

from absl import flags
import h5py
import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf
import tf_keras

from official.core import task_factory

from maskconver import experiment_loading
from maskconver.ops import image_ops
from maskconver.tools import import_backbone

EXPERIMENT = 'maskconver_r50_coco'
BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
TOLERANCE = 1e-3
# 32k+1: Model Garden's 'same' padding is symmetric at every strided layer.
ODD_SIZE = 65
EVEN_SIZE = 64
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


# ------------------------------------------------- weights in the layouts ---


def _torchvision_shapes():
  """(name, shape) of torchvision's resnet50 state dict, in its order."""
  def bn(name, channels):
    return [(f'{name}.weight', (channels,)), (f'{name}.bias', (channels,)),
            (f'{name}.running_mean', (channels,)),
            (f'{name}.running_var', (channels,)),
            (f'{name}.num_batches_tracked', ())]
  shapes = [('conv1.weight', (64, 3, 7, 7))] + bn('bn1', 64)
  in_channels = 64
  for group, (repeats, width) in enumerate(zip(BLOCKS, WIDTHS)):
    for block in range(repeats):
      prefix = f'layer{group + 1}.{block}'
      shapes += [(f'{prefix}.conv1.weight', (width, in_channels, 1, 1))]
      shapes += bn(f'{prefix}.bn1', width)
      shapes += [(f'{prefix}.conv2.weight', (width, width, 3, 3))]
      shapes += bn(f'{prefix}.bn2', width)
      shapes += [(f'{prefix}.conv3.weight', (4 * width, width, 1, 1))]
      shapes += bn(f'{prefix}.bn3', 4 * width)
      if block == 0:
        shapes += [(f'{prefix}.downsample.0.weight',
                    (4 * width, in_channels, 1, 1))]
        shapes += bn(f'{prefix}.downsample.1', 4 * width)
      in_channels = 4 * width
  return shapes + [('fc.weight', (1000, 2048)), ('fc.bias', (1000,))]


def random_state_dict(seed: int = 0):
  """A float32 state dict with torchvision resnet50's names and shapes.

  Kernels are He-scaled, with one output channel in ten scaled down 30x:
  their batch-norm variances come out near 1e-3, where the epsilon
  compensation matters. The last batch norm of each residual branch has a
  small gamma. Running statistics are placeholders: see `calibrated`.
  """
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in _torchvision_shapes():
    if name.endswith('num_batches_tracked'):
      value = np.array(1000, np.int64)
    elif len(shape) == 4:
      value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))
      value[rng.uniform(size=shape[0]) < 0.1] /= 30.0
    elif name.endswith('running_var'):
      value = np.ones(shape)
    elif name.endswith('running_mean'):
      value = np.zeros(shape)
    elif name.endswith('.weight') and len(shape) == 1:
      last = name.endswith(('bn3.weight', 'downsample.1.weight'))
      value = rng.uniform(0.1, 0.4, size=shape) if last else rng.uniform(
          0.5, 1.5, size=shape)
    else:
      value = rng.normal(scale=0.1, size=shape)
    state[name] = value.astype(value.dtype if value.dtype == np.int64
                               else np.float32)
  return state


def calibrated(state, x, seed: int = 2, **reference_kwargs):
  """`state` with running statistics near those of the activations on `x`.

  As in a trained network, each batch norm's running mean and variance are
  its input's (mean + 0.1 std noise, variance times 0.7..1.4), so the
  activations stay of order 1 through the 16 blocks.
  """
  state = dict(state)
  reference_stages(state, x, epsilon=1e-5, padding='symmetric',
                   calibrate_rng=np.random.default_rng(seed),
                   **reference_kwargs)
  return state


def random_biases(state, seed: int = 1):
  """Conv biases (Keras Applications' convs have them) for every conv."""
  rng = np.random.default_rng(seed)
  return {name[:-len('.weight')]: rng.normal(scale=0.1, size=value.shape[0])
          .astype(np.float32)
          for name, value in state.items() if value.ndim == 4}


def _keras_name(torch_name: str) -> str:
  """Keras Applications' layer of a torchvision conv / batch norm name."""
  if torch_name in ('conv1', 'bn1'):
    return 'conv1_conv' if torch_name == 'conv1' else 'conv1_bn'
  layer, block, rest = torch_name.split('.', 2)
  prefix = f'conv{int(layer[len("layer"):]) + 1}_block{int(block) + 1}'
  part = {'conv1': '1_conv', 'bn1': '1_bn', 'conv2': '2_conv', 'bn2': '2_bn',
          'conv3': '3_conv', 'bn3': '3_bn', 'downsample.0': '0_conv',
          'downsample.1': '0_bn'}[rest]
  return f'{prefix}_{part}'


def keras_layers(state, biases, include_top: bool = False):
  """[(layer name, [(weight name, array)])] in Keras ResNet50's order."""
  layers = [('input_1', []), ('conv1_pad', [])]
  def conv_bn(torch_conv, torch_bn):
    conv, bn = _keras_name(torch_conv), _keras_name(torch_bn)
    kernel = state[f'{torch_conv}.weight'].transpose(2, 3, 1, 0)
    return [(conv, [('kernel', kernel), ('bias', biases[torch_conv])]),
            (bn, [(k, state[f'{torch_bn}.{t}']) for k, t in (
                ('gamma', 'weight'), ('beta', 'bias'),
                ('moving_mean', 'running_mean'),
                ('moving_variance', 'running_var'))])]
  layers += conv_bn('conv1', 'bn1')
  layers += [('conv1_relu', []), ('pool1_pad', []), ('pool1_pool', [])]
  for group, repeats in enumerate(BLOCKS):
    for block in range(repeats):
      prefix = f'layer{group + 1}.{block}'
      first, second = (conv_bn(f'{prefix}.conv{i}', f'{prefix}.bn{i}')
                       for i in (1, 2))
      third = conv_bn(f'{prefix}.conv3', f'{prefix}.bn3')
      layers += first + second
      if block == 0:
        # Keras' topological order: 0_conv, 3_conv, 0_bn, 3_bn.
        shortcut = conv_bn(f'{prefix}.downsample.0',
                           f'{prefix}.downsample.1')
        layers += [shortcut[0], third[0], shortcut[1], third[1]]
      else:
        layers += third
  if include_top:
    layers += [('avg_pool', []), ('predictions', [
        ('kernel', state['fc.weight'].T), ('bias', state['fc.bias'])])]
  return layers


def write_keras_h5(path, layers):
  """A weights file as Keras' save_weights writes it (h5 format)."""
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode('utf8') for n, _ in layers]
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.20.1'
    for layer, weights in sorted(layers):
      group = f.create_group(layer)
      names = [f'{layer}/{w}:0' for w, _ in weights]
      group.attrs['weight_names'] = [n.encode('utf8') for n in names]
      for name, (_, value) in zip(names, weights):
        group.create_dataset(name, data=value)


# ------------------------------------------------ the NumPy reference ---


def _pad(x, kernel, stride, padding, value=0.0):
  """Pads NHWC `x` for a k x k window: 'symmetric' (PyTorch) or 'same' (TF)."""
  def amounts(size):
    if padding == 'symmetric':
      return (kernel - 1) // 2, (kernel - 1) // 2
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
  pads = ((0, 0), amounts(x.shape[1]), amounts(x.shape[2]), (0, 0))
  if np.ndim(value) == 0:
    return np.pad(x, pads, constant_values=value)
  return np.pad(x - value, pads) + value


def _windows(x, kernel, stride):
  """[n, h_out, w_out, c, k, k] windows of NHWC `x`."""
  view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel),
                                                  axis=(1, 2))
  return view[:, ::stride, ::stride]


def _conv(x, weight_oihw, bias, stride, padding, pad_value=0.0):
  kernel = weight_oihw.shape[-1]
  if kernel > 1:
    x = _pad(x, kernel, stride, padding, pad_value)
  out = np.tensordot(_windows(x, kernel, stride), weight_oihw,
                     axes=([3, 4, 5], [1, 2, 3]))
  return out + bias


def _max_pool(x, padding):
  return _windows(_pad(x, 3, 2, padding, -np.inf), 3, 2).max(axis=(4, 5))


def reference_stages(state, x, *, epsilon, padding, v1=False, biases=None,
                     stem_pad_value=0.0, calibrate_rng=None):
  """{'2'..'5'}: float64 NHWC outputs of a ResNet-50 in inference mode.

  Args:
    state: weights in torchvision's names (OIHW kernels).
    x: float64 [n, h, w, 3], the network's input.
    epsilon: the batch norms' epsilon.
    padding: 'symmetric' (PyTorch, Keras) or 'same' (TensorFlow).
    v1: stride on the first 1x1 conv (Keras) instead of the 3x3 (v1.5).
    biases: conv biases by conv name (Keras), or None.
    stem_pad_value: per-channel value the stem conv pads its input with.
    calibrate_rng: if given, each batch norm first sets its running
      statistics in `state` from its input (see `calibrated`).
  """
  def conv(x, name, stride, pad_value=0.0):
    bias = 0.0 if biases is None else biases[name].astype(np.float64)
    return _conv(x, state[f'{name}.weight'].astype(np.float64), bias,
                 stride, padding, pad_value)

  def bn(x, name):
    if calibrate_rng is not None:
      mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
      noise = calibrate_rng.normal(size=mean.shape)
      state[f'{name}.running_mean'] = (mean + 0.1 * np.sqrt(var) * noise
                                       ).astype(np.float32)
      state[f'{name}.running_var'] = (var * calibrate_rng.uniform(
          0.7, 1.4, size=var.shape)).astype(np.float32)
    g, b, m, v = (state[f'{name}.{k}'].astype(np.float64) for k in (
        'weight', 'bias', 'running_mean', 'running_var'))
    return g * (x - m) / np.sqrt(v + epsilon) + b

  relu = lambda t: np.maximum(t, 0.0)
  x = _max_pool(relu(bn(conv(x, 'conv1', 2, stem_pad_value), 'bn1')),
                padding)
  stages = {}
  for group, repeats in enumerate(BLOCKS):
    for block in range(repeats):
      stride = 2 if group > 0 and block == 0 else 1
      p = f'layer{group + 1}.{block}'
      y = relu(bn(conv(x, f'{p}.conv1', stride if v1 else 1), f'{p}.bn1'))
      y = relu(bn(conv(y, f'{p}.conv2', 1 if v1 else stride), f'{p}.bn2'))
      y = bn(conv(y, f'{p}.conv3', 1), f'{p}.bn3')
      if block == 0:
        x = bn(conv(x, f'{p}.downsample.0', stride), f'{p}.downsample.1')
      x = relu(y + x)
    stages[str(group + 2)] = x
  return stages


def _normalized(rgb):
  """The backbone's input: this project's normalization of 0..255 RGB."""
  return ((rgb - np.array(image_ops.MEAN_RGB)) /
          np.array(image_ops.STDDEV_RGB))


def _relative_errors(outputs, reference):
  return {level: float(np.max(np.abs(np.asarray(outputs[level], np.float64)
                                     - reference[level])) /
                       np.max(np.abs(reference[level])))
          for level in reference}


def _image(size, seed=3):
  return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3))


def _calibration_images():
  return np.concatenate([_image(ODD_SIZE, seed) for seed in (10, 11)])


def _caffe(rgb):
  """Keras Applications' 'caffe' input: BGR, mean subtracted, unscaled."""
  return rgb[..., ::-1] - CAFFE_MEAN_BGR


def _assert_close(errors, tolerance=TOLERANCE):
  assert all(e < tolerance for e in errors.values()), errors


# ------------------------------------------------------------ fixtures ---


@pytest.fixture(scope='module')
def model_config():
  return experiment_loading.load_experiment(EXPERIMENT).task.model


@pytest.fixture(scope='module')
def state():
  """Random weights calibrated on the backbone's (normalized) input."""
  return calibrated(random_state_dict(), _normalized(_calibration_images()))


@pytest.fixture(scope='module')
def torchvision_import(tmp_path_factory, state):
  """The CLI run on a random torchvision state dict: (output dir, stdout)."""
  root = tmp_path_factory.mktemp('torchvision')
  weights = str(root / 'resnet50.safetensors')
  safetensors.numpy.save_file(state, weights)
  output = str(root / 'imported')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  result = subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.import_backbone',
       '--source=torchvision', f'--weights={weights}',
       f'--experiment={EXPERIMENT}', f'--output={output}'],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return output, result.stdout


@pytest.fixture(scope='module')
def torchvision_backbone(torchvision_import, model_config):
  """A fresh backbone restored from the CLI's checkpoint."""
  backbone = import_backbone.build_backbone(model_config)
  tf.train.Checkpoint(backbone=backbone).read(
      tf.train.latest_checkpoint(torchvision_import[0])
  ).assert_existing_objects_matched()
  return backbone


# --------------------------------------------------------------- tests ---


def test_cli_reports_every_variable_assigned_and_what_it_ignored(
    torchvision_import):
  output, stdout = torchvision_import
  # 265 variables of Model Garden's ResNet-50 from 265 of torchvision's 320
  # tensors; 53 num_batches_tracked and fc.weight / fc.bias are left.
  assert 'assigned 265 backbone variables (each once) from 265 of the 320 ' \
         'tensors' in stdout
  assert '53 num_batches_tracked: a step counter' in stdout
  assert '2 fc: the ImageNet classifier' in stdout
  assert 'source 1e-05, backbone 0.001' in stdout
  assert sorted(os.listdir(output)) == [
      'backbone.data-00000-of-00001', 'backbone.index', 'checkpoint',
      'import_manifest.json']
  with open(os.path.join(output, 'import_manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['num_variables'] == 265
  assert manifest['ignored']['fc: the ImageNet classifier'] == [
      'fc.bias', 'fc.weight']


def test_torchvision_stages_equal_the_numpy_reference(torchvision_backbone,
                                                      state):
  # At 65x65 'same' pads symmetrically, as PyTorch does: the same function.
  rgb = _image(ODD_SIZE)
  outputs = torchvision_backbone(tf.constant(_normalized(rgb), tf.float32),
                                 training=False)
  reference = reference_stages(state, _normalized(rgb), epsilon=1e-5,
                               padding='symmetric')
  errors = _relative_errors(outputs, reference)
  print(f'torchvision, {ODD_SIZE}x{ODD_SIZE}, relative errors: {errors}')
  _assert_close(errors)
  # Carrying gamma unchanged would compute the function with epsilon 1e-3.
  unscaled = _relative_errors(outputs, reference_stages(
      state, _normalized(rgb), epsilon=1e-3, padding='symmetric'))
  print(f'epsilon 1e-3 instead of 1e-5: {unscaled}')
  assert all(e > 0.1 for e in unscaled.values()), unscaled
  assert {k: v.shape[1] for k, v in reference.items()} == {
      '2': 17, '3': 9, '4': 5, '5': 3}


def test_even_sizes_pad_like_tf_same_not_like_pytorch(torchvision_backbone,
                                                      state):
  # At 64x64 the backbone computes the reference with TF's 'same' padding
  # (one less row and column on the top/left), not PyTorch's.
  rgb = _image(EVEN_SIZE)
  outputs = torchvision_backbone(tf.constant(_normalized(rgb), tf.float32),
                                 training=False)
  same = reference_stages(state, _normalized(rgb), epsilon=1e-5,
                          padding='same')
  symmetric = reference_stages(state, _normalized(rgb), epsilon=1e-5,
                               padding='symmetric')
  errors = _relative_errors(outputs, same)
  mismatch = _relative_errors(outputs, symmetric)
  print(f'{EVEN_SIZE}x{EVEN_SIZE}: vs TF same padding {errors}, vs PyTorch '
        f'padding {mismatch}')
  _assert_close(errors)
  assert all(e > 0.05 for e in mismatch.values()), mismatch


def test_task_initialize_loads_the_imported_backbone(torchvision_import,
                                                     torchvision_backbone):
  params = experiment_loading.load_experiment(EXPERIMENT, params_override=(
      'task.model.input_size=[64, 64, 3],'
      'task.model.decoder.convnext_unet.num_blocks=[1, 1, 1],'
      'task.model.decoder.convnext_unet.num_filters=[32, 32, 32],'
      'task.model.center_head.num_filters=32,'
      'task.model.mask_head.num_filters=32,'
      'task.model.embedding_size=16,'
      'task.model.num_instances=8,'
      f'task.init_checkpoint={torchvision_import[0]}'))
  assert params.task.init_checkpoint_modules == ['backbone']
  task = task_factory.get_task(params.task)
  model = task.build_model()
  before = [v.numpy() for v in model.backbone.variables]
  task.initialize(model)
  imported = torchvision_backbone.variables
  assert len(model.backbone.variables) == len(imported) == 265
  changed = 0
  for variable, expected, old in zip(model.backbone.variables, imported,
                                     before):
    np.testing.assert_array_equal(variable.numpy(), expected.numpy(),
                                  err_msg=variable.name)
    changed += not np.array_equal(old, expected.numpy())
  # The random weights differ from a fresh backbone's everywhere.
  assert changed == 265


@pytest.fixture(scope='module')
def keras_h5(tmp_path_factory):
  """(path, weights, biases): random weights calibrated on caffe input."""
  raw = random_state_dict()
  biases = random_biases(raw)
  state = calibrated(raw, _caffe(_calibration_images()), biases=biases,
                     v1=True)
  path = str(tmp_path_factory.mktemp('keras') / 'resnet50_notop.h5')
  write_keras_h5(path, keras_layers(state, biases))
  return path, state, biases


def test_keras_h5_loads_into_keras_applications_and_matches_reference_v1(
    keras_h5):
  # The h5 file is one Keras Applications' ResNet50 loads, and the NumPy
  # reference in Keras' semantics (caffe input, biases, v1) computes it.
  path, state, biases = keras_h5
  keras = tf_keras.applications.ResNet50(
      weights=None, include_top=False, input_shape=(ODD_SIZE, ODD_SIZE, 3))
  keras.load_weights(path)
  ends = ['conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out',
          'conv5_block3_out']
  stages = tf_keras.Model(keras.input,
                          {str(i + 2): keras.get_layer(n).output
                           for i, n in enumerate(ends)})
  rgb = _image(ODD_SIZE)
  caffe = _caffe(rgb)
  outputs = stages(tf.constant(caffe, tf.float32), training=False)
  reference = reference_stages(state, caffe, epsilon=1.001e-5,
                               padding='symmetric', v1=True, biases=biases)
  _assert_close(_relative_errors(outputs, reference))


def test_keras_import_equals_the_reference_with_v15_strides(
    keras_h5, model_config):
  path, state, biases = keras_h5
  backbone = import_backbone.build_backbone(model_config)
  tensors = import_backbone.read_weights('keras', path)
  plan, summary = import_backbone.plan_assignments(backbone, 50, 'keras',
                                                   tensors, path)
  import_backbone.assign(plan)
  assert summary.num_variables == 265 and summary.folded_biases == 53
  assert summary.num_used == summary.num_tensors == 318
  rgb = _image(ODD_SIZE)
  outputs = backbone(tf.constant(_normalized(rgb), tf.float32),
                     training=False)
  caffe = _caffe(rgb)
  # The backbone's zero padding is the mean pixel: in caffe units,
  # MEAN_RGB - caffe mean (under 0.5 per channel; Keras pads 0).
  mean_pixel = np.array(image_ops.MEAN_RGB)[::-1] - CAFFE_MEAN_BGR
  reference = reference_stages(state, caffe, epsilon=1.001e-5,
                               padding='symmetric', biases=biases,
                               stem_pad_value=mean_pixel)
  errors = _relative_errors(outputs, reference)
  _assert_close(errors)
  v1 = reference_stages(state, caffe, epsilon=1.001e-5, padding='symmetric',
                        v1=True, biases=biases, stem_pad_value=mean_pixel)
  # v1 and v1.5 share L2 (no strided block); from L3 on they differ.
  v1_errors = _relative_errors(outputs, v1)
  zero_padded = _relative_errors(outputs, reference_stages(
      state, caffe, epsilon=1.001e-5, padding='symmetric', biases=biases))
  print(f'keras, {ODD_SIZE}x{ODD_SIZE}: vs v1.5 reference {errors}, vs '
        f'Keras\' own v1 {v1_errors}, vs v1.5 with Keras\' zero stem '
        f'padding {zero_padded}')
  assert v1_errors['2'] < TOLERANCE, v1_errors
  assert all(v1_errors[level] > 0.05 for level in '345'), v1_errors


# -------------------------------------------------------------- errors ---


def test_import_defines_no_flags():
  # Flags exist only when run as a program (run()), so other commands can
  # import this module.
  assert not flags.FLAGS.get_flags_for_module(import_backbone.__name__)


@pytest.fixture(scope='module')
def bare_backbone(model_config):
  return import_backbone.build_backbone(model_config)


def _plan_error(backbone, tensors, source='torchvision'):
  with pytest.raises(import_backbone.BackboneImportError) as e:
    import_backbone.plan_assignments(backbone, 50, source, tensors, 'w.file')
  return str(e.value)


def test_a_missing_tensor_is_named_with_its_variable(bare_backbone, state):
  tensors = dict(state)
  del tensors['layer3.2.bn1.running_var']
  message = _plan_error(bare_backbone, tensors)
  assert 'tensor layer3.2.bn1.running_var (for ' in message
  assert 'moving_variance' in message and 'w.file' in message


def test_an_extra_tensor_is_named(bare_backbone, state):
  tensors = dict(state, **{'layer5.0.conv1.weight': np.zeros([1])})
  message = _plan_error(bare_backbone, tensors)
  assert 'no place for: layer5.0.conv1.weight' in message


def test_a_wrong_shape_is_named(bare_backbone, state):
  tensors = dict(state)
  tensors['layer2.0.conv2.weight'] = np.zeros([128, 128, 1, 9], np.float32)
  message = _plan_error(bare_backbone, tensors)
  assert ('tensor layer2.0.conv2.weight has shape [128, 128, 1, 9], '
          in message)
  assert 'needs [128, 128, 3, 3]' in message


def test_torchvision_names_do_not_pass_as_keras(bare_backbone, state):
  message = _plan_error(bare_backbone, state, source='keras')
  assert 'tensor conv1_conv/kernel' in message and 'is missing' in message


def test_bad_files_sources_and_outputs_are_named(tmp_path, model_config):
  missing = str(tmp_path / 'nope.safetensors')
  with pytest.raises(import_backbone.BackboneImportError,
                     match=f'--weights={missing}: no such file'):
    import_backbone.read_weights('torchvision', missing)
  pth = tmp_path / 'resnet50.pth'
  pth.write_bytes(b'x')
  with pytest.raises(import_backbone.BackboneImportError,
                     match='reads .safetensors files; convert it first'):
    import_backbone.read_weights('torchvision', str(pth))
  garbage = tmp_path / 'garbage.safetensors'
  garbage.write_bytes(b'0123456789abcdef')
  with pytest.raises(import_backbone.BackboneImportError,
                     match='not a readable .safetensors file'):
    import_backbone.read_weights('torchvision', str(garbage))
  with pytest.raises(import_backbone.BackboneImportError,
                     match='--source=caffe: choose one of torchvision, keras'):
    import_backbone.read_weights('caffe', str(garbage))
  not_h5 = tmp_path / 'weights.h5'
  not_h5.write_bytes(b'0123456789abcdef')
  with pytest.raises(import_backbone.BackboneImportError,
                     match='not a readable HDF5 file'):
    import_backbone.read_weights('keras', str(not_h5))
  mobile = experiment_loading.load_experiment('maskconver_mnmh_coco_640')
  with pytest.raises(import_backbone.BackboneImportError,
                     match="backbone.type is 'mobilenet'"):
    import_backbone.check_backbone_config(mobile.task.model,
                                          'maskconver_mnmh_coco_640')
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'old').write_text('x')
  with pytest.raises(import_backbone.BackboneImportError,
                     match='is not empty'):
    import_backbone.check_output(str(tmp_path / 'full'))


def test_a_failed_import_writes_nothing(tmp_path, model_config, state):
  tensors = dict(state)
  del tensors['conv1.weight']
  weights = str(tmp_path / 'broken.safetensors')
  safetensors.numpy.save_file(tensors, weights)
  output = str(tmp_path / 'out')
  with pytest.raises(import_backbone.BackboneImportError,
                     match='tensor conv1.weight'):
    import_backbone.import_backbone('torchvision', weights, model_config,
                                    output, EXPERIMENT)
  assert not os.path.exists(output)


# ------------------------------------------------------------ training ---


@pytest.mark.slow
def test_twenty_training_steps_start_from_the_imported_backbone(
    torchvision_import, training_records, tmp_path):
  # The R50 recipe's ResNet-50 with a small decoder and heads, on the
  # synthetic records at 64x64, batch 2, through the real trainer.
  overrides = {
      'runtime': {'distribution_strategy': 'one_device', 'num_gpus': 0,
                  'mixed_precision_dtype': 'float32'},
      'task': {
          'init_checkpoint': torchvision_import[0],
          'model': {
              'num_classes': 7, 'num_thing_classes': 4,
              'input_size': [64, 64, 3], 'max_level': 5,
              'embedding_size': 32, 'num_instances': 12,
              'decoder': {'convnext_unet': {'num_blocks': [1, 1, 1],
                                            'num_filters': [64, 64, 64]}},
              'center_head': {'num_blocks': 1, 'num_filters': 32},
              'mask_head': {'num_filters': 32}},
          'train_data': {'input_path': training_records.train_pattern,
                         'label_map_path': training_records.label_map_path,
                         'global_batch_size': 2,
                         'parser': {'max_instances': 16,
                                    'copy_paste_prob': 0.0}},
          'validation_data': {
              'input_path': training_records.val_pattern,
              'label_map_path': os.path.join(
                  os.path.dirname(training_records.val_pattern),
                  'val_label_map.json'),
              'global_batch_size': 2}},
      'trainer': {'train_steps': 20, 'steps_per_loop': 5,
                  'summary_interval': 5, 'checkpoint_interval': 20,
                  'optimizer_config': {'ema': None}},
  }
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
  result = subprocess.run(
      [sys.executable, '-m', 'maskconver.train', f'--experiment={EXPERIMENT}',
       '--mode=train', f'--model_dir={tmp_path / "model"}',
       f'--params_override={json.dumps(overrides)}'],
      capture_output=True, text=True, env=env, timeout=900, check=False)
  log = result.stdout + result.stderr
  assert result.returncode == 0, log[-3000:]
  prefix = os.path.join(torchvision_import[0], 'backbone')
  assert f"Loaded ['backbone'] from {prefix}" in log
  assert 'train | step:     20' in log
  assert tf.train.latest_checkpoint(str(tmp_path / 'model')).endswith(
      'ckpt-20')
