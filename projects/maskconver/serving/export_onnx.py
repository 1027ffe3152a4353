r"""Converts a MaskConver SavedModel to ONNX (onnxruntime, TensorRT).

  python -m maskconver.serving.export_onnx \
      --saved_model_dir=/path/to/export/saved_model \
      --onnx_path=/path/to/model.onnx [--opset=17]

The SavedModel comes from `export_saved_model` with a fixed batch size and
input size: `--input_type=tflite --batch_size=1 [--input_image_size=HxW]`
(float32 normalized input; the image_tensor signature takes images of any
size, which ONNX export refuses). The ONNX model computes what the signature
does, the network and the panoptic merge, with the same input and output
names. Needs the `onnx` extra
(`pip install -e .[onnx]`: tf2onnx, onnx, onnxruntime). docs/onnx.md lists
what converts and how closely onnxruntime reproduces the SavedModel.

One TensorFlow op has no ONNX counterpart and is rewritten by the
conversion: Erfc (in tf.nn.gelu) becomes 1 - Erf, the same function, equal
to float32 rounding (`erfc_as_one_minus_erf`).

The model is written to a temporary file next to --onnx_path and renamed
onto it, so a failed conversion leaves no partial file; nothing is written
outside --onnx_path's folder.
"""

import os
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

from absl import flags
import numpy as np
import tensorflow as tf

from maskconver.common import flags as command_flags
from maskconver.serving import tflite_conversion

PROGRAM = 'maskconver-export-onnx'
# The opset written by default and the range accepted (tf2onnx 1.17 writes
# up to 18); 13 and 17 are tested (docs/onnx.md).
DEFAULT_OPSET = 17
MIN_OPSET = 13
MAX_OPSET = 18
INSTALL_HINT = 'pip install -e .[onnx]'


class UsageError(ValueError):
  """Bad input to the command; the message names the flag."""


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the command's flags on `values`."""
  flags.DEFINE_string(
      'saved_model_dir', None,
      'SavedModel from export_saved_model with a fixed batch size and input '
      'size (e.g. --input_type=tflite --batch_size=1).', flag_values=values)
  flags.DEFINE_string('onnx_path', None, 'Output .onnx file.',
                      flag_values=values)
  flags.DEFINE_integer('opset', DEFAULT_OPSET,
                       f'ONNX opset, {MIN_OPSET} to {MAX_OPSET}.',
                       flag_values=values)
  flags.DEFINE_string('signature_key', 'serving_default',
                      'Signature of the SavedModel to convert.',
                      flag_values=values)


def erfc_as_one_minus_erf(ctx: Any, node: Any, name: str,
                          args: Sequence[Any]) -> None:
  """tf2onnx handler: TF Erfc(x) as ONNX Sub(1, Erf(x)) (ONNX has no Erfc).

  Equal to float32 rounding: 1 - erf(x) loses the relative precision of a
  tiny erfc(x) (x above ~3), where GELU's 0.5 * x * erfc(-x / sqrt 2) is
  below 1e-6 in absolute value anyway.
  """
  del name, args
  from tf2onnx import utils  # pylint: disable=g-import-not-at-top
  dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
  erf = ctx.make_node('Erf', [node.input[0]], op_name_scope=node.name)
  one = ctx.make_const(utils.make_name(node.name + '/one'),
                       np.array(1.0, dtype))
  node.type = 'Sub'
  node.domain = ''
  ctx.replace_inputs(node, [one.output[0], erf.output[0]])


CUSTOM_OP_HANDLERS = {'Erfc': (erfc_as_one_minus_erf, [])}


def check_arguments(saved_model_dir: Optional[str], onnx_path: Optional[str],
                    opset: int) -> None:
  """Raises UsageError, naming the flag, for arguments that cannot work."""
  if not saved_model_dir:
    raise UsageError('--saved_model_dir is required')
  if not tf.saved_model.contains_saved_model(saved_model_dir):
    raise UsageError(f'--saved_model_dir={saved_model_dir}: no SavedModel '
                     'there (export one with '
                     'maskconver.serving.export_saved_model)')
  if not onnx_path:
    raise UsageError('--onnx_path is required')
  folder = os.path.dirname(os.path.abspath(onnx_path))
  if os.path.isdir(onnx_path):
    raise UsageError(f'--onnx_path={onnx_path} is a directory; give a file '
                     'name, e.g. model.onnx')
  if not os.path.isdir(folder):
    raise UsageError(f'--onnx_path={onnx_path}: folder {folder} does not '
                     'exist; create it first')
  if not os.access(folder, os.W_OK | os.X_OK):
    raise UsageError(f'--onnx_path={onnx_path}: folder {folder} is not '
                     'writable')
  if not MIN_OPSET <= opset <= MAX_OPSET:
    raise UsageError(f'--opset must be {MIN_OPSET} to {MAX_OPSET}, got '
                     f'{opset}')


