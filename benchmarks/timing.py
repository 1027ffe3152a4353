"""Wall-clock timing of calls: medians, and rows timed interleaved.

Shared by `benchmark`, the TFLite profilers and `mask_einsum`, so that they
time alike: milliseconds per call from `time.perf_counter`, medians with the
minimum and maximum; and the check of their --num_threads lists.
"""

import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence

from absl import app


# Rounds of the interleaved timing (time_interleaved).
ROUNDS = 5


def parse_threads(values: Sequence[str]) -> List[int]:
  """Checks the --num_threads list; errors name the flag."""
  try:
    threads = [int(v) for v in values]
  except ValueError as e:
    raise app.UsageError(f'--num_threads must be positive integers, got '
                         f'{list(values)}') from e
  if not threads or min(threads) <= 0:
    raise app.UsageError(f'--num_threads must be positive integers, got '
                         f'{list(values)}')
  return threads


def time_runs(function: Callable[[], Any], num_runs: int,
              warmup: int) -> Dict[str, float]:
  """Median, min and max milliseconds of `num_runs` calls after `warmup`."""
  if num_runs <= 0 or warmup < 0:
    raise ValueError(f'need num_runs > 0 and warmup >= 0, got {num_runs}, '
                     f'{warmup}')
  for _ in range(warmup):
    function()
  times = []
  for _ in range(num_runs):
    start = time.perf_counter()
    function()
    times.append((time.perf_counter() - start) * 1000.0)
  return _summary(times)


def _summary(times: Sequence[float]) -> Dict[str, float]:
  return {'median_ms': statistics.median(times), 'min_ms': min(times),
          'max_ms': max(times)}


def time_interleaved(runs: Mapping[str, Mapping[str, Callable[[], Any]]],
                     num_runs: int, warmup: int, rounds: int = ROUNDS
                     ) -> Dict[str, Dict[str, Dict[str, float]]]:
  """Like time_runs for every {row: {part: call}}, interleaved in rounds.

  Each call runs `warmup` times first. Then, `rounds` times, every (row,
  part) in turn runs once untimed (its caches and thread pool warm again
  after the others ran) and then its share of the `num_runs` timed runs in a
  row; the shares differ by at most one. A machine whose speed drifts during
  the timing so moves all rows alike.

  Returns:
    {row: {part: {median_ms, min_ms, max_ms}}} over the num_runs timed runs.
  """
  if num_runs <= 0 or warmup < 0 or rounds <= 0:
    raise ValueError(f'need num_runs > 0, warmup >= 0 and rounds > 0, got '
                     f'{num_runs}, {warmup}, {rounds}')
  rounds = min(rounds, num_runs)
  for parts in runs.values():
    for function in parts.values():
      for _ in range(warmup):
        function()
  times = {row: {part: [] for part in parts} for row, parts in runs.items()}
  for index in range(rounds):
    block = num_runs // rounds + (index < num_runs % rounds)
    for row, parts in runs.items():
      for part, function in parts.items():
        function()
        for _ in range(block):
          start = time.perf_counter()
          function()
          times[row][part].append((time.perf_counter() - start) * 1000.0)
  return {row: {part: _summary(values) for part, values in parts.items()}
          for row, parts in times.items()}
