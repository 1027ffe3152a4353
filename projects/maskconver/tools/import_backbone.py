"""Imports ImageNet ResNet weights onto an experiment's Model Garden ResNet.

  python -m maskconver.tools.import_backbone --source=torchvision \\
      --weights=resnet50.safetensors --experiment=maskconver_r50_coco \\
      --output=checkpoints/resnet50_imagenet

builds the experiment's backbone (Model Garden's `ResNet`, through its backbone
factory), fills every variable from the weights file and writes a checkpoint
whose one item, `backbone`, is what the task restores with
`task.init_checkpoint=<output>` and `task.init_checkpoint_modules:
['backbone']`. docs/pretrained_backbones.md says where to get the weights.

Sources (`--source`):

* `torchvision`: a ResNet state dict as `.safetensors`, in torchvision's
  names (`conv1.weight`, `layer1.0.bn2.running_var`, `layer2.0.downsample.0
  .weight`, ...), which timm's ResNets share. Conv kernels go OIHW -> HWIO.
* `keras`: Keras Applications `ResNet50` weights as `.h5` (with or without
  the top). Conv biases fold into the following batch norm's moving mean;
  Keras' 'caffe' input (BGR, mean subtracted, unscaled) folds into the stem,
  so the backbone takes this project's normalized RGB input
  (`maskconver.ops.image_ops.normalize_images`, torchvision's normalization).

Every backbone variable is assigned once; a tensor missing, of the wrong
shape or left unused, and a variable left unassigned, are errors naming
them. `num_batches_tracked` (a step counter), `fc.*` and `predictions/*`
(the classifiers) are ignored. Batch-norm gamma is scaled for the backbone's
epsilon (the experiment's norm_epsilon) so that inference-mode batch norm
computes the source's function. torchvision's and timm's ResNet-50 are v1.5,
as Model Garden's BottleneckBlock: the same function, except that Model
Garden pads its five stride-2 layers 'same' (at even input sizes one row and
column less on the top/left than PyTorch). Keras Applications' ResNet50 is
v1 (stride on the first 1x1 conv): its weights fit, as an approximation in
the first block of L3-L5. docs/pretrained_backbones.md has the details and
the measured differences.
"""

import dataclasses
import hashlib
import json
import os
import sys
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import h5py
import numpy as np
import safetensors
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.backbones import resnet
from official.vision.modeling.layers import nn_blocks

from maskconver import experiment_loading
from maskconver.common import flags as command_flags
from maskconver.ops import image_ops

SOURCES = ('torchvision', 'keras')
# The checkpoint item the task's initialize reads for
# init_checkpoint_modules: ['backbone'] (MaskConverModel.checkpoint_items).
CHECKPOINT_ITEM = 'backbone'
CHECKPOINT_PREFIX = 'backbone'
MANIFEST_FILE = 'import_manifest.json'
# Keras Applications' 'caffe' preprocessing: BGR mean pixel, no scaling.
KERAS_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# ResNet depths whose torchvision and Keras Applications weights exist.
SUPPORTED_DEPTHS = (50, 101, 152)


class BackboneImportError(ValueError):
  """The weights, the experiment or the output do not fit; names which."""


@dataclasses.dataclass(frozen=True)
class SourceLayout:
  """How a source names and lays out a ResNet's tensors.

  Attributes:
    name: the --source value.
    suffixes: file name endings it reads.
    bn_epsilon: the epsilon its batch norms were trained with.
    oihw_kernels: conv kernels are [out, in, h, w] (else [h, w, in, out]).
    conv_bias: convs carry a bias (folded into the next batch norm).
    caffe_input: trained on Keras 'caffe' input (folded into the stem).
    stem: (conv, batch norm) names of the stem.
    block: (group 0.., block 0.., part) -> (conv, batch norm) names; part 0 is
      the projection shortcut, 1..3 the bottleneck's convs.
    conv_tensor: (conv name, 'kernel' | 'bias') -> tensor name.
    bn_tensor: (batch norm name, Keras weight name) -> tensor name.
    ignorable: (tensor name) -> why the backbone does not need it, or None.
  """
  name: str
  suffixes: Tuple[str, ...]
  bn_epsilon: float
  oihw_kernels: bool
  conv_bias: bool
  caffe_input: bool
  stem: Tuple[str, str]
  block: Callable[[int, int, int], Tuple[str, str]]
  conv_tensor: Callable[[str, str], str]
  bn_tensor: Callable[[str, str], str]
  ignorable: Callable[[str], Optional[str]]


