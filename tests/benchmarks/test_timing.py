"""The shared timing helpers: call counts and order by hand."""

import pytest

from benchmarks import timing


def test_time_runs_counts_runs_after_warmup():
  calls = []
  stats = timing.time_runs(lambda: calls.append(1), num_runs=5, warmup=2)
  assert len(calls) == 7
  assert 0.0 <= stats['min_ms'] <= stats['median_ms'] <= stats['max_ms']
  with pytest.raises(ValueError, match='num_runs'):
    timing.time_runs(lambda: None, num_runs=0, warmup=0)


def test_time_interleaved_runs_every_row_in_blocks_per_round():
  calls = []
  runs = {row: {part: (lambda row=row, part=part: calls.append(row + part))
                for part in ('n', 't')} for row in ('a', 'b')}
  stats = timing.time_interleaved(runs, num_runs=5, warmup=1, rounds=2)
  # Warm-ups first; then round 1 runs each part 1 + 3 times (one untimed,
  # 3 of the 5 timed runs), round 2 1 + 2 times, rows and parts in turn.
  assert calls == (['an', 'at', 'bn', 'bt'] +
                   ['an'] * 4 + ['at'] * 4 + ['bn'] * 4 + ['bt'] * 4 +
                   ['an'] * 3 + ['at'] * 3 + ['bn'] * 3 + ['bt'] * 3)
  assert sorted(stats) == ['a', 'b'] and sorted(stats['a']) == ['n', 't']
  assert 0.0 <= stats['b']['t']['min_ms'] <= stats['b']['t']['max_ms']
  with pytest.raises(ValueError, match='num_runs'):
    timing.time_interleaved(runs, num_runs=0, warmup=0)
