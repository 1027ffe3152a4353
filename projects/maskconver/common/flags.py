"""The flags MaskConver's commands share, and the way each command runs.

Every command defines the experiment flags (`--experiment`, `--config_file`,
`--params_override`) and the checkpoint flags (`--checkpoint_path`,
`--use_ema`) through this module, so they read the same everywhere, and runs
through `run_command`, so that `--help` lists the command's own flags whether
it was started as `python -m maskconver....` or as its console script.

Input sizes are written `HxW` (`640x640`); `H,W` is accepted too.
"""

import sys
from typing import Callable, Iterable, List, Optional, Sequence

from absl import app
from absl import flags

FLAGS = flags.FLAGS

FlagValues = flags.FlagValues

# Exit status of a command whose arguments are wrong (as argparse uses).
EXIT_USAGE = 2


def _define(define: Callable[..., object], name: str, default: object,
            help_text: str, flag_values: FlagValues) -> None:
  """Defines a flag once; a second definition in the same process is a no-op."""
  if name not in flag_values:
    define(name, default, help_text, flag_values=flag_values)


def define_experiment_flags(flag_values: FlagValues = FLAGS) -> None:
  """Defines --experiment, --config_file and --params_override."""
  _define(flags.DEFINE_string, 'experiment', None,
          'Registered experiment name, e.g. maskconver_r50_coco or '
          'maskconver_mnmh_coco_640.', flag_values)
  _define(flags.DEFINE_multi_string, 'config_file', None,
          'YAML file overriding the experiment; repeat the flag to apply '
          'several, in order.', flag_values)
  _define(flags.DEFINE_string, 'params_override', None,
          'Overrides applied after --config_file: a YAML string, a YAML file, '
          'or comma-separated key=value pairs such as '
          '"task.train_data.input_path=coco/train-*".', flag_values)


def define_checkpoint_flags(flag_values: FlagValues = FLAGS) -> None:
  """Defines --checkpoint_path and --use_ema."""
  _define(flags.DEFINE_string, 'checkpoint_path', None,
          'Training checkpoint prefix (model_dir/ckpt-N), or a model_dir, '
          'whose latest checkpoint is used.', flag_values)
  _define(flags.DEFINE_boolean, 'use_ema', True,
          'Use the moving-average (EMA) weights when the checkpoint has them '
          '(the evaluated model); --nouse_ema for the raw weights.',
          flag_values)


def parse_input_size(text: str, flag_name: str = 'input_size') -> List[int]:
  """Parses an image size written 'HxW' (or 'H,W') into [H, W].

  Args:
    text: the flag's value, e.g. '640x640', '800x1200' or '640,640'.
    flag_name: the flag's name, for the error message.

  Returns:
    [height, width], both positive.

  Raises:
    ValueError: naming the flag, when the text is not two positive integers.
  """
  separator = ',' if ',' in text else 'x'
  try:
    size = [int(v) for v in text.lower().split(separator)]
  except ValueError:
    size = []
  if len(size) != 2 or min(size) <= 0:
    raise ValueError(f'--{flag_name} must be two positive integers written '
                     f'HxW, e.g. 640x640 (H,W works too); got {text!r}')
  return size


def parse_argv(define: Callable[[FlagValues], None], argv: Sequence[str],
               program: str) -> FlagValues:
  """Parses `argv` (without the program name) into fresh flag values.

  For commands whose `main(argv)` is also called from Python: the flags are
  defined on a new `FlagValues`, so several commands can be imported into one
  process without their flags colliding.

  Args:
    define: defines the command's flags on the FlagValues it is given.
    argv: the arguments, without the program name.
    program: the program name, for messages.

  Returns:
    The parsed flag values.

  Raises:
    app.UsageError: naming the flag, for an unknown flag, a bad value, a
      missing required flag or a positional argument.
  """
  values = flags.FlagValues()
  define(values)
  try:
    rest = values([program, *argv])
  except flags.Error as e:
    raise app.UsageError(str(e)) from e
  if len(rest) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(rest[1:])}')
  return values


def run_with_flags(work: Callable[[FlagValues], int],
                   define: Callable[[FlagValues], None],
                   argv: Sequence[str], program: str) -> int:
  """Parses `argv` into fresh flag values and returns `work(values)`.

  A usage error (unknown flag, bad value, missing required flag) is printed
  as one `error: ...` line naming the flag, and gives EXIT_USAGE.
  """
  try:
    values = parse_argv(define, argv, program)
  except app.UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  return work(values)


_HELP_FLAGS = ('--help', '-help', '--helpshort', '-helpshort', '--helpfull',
               '-helpfull', '-?', '-h')


def _parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parsing; --help exits 0, a usage error is one line and 2."""
  try:
    return FLAGS(argv)
  except SystemExit as e:
    # absl's help flags print the help and exit 1; asking for help is not
    # an error.
    if any(a.split('=')[0] in _HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise e
  except flags.Error as e:
    print(f'error: {e}\nTry --help for the flags of {argv[0]}.',
          file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _adopt_help(modules: Iterable[str]) -> None:
  """Lists the flags of `modules` in --help under the running program.

  absl's --help shows the key flags of the module named by sys.argv[0]; for a
  console script that is the generated launcher, which defines none.
  """
  by_module = FLAGS.flags_by_module_dict()
  for module in modules:
    for flag in by_module.get(module, ()):
      FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run_command(main: Callable[[List[str]], Optional[int]],
                define: Optional[Callable[[FlagValues], None]] = None,
                also_list: Sequence[str] = ()) -> None:
  """Runs a command's `main` under absl, with a --help that lists its flags.

  Args:
    main: the command's main(argv); its return value is the exit status.
    define: defines the command's flags on the FlagValues it is given
      (called with the global FLAGS), for commands that define them on
      demand rather than on import.
    also_list: further modules whose flags --help lists (for example the
      Model Garden module that defines the trainer's flags).
  """
  if define is not None:
    define(FLAGS)
  module = sys.modules.get(main.__module__)
  launcher = sys.modules.get('__main__')
  if module is not None and launcher is not None and module is not launcher:
    if not getattr(launcher, '__doc__', None):
      launcher.__doc__ = module.__doc__
  _adopt_help([main.__module__, __name__, *also_list])
  app.run(main, flags_parser=_parse_flags)


def run_flag_command(work: Callable[[FlagValues], int],
                     define: Callable[[FlagValues], None]) -> None:
  """Console entry of a command written as `work(flag_values) -> status`.

  Defines the flags on the global FLAGS, parses them the absl way (--help,
  --flagfile) and runs `work(FLAGS)`; positional arguments are a usage error.
  """

  def main(argv: List[str]) -> int:
    if len(argv) > 1:
      print(f'error: unexpected arguments: {" ".join(argv[1:])}',
            file=sys.stderr)
      return EXIT_USAGE
    return work(FLAGS)

  main.__module__ = work.__module__
  run_command(main, define=define)