# Batch-norm weights, in Keras' names, and their torchvision names.
_BN_WEIGHTS = ('gamma', 'beta', 'moving_mean', 'moving_variance')
_TORCH_BN = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
             'moving_variance': 'running_var'}


def _torchvision_block(group: int, block: int, part: int) -> Tuple[str, str]:
  prefix = f'layer{group + 1}.{block}'
  if part == 0:
    return f'{prefix}.downsample.0', f'{prefix}.downsample.1'
  return f'{prefix}.conv{part}', f'{prefix}.bn{part}'


def _torchvision_ignorable(name: str) -> Optional[str]:
  if name.endswith('.num_batches_tracked'):
    return 'num_batches_tracked: a step counter'
  if name.split('.')[0] == 'fc':
    return 'fc: the ImageNet classifier'
  return None


def _keras_ignorable(name: str) -> Optional[str]:
  if name.split('/')[0] == 'predictions':
    return 'predictions: the ImageNet classifier'
  return None


LAYOUTS = {
    'torchvision': SourceLayout(
        name='torchvision', suffixes=('.safetensors',), bn_epsilon=1e-5,
        oihw_kernels=True, conv_bias=False, caffe_input=False,
        stem=('conv1', 'bn1'), block=_torchvision_block,
        conv_tensor=lambda conv, kind: f'{conv}.weight',
        bn_tensor=lambda bn, kind: f'{bn}.{_TORCH_BN[kind]}',
        ignorable=_torchvision_ignorable),
    'keras': SourceLayout(
        name='keras', suffixes=('.h5', '.hdf5'), bn_epsilon=1.001e-5,
        oihw_kernels=False, conv_bias=True, caffe_input=True,
        stem=('conv1_conv', 'conv1_bn'),
        block=lambda g, b, part: (f'conv{g + 2}_block{b + 1}_{part}_conv',
                                  f'conv{g + 2}_block{b + 1}_{part}_bn'),
        conv_tensor=lambda conv, kind: f'{conv}/{kind}',
        bn_tensor=lambda bn, kind: f'{bn}/{kind}',
        ignorable=_keras_ignorable),
}


# ------------------------------------------------------------ reading ---


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """{name: array} of a .safetensors file, read with NumPy."""
  tensors = {}
  try:
    with safetensors.safe_open(path, framework='np') as f:
      for name in f.keys():
        try:
          tensors[name] = f.get_tensor(name)
        except TypeError as e:
          raise BackboneImportError(
              f'--weights={path}: tensor {name} is '
              f'{f.get_slice(name).get_dtype()}, which NumPy cannot read; '
              'save the state dict as float32 ({k: v.float() ...})') from e
  except (safetensors.SafetensorError, OSError) as e:
    raise BackboneImportError(
        f'--weights={path}: not a readable .safetensors file ({e})') from e
  return tensors


def _h5_names(group: h5py.Group, attribute: str) -> List[str]:
  """A list attribute of a Keras weights file, whole or in chunks."""
  if attribute in group.attrs:
    values = list(group.attrs[attribute])
  else:
    values, chunk = [], 0
    while f'{attribute}{chunk}' in group.attrs:
      values.extend(group.attrs[f'{attribute}{chunk}'])
      chunk += 1
  return [v.decode('utf8') if isinstance(v, bytes) else str(v)
          for v in values]


