"""Moved: run `python -m benchmarks.tflite_stage_profile` from the repository root."""

from maskconver.tools import _moved

if __name__ == '__main__':
  _moved.exit_moved('maskconver.tools.tflite_stage_profile', 'benchmarks.tflite_stage_profile')
