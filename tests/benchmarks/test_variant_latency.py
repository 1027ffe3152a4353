"""Variants side by side: parsing and the ratios over repeats."""

from absl import app
import pytest

from benchmarks import variant_latency


def test_parse_variants_splits_yaml_lists_and_names_the_flag():
  assert variant_latency.parse_variants(['a=x.yaml', 'b=y.yaml+z.yaml']) == [
      ['a', ['x.yaml']], ['b', ['y.yaml', 'z.yaml']]]
  for bad in (['x.yaml'], ['=x.yaml'], ['a=x', 'a=y'], []):
    with pytest.raises(app.UsageError, match='--variant'):
      variant_latency.parse_variants(bad)


def test_parse_formats_names_the_flag():
  assert variant_latency.parse_formats(['saved_model']) == ['saved_model']
  with pytest.raises(app.UsageError, match='--formats'):
    variant_latency.parse_formats(['onnx'])


def _parts(network, total):
  return {'network': {'median_ms': network}, 'total': {'median_ms': total}}


def test_summarize_pairs_repeats_for_the_ratios():
  repeats = [{'a/saved_model': _parts(10.0, 20.0),
              'b/saved_model': _parts(15.0, 25.0)},
             {'a/saved_model': _parts(20.0, 40.0),
              'b/saved_model': _parts(20.0, 60.0)}]
  summary = variant_latency.summarize(repeats, ['a', 'b'], ['saved_model'])
  assert summary['latency']['a/saved_model']['total'] == {
      'median_ms': 30.0, 'min_ms': 20.0, 'max_ms': 40.0}
  network = summary['ratio']['b/saved_model']['network']
  assert (network['min'], network['max']) == (1.0, 1.5)
  assert summary['ratio']['b/saved_model']['total']['median'] == 1.375
  assert 'a/saved_model' not in summary['ratio']
  table = variant_latency.format_table(summary, 'a')
  assert 'total 1.375 (1.250-1.500)' in table