def read_keras_h5(path: str) -> Dict[str, np.ndarray]:
  """{'layer/weight': array} of a Keras .h5 weights (or whole-model) file."""
  tensors = {}
  try:
    with h5py.File(path, 'r') as f:
      group = f['model_weights'] if 'model_weights' in f else f
      layers = _h5_names(group, 'layer_names')
      if not layers:
        raise BackboneImportError(
            f'--weights={path}: no layer_names attribute; not a Keras .h5 '
            'weights file (one written by save_weights or save)')
      for layer in layers:
        for weight in _h5_names(group[layer], 'weight_names'):
          name = f"{layer}/{weight.split('/')[-1].split(':')[0]}"
          if name in tensors:
            raise BackboneImportError(
                f'--weights={path}: two weights named {name}')
          tensors[name] = np.asarray(group[layer][weight])
  except OSError as e:
    raise BackboneImportError(
        f'--weights={path}: not a readable HDF5 file ({e})') from e
  return tensors


def read_weights(source: str, path: str) -> Dict[str, np.ndarray]:
  """Checks the file and its kind, then reads it with the source's reader."""
  if source not in LAYOUTS:
    raise BackboneImportError(
        f'--source={source}: choose one of {", ".join(SOURCES)}')
  layout = LAYOUTS[source]
  if not os.path.isfile(path):
    raise BackboneImportError(f'--weights={path}: no such file')
  if not path.lower().endswith(layout.suffixes):
    hint = ''
    if path.lower().endswith(('.pth', '.pt', '.bin')):
      hint = ('; convert it first: python -c "import torch, safetensors.torch '
              f"as st; st.save_file(torch.load('{path}'), "
              "'resnet50.safetensors')\"")
    raise BackboneImportError(
        f'--weights={path}: --source={source} reads '
        f'{" or ".join(layout.suffixes)} files{hint}')
  if source == 'torchvision':
    return read_safetensors(path)
  return read_keras_h5(path)


# ------------------------------------------------------------ mapping ---


@dataclasses.dataclass(frozen=True)
class ConvBn:
  """A Model Garden conv + batch norm pair and its names in the source."""
  conv: tf_keras.layers.Conv2D
  norm: tf_keras.layers.BatchNormalization
  source_conv: str
  source_norm: str


def check_backbone_config(model_config, experiment: str) -> int:
  """The ResNet depth, if the backbone is one ImageNet ResNet weights fit."""
  backbone = model_config.backbone
  if backbone.type != 'resnet':
    raise BackboneImportError(
        f'--experiment={experiment}: task.model.backbone.type is '
        f'{backbone.type!r}; ImageNet ResNet weights import onto a resnet '
        'backbone (e.g. --experiment=maskconver_r50_coco)')
  config = backbone.resnet
  if config.model_id not in SUPPORTED_DEPTHS:
    raise BackboneImportError(
        f'--experiment={experiment}: task.model.backbone.resnet.model_id is '
        f'{config.model_id}; supported: {SUPPORTED_DEPTHS}')
  plain = {'depth_multiplier': 1.0, 'stem_type': 'v0', 'se_ratio': 0.0,
           'resnetd_shortcut': False, 'replace_stem_max_pool': False}
  for field, value in plain.items():
    configured = getattr(config, field)
    if field == 'se_ratio' and configured is None:
      configured = 0.0
    if configured != value:
      raise BackboneImportError(
          f'--experiment={experiment}: task.model.backbone.resnet.{field} is '
          f'{getattr(config, field)!r}; ImageNet ResNet weights fit only '
          f'{field}={value!r}')
  return config.model_id


def build_backbone(model_config) -> tf_keras.Model:
  """The experiment's backbone, as the task's model builds it."""
  return backbone_factory.build_backbone(
      input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, 3]),
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation)