def check_converter() -> None:
  """Raises UsageError when tf2onnx or onnx is not installed."""
  try:
    import onnx  # pylint: disable=g-import-not-at-top,unused-import
    import tf2onnx  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise UsageError(f'--onnx_path: writing ONNX needs tf2onnx and onnx '
                     f'({e}); install them with `{INSTALL_HINT}`') from e


def fixed_input_shapes(saved_model_dir: str, signature_key: str
                       ) -> Dict[str, tf.TensorShape]:
  """The signature's input shapes; UsageError unless each is fully known.

  Reads saved_model.pb only; tf2onnx loads the model itself.
  """
  try:
    specs = tflite_conversion.signature_inputs(saved_model_dir, signature_key)
  except ValueError as e:
    raise UsageError(str(e)) from e
  for name, spec in specs.items():
    if not spec.shape.is_fully_defined():
      raise UsageError(
          f'--saved_model_dir={saved_model_dir}: input {name!r} of '
          f'{signature_key!r} has shape {spec.shape}; ONNX export needs a '
          'fixed batch and image size (export_saved_model --batch_size=1 '
          '--input_image_size=HxW)')
  return {name: spec.shape for name, spec in specs.items()}


def convert(saved_model_dir: str, opset: int = DEFAULT_OPSET,
            signature_key: str = 'serving_default') -> bytes:
  """The serialized ONNX model of one signature of a SavedModel.

  Args:
    saved_model_dir: SavedModel whose signature has fully known shapes.
    opset: ONNX opset.
    signature_key: the signature to convert.

  Returns:
    The ONNX ModelProto, serialized; inputs and outputs keep the
    signature's names.

  Raises:
    UsageError: the signature is missing or its shapes are not fixed.
    ValueError: an op does not convert (the message lists them).
  """
  from tf2onnx import convert as tf2onnx_convert  # pylint: disable=g-import-not-at-top
  from tf2onnx import tf_loader  # pylint: disable=g-import-not-at-top
  fixed_input_shapes(saved_model_dir, signature_key)
  graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
      saved_model_dir, None, None, signatures=[signature_key],
      return_initialized_tables=True, return_tensors_to_rename=True)
  del tables  # The model has no lookup tables.
  with tf.device('/cpu:0'):
    model, _ = tf2onnx_convert.from_graph_def(
        graph_def, name=signature_key, input_names=inputs,
        output_names=outputs, opset=opset,
        custom_op_handlers=CUSTOM_OP_HANDLERS, tensors_to_rename=renames)
  unconverted = sorted({f'{n.op_type} ({n.name})' for n in model.graph.node
                        if n.domain and n.domain.startswith('ai.onnx.conv')})
  if unconverted:
    raise ValueError('ops without an ONNX conversion: ' +
                     ', '.join(unconverted))
  return model.SerializeToString()


def write_atomic(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temporary file in the same folder."""
  folder = os.path.dirname(os.path.abspath(path))
  handle, temporary = tempfile.mkstemp(
      dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(data)
    os.replace(temporary, path)
  except BaseException:
    os.remove(temporary)
    raise


def _export(values: command_flags.FlagValues) -> int:
  try:
    check_arguments(values.saved_model_dir, values.onnx_path, values.opset)
    check_converter()
    model = convert(values.saved_model_dir, values.opset,
                    values.signature_key)
  except UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    return command_flags.EXIT_USAGE
  except ValueError as e:
    print(f'error: --saved_model_dir={values.saved_model_dir}: {e}',
          file=sys.stderr)
    return 1
  write_atomic(values.onnx_path, model)
  print(f'ONNX model (opset {values.opset}, {len(model) / 1e6:.2f} MB) '
        f'written to {values.onnx_path}')
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Converts with `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _export, define_flags, sys.argv[1:] if argv is None else argv, PROGRAM)


def run() -> None:
  """Console entry point (`maskconver-export-onnx`)."""
  command_flags.run_flag_command(_export, define_flags)


if __name__ == '__main__':
  run()