def conv_bn_pairs(backbone: tf_keras.Model, depth: int,
                  layout: SourceLayout) -> List[ConvBn]:
  """The backbone's conv + batch norm pairs, stem first, named in `layout`."""
  if not isinstance(backbone, resnet.ResNet):
    raise BackboneImportError(
        f'the backbone is a {type(backbone).__name__}, not a Model Garden '
        'ResNet')
  convs = [l for l in backbone.layers
           if isinstance(l, tf_keras.layers.Conv2D)]
  norms = [l for l in backbone.layers
           if isinstance(l, tf_keras.layers.BatchNormalization)]
  blocks = [l for l in backbone.layers
            if isinstance(l, nn_blocks.BottleneckBlock)]
  spec = resnet.RESNET_SPECS[depth]
  if len(convs) != 1 or len(norms) != 1 or len(blocks) != sum(
      repeats for _, _, repeats in spec):
    raise BackboneImportError(
        f'the backbone does not have the layers of a ResNet-{depth}: '
        f'{len(convs)} stem convs, {len(norms)} stem norms, {len(blocks)} '
        'bottleneck blocks')
  pairs = [ConvBn(convs[0], norms[0], *layout.stem)]
  blocks = iter(blocks)
  for group, (_, _, repeats) in enumerate(spec):
    for index in range(repeats):
      block = next(blocks)
      # pylint: disable=protected-access
      parts = [(block._conv1, block._norm1), (block._conv2, block._norm2),
               (block._conv3, block._norm3)]
      if block._use_projection:
        parts.insert(0, (block._shortcut, block._norm0))
      # pylint: enable=protected-access
      first = 0 if len(parts) == 4 else 1
      for part, (conv, norm) in enumerate(parts, start=first):
        pairs.append(ConvBn(conv, norm, *layout.block(group, index, part)))
  return pairs


class _Tensors:
  """The source's tensors; records what was taken and what did not fit."""

  def __init__(self, tensors: Dict[str, np.ndarray]):
    self._tensors = tensors
    self.used = set()
    self.problems = []

  def take(self, name: str, shape: Sequence[int],
           purpose: str) -> Optional[np.ndarray]:
    """The tensor as float64, or None (a problem recorded) if it is off."""
    if name not in self._tensors:
      self.problems.append(f'tensor {name} (for {purpose}) is missing')
      return None
    if name in self.used:
      self.problems.append(f'tensor {name} is needed twice (for {purpose})')
      return None
    self.used.add(name)
    value = np.asarray(self._tensors[name])
    if tuple(value.shape) != tuple(shape):
      self.problems.append(f'tensor {name} has shape {list(value.shape)}, '
                           f'{purpose} needs {list(shape)}')
      return None
    if not np.all(np.isfinite(value)):
      self.problems.append(f'tensor {name} has non-finite values')
      return None
    return value.astype(np.float64)

  def unused(self) -> List[str]:
    return sorted(set(self._tensors) - self.used)


@dataclasses.dataclass
class ImportSummary:
  """What an import did.

  Attributes:
    source: the --source value.
    weights: the weights file.
    num_variables: backbone variables assigned (each exactly once).
    num_tensors: tensors the file holds.
    num_used: tensors used.
    ignored: {reason: tensor names} of the tensors the backbone has no use
      for.
    folded_biases: conv biases folded into batch-norm moving means.
    bn_epsilon_source: the source's batch-norm epsilon.
    bn_epsilon_backbone: the backbone's.
    gamma_scale: (min, max) of the factor gamma was scaled by.
  """
  source: str
  weights: str
  num_variables: int = 0
  num_tensors: int = 0
  num_used: int = 0
  ignored: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  folded_biases: int = 0
  bn_epsilon_source: float = 0.0
  bn_epsilon_backbone: float = 0.0
  gamma_scale: Tuple[float, float] = (1.0, 1.0)


def _caffe_stem_fold(kernel: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """A Keras stem kernel for normalized RGB input, and its constant offset.

  Keras' stem sees x_k[c'] = rgb[2 - c'] - caffe_bgr[c'] (BGR, unscaled);
  the backbone sees x[c] = (rgb[c] - mean[c]) / std[c]. So x_k[2 - c] =
  x[c] * std[c] + (mean[c] - caffe_bgr[2 - c]): the RGB kernel is the BGR one
  flipped and scaled by std, plus a per-output constant (exact away from the
  border, where Keras zero-pads x_k; see docs/pretrained_backbones.md).
  """
  mean = np.asarray(image_ops.MEAN_RGB, np.float64)
  std = np.asarray(image_ops.STDDEV_RGB, np.float64)
  rgb_kernel = kernel[:, :, ::-1, :]
  shift = mean - np.asarray(KERAS_CAFFE_MEAN_BGR, np.float64)[::-1]
  offset = np.einsum('hwco,c->o', rgb_kernel, shift)
  return rgb_kernel * std[None, None, :, None], offset


def _pair_plan(pair: ConvBn, is_stem: bool, layout: SourceLayout,
               store: _Tensors, summary: ImportSummary):
  """[(variable, value, source name)] of one conv + batch norm, or None.

  Also returns the gamma scale factors, or None when a tensor is off (the
  problem is recorded in `store`).
  """
  hwio = tuple(pair.conv.kernel.shape)
  channels = hwio[3]
  shape = (hwio[3], hwio[2], hwio[0], hwio[1]) if layout.oihw_kernels else (
      hwio)
  kernel_name = layout.conv_tensor(pair.source_conv, 'kernel')
  kernel = store.take(kernel_name, shape, pair.conv.kernel.name)
  bias = np.zeros([channels])
  if layout.conv_bias:
    bias = store.take(layout.conv_tensor(pair.source_conv, 'bias'),
                      [channels], f'{pair.norm.moving_mean.name} (folded '
                      'into the moving mean)')
    summary.folded_biases += 1
  names = {kind: layout.bn_tensor(pair.source_norm, kind)
           for kind in _BN_WEIGHTS}
  norm = {kind: store.take(names[kind], [channels],
                           getattr(pair.norm, kind).name)
          for kind in _BN_WEIGHTS}
  if kernel is None or bias is None or any(v is None for v in norm.values()):
    return None, None
  variance = norm['moving_variance']
  if np.any(variance < 0):
    store.problems.append(
        f'tensor {names["moving_variance"]} has negative values')
    return None, None
  if layout.oihw_kernels:
    kernel = kernel.transpose(2, 3, 1, 0)
  if layout.caffe_input and is_stem:
    kernel, offset = _caffe_stem_fold(kernel)
    bias = bias + offset
  summary.bn_epsilon_backbone = pair.norm.epsilon
  scale = np.sqrt((variance + pair.norm.epsilon) /
                  (variance + layout.bn_epsilon))
  return [
      (pair.conv.kernel, kernel, kernel_name),
      (pair.norm.gamma, norm['gamma'] * scale, names['gamma']),
      (pair.norm.beta, norm['beta'], names['beta']),
      (pair.norm.moving_mean, norm['moving_mean'] - bias,
       names['moving_mean']),
      (pair.norm.moving_variance, variance, names['moving_variance']),
  ], scale


def plan_assignments(backbone: tf_keras.Model, depth: int, source: str,
                     tensors: Dict[str, np.ndarray], path: str):
  """[(variable, value, source name)] for every backbone variable.

  Args:
    backbone: the experiment's Model Garden ResNet.
    depth: its depth (check_backbone_config).
    source: a key of LAYOUTS.
    tensors: the weights file's tensors (read_weights).
    path: the weights file, for messages.

  Returns:
    (the plan, the ImportSummary); values are float64.

  Raises:
    BackboneImportError: naming each tensor missing, of the wrong shape,
      needed twice or unused, and each variable left unassigned.
  """
  layout = LAYOUTS[source]
  store = _Tensors(tensors)
  summary = ImportSummary(source=source, weights=path,
                          num_tensors=len(tensors),
                          bn_epsilon_source=layout.bn_epsilon)
  plan, scales = [], []
  for index, pair in enumerate(conv_bn_pairs(backbone, depth, layout)):
    pair_plan, scale = _pair_plan(pair, index == 0, layout, store, summary)
    if pair_plan is not None:
      plan += pair_plan
      scales.append(scale)
  unexplained = []
  for name in store.unused():
    reason = layout.ignorable(name)
    if reason is None:
      unexplained.append(name)
    else:
      summary.ignored.setdefault(reason, []).append(name)
  if unexplained:
    store.problems.append(f'{len(unexplained)} tensor(s) the backbone has no '
                          f'place for: {_shorten(unexplained)}')
  assigned = {}
  for variable, _, name in plan:
    if variable.ref() in assigned:
      store.problems.append(f'variable {variable.name} assigned twice, from '
                            f'{assigned[variable.ref()]} and {name}')
    assigned[variable.ref()] = name
  if not store.problems:
    unassigned = [v.name for v in backbone.variables
                  if v.ref() not in assigned]
    if unassigned:
      store.problems.append(f'backbone variable(s) left unassigned: '
                            f'{_shorten(unassigned)}')
  if store.problems:
    raise BackboneImportError(
        f'--weights={path} does not fit the backbone as a --source={source} '
        f'ResNet-{depth}:\n  ' + '\n  '.join(_shorten_list(store.problems)))
  summary.num_variables = len(plan)
  summary.num_used = len(store.used)
  scales = np.concatenate(scales)
  summary.gamma_scale = (float(scales.min()), float(scales.max()))
  return plan, summary


def _shorten(names: Sequence[str], limit: int = 8) -> str:
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def _shorten_list(problems: Sequence[str], limit: int = 12) -> List[str]:
  if len(problems) <= limit:
    return list(problems)
  return list(problems[:limit]) + [f'... and {len(problems) - limit} more']


def assign(plan) -> None:
  """Assigns the planned values (float64) in each variable's dtype."""
  for variable, value, _ in plan:
    variable.assign(value.astype(variable.dtype.as_numpy_dtype))


# ------------------------------------------------------------ writing ---


def check_output(output_dir: str) -> None:
  """The output must be new or an empty directory."""
  if not output_dir:
    raise BackboneImportError('--output is required: a new directory for '
                              'the checkpoint')
  if tf.io.gfile.exists(output_dir):
    if not tf.io.gfile.isdir(output_dir):
      raise BackboneImportError(f'--output={output_dir} is a file; give a '
                                'new directory')
    if tf.io.gfile.listdir(output_dir):
      raise BackboneImportError(f'--output={output_dir} is not empty; give a '
                                'new directory')


def write_checkpoint(backbone: tf_keras.Model, output_dir: str,
                     manifest: Dict[str, object]) -> str:
  """Writes the checkpoint into `output_dir`, complete or not at all.

  The files are written into a temporary folder inside `output_dir` and
  moved out of it; the `checkpoint` state file, which
  `tf.train.latest_checkpoint` (and so the task) looks for, comes last.

  Returns:
    The checkpoint prefix.
  """
  tf.io.gfile.makedirs(output_dir)
  staging = os.path.join(output_dir, f'.incomplete-{uuid.uuid4().hex}')
  try:
    tf.train.Checkpoint(**{CHECKPOINT_ITEM: backbone}).write(
        os.path.join(staging, CHECKPOINT_PREFIX))
    with tf.io.gfile.GFile(os.path.join(staging, MANIFEST_FILE), 'w') as f:
      f.write(json.dumps(manifest, indent=2) + '\n')
    names = tf.io.gfile.listdir(staging)
    for name in sorted(names, key=lambda n: n.endswith('.index')):
      tf.io.gfile.rename(os.path.join(staging, name),
                         os.path.join(output_dir, name))
    state = os.path.join(staging, 'checkpoint')
    with tf.io.gfile.GFile(state, 'w') as f:
      f.write(f'model_checkpoint_path: "{CHECKPOINT_PREFIX}"\n'
              f'all_model_checkpoint_paths: "{CHECKPOINT_PREFIX}"\n')
    tf.io.gfile.rename(state, os.path.join(output_dir, 'checkpoint'))
  finally:
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
  return os.path.join(output_dir, CHECKPOINT_PREFIX)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def import_backbone(source: str, weights: str, model_config,
                    output_dir: str, experiment: str = '') -> ImportSummary:
  """Reads `weights`, fills the experiment's backbone and writes it.

  Args:
    source: 'torchvision' (also timm) or 'keras'.
    weights: the .safetensors or .h5 file.
    model_config: the experiment's task.model.
    output_dir: a new (or empty) directory for the checkpoint.
    experiment: the experiment's name, for messages and the manifest.

  Returns:
    What was imported.

  Raises:
    BackboneImportError: naming the argument, file or tensor at fault;
      nothing is written then.
  """
  check_output(output_dir)
  tensors = read_weights(source, weights)
  depth = check_backbone_config(model_config, experiment)
  backbone = build_backbone(model_config)
  plan, summary = plan_assignments(backbone, depth, source, tensors, weights)
  assign(plan)
  manifest = {
      'source': source, 'weights': os.path.abspath(weights),
      'weights_sha256': _sha256(weights), 'experiment': experiment,
      'backbone': f'Model Garden ResNet-{depth}',
      'checkpoint_item': CHECKPOINT_ITEM,
      **{k: v for k, v in dataclasses.asdict(summary).items()
         if k not in ('source', 'weights')}}
  prefix = write_checkpoint(backbone, output_dir, manifest)
  written = [k for k, _ in tf.train.list_variables(prefix)
             if k.startswith(f'{CHECKPOINT_ITEM}/')]
  if len(written) != summary.num_variables:
    raise BackboneImportError(
        f'{prefix}: holds {len(written)} backbone variables, expected '
        f'{summary.num_variables}')
  return summary


def describe(summary: ImportSummary, output_dir: str) -> List[str]:
  """Lines telling the user what was imported."""
  ignored = '; '.join(
      f'{len(names)} {reason}' for reason, names in summary.ignored.items())
  lines = [
      f'assigned {summary.num_variables} backbone variables (each once) from '
      f'{summary.num_used} of the {summary.num_tensors} tensors of '
      f'{summary.weights}',
      f'ignored {sum(map(len, summary.ignored.values()))} tensors: '
      f'{ignored or "none"}',
      f'batch norm epsilon: source {summary.bn_epsilon_source:g}, backbone '
      f'{summary.bn_epsilon_backbone:g}; gamma scaled by '
      f'{summary.gamma_scale[0]:.6f}..{summary.gamma_scale[1]:.6f} so '
      'inference-mode batch norm computes the source\'s function',
  ]
  if summary.folded_biases:
    lines.append(f'folded {summary.folded_biases} conv biases into the '
                 'batch-norm moving means; Keras\' caffe input folded into '
                 'the stem')
  if summary.source == 'keras':
    lines.append('Keras ResNet50 is v1 (stride on the first 1x1 conv); '
                 'Model Garden\'s blocks stride the 3x3 conv (v1.5): the '
                 'first blocks of L3-L5 start from an approximation')
  lines.append(f'wrote {output_dir}; train with '
               f'task.init_checkpoint={output_dir} and '
               "task.init_checkpoint_modules: ['backbone']")
  return lines


# ------------------------------------------------------------ command ---

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the command's flags (only when run as a program)."""
  command_flags.define_experiment_flags(flag_values)
  flags.DEFINE_enum(
      'source', None, list(SOURCES),
      'Layout of --weights: torchvision (torchvision or timm ResNet state '
      'dict, .safetensors) or keras (Keras Applications ResNet50, .h5).',
      flag_values=flag_values)
  flags.DEFINE_string(
      'weights', None, 'The ImageNet weights file (.safetensors or .h5).',
      flag_values=flag_values)
  flags.DEFINE_string(
      'output', None, 'New directory for the checkpoint; give it to '
      'training as task.init_checkpoint.', flag_values=flag_values)
  flags.mark_flags_as_required(['source', 'weights', 'output', 'experiment'],
                               flag_values=flag_values)


def main(argv: Sequence[str]) -> Optional[int]:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  try:
    params = experiment_loading.load_experiment(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    summary = import_backbone(FLAGS.source, FLAGS.weights, params.task.model,
                              FLAGS.output, FLAGS.experiment)
  except BackboneImportError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print('\n'.join(describe(summary, FLAGS.output)))
  return 0


def run() -> None:
  """Console entry point (`maskconver-import-backbone`)."""
  command_flags.run_command(main, define=define_flags)


if __name__ == '__main__':
  run()
