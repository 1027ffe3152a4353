"""The paper's ablations, rerun on synthetic data built to ask each question.

Each row asks one question of the MaskConver paper, on a scenario of
`maskconver.data.synthetic` where the paper's reason for its answer applies.
Rows, scenarios and variants are fixed here, before any run, each with that
reason:

  class_embedding_one_level  Table 4 (MobileNet-MH, heads on L3 only, +2.3):
      the class embedding breaks ties between centers of different classes
      that collide. `collisions` (60% of the things share their centroid
      with a segment of another class), heads on L3 only, so every colliding
      pair lands in one cell of one level.
  class_embedding_levels  Table 4 (R50, L3-L7, +1.5): over several levels a
      pair collides in one cell only when both members have the same size
      and so the same level. `same_size_collisions` (rings and frames with
      the area of the thing in their hole: 64% of the things collide, all
      on their own level; in `collisions` 12% do), heads on L3-L5.
  centers  Table 5 (+0.6): a mask center lies on more of the object than a
      box center where the box center falls off it. `concave` (the box
      center of 77% of the things lies off the object).
  heads  Table 3 (light +0.3 at a quarter of the FLOPs): the light heads
      save FLOPs where the heads dominate the model's cost. Both variants
      have the R50 recipe's heads (256 wide; 4 blocks in the center heads,
      1 in the mask head), where 3x3 heads cost 4.15x the light model's
      FLOPs (1.64B vs 0.40B at 128 px, `python -m maskconver.tools.
      model_stats`), as in the paper (696B vs 171B, 4.07x). `collisions`.
  decoder  Table 2 (UNet+SE above FPN by 7.7, above BiFPN by 3.1): the
      UNet's blocks at stride 32 give the heads long-range context. `context`
      at 192 px: half the things are grey and take the class of a flag at
      least 100 px away, beyond the 99 px receptive field of ResNet-18's
      level 3. The UNet (ConvNeXt-SE) has 4 blocks at L5 and one at L4 and
      L3, as the paper puts most blocks at L5 (N=[18,1,1]); FPN at 64
      filters; BiFPN at 64 filters, 3 layers (3.15M, 2.99M and 2.93M params,
      0.44B, 0.44B and 0.42B FLOPs).
  stuff  Table 7 (regions +0.2 PQ stuff at 79% of the frame rate): stuff as
      centers loses little against stuff as regions. `concave`, whose stuff
      is the default scenes' (sky, ground, irregular water); compares PQ
      stuff.
  copy_paste  Table 6 (copy-paste +1.7): pasting segments of other images
      adds instances and contexts where training repeats a small set (400
      images, 20 epochs). `concave`; copy-paste probability 0.5 (the
      recipe's).

Every variant is `maskconver_synthetic` (ResNet-18 at half width, ConvNeXt-SE
UNet N=[1,1,1] D=64, light heads shared over L3-L5 at 64, class embedding)
with the row's switches set, trained from scratch on the same data with the
same seeds by `python -m maskconver.train --seed=S`, and evaluated on the
scenario's val split. The variants of the `heads` and `decoder` rows, whose
steps cost 2-4x the base's, train at `small_batch_size` so that the default
study (3 seeds) fits 2 hours on 2 cores; every variant of a row trains at one
image size and batch. The table gives PQ / PQ things / PQ stuff as the mean
over seeds and their spread, params and FLOPs (`tools.model_stats`) at the
variant's image size, and the difference the row asks about next to the
paper's, paired by seed. Every result is reported as measured; no variant is
tuned.

  python scripts/ablation_study.py --output_dir=/tmp/study [--quick]
      [--rows=centers,heads] [--seeds=3] [--jobs=2]

Writes only inside --output_dir: data/<scenario>, records/<scenario>,
runs/<variant>/seed<S> (model_dir, train.log, stats.json), and
ablation_study.json / ablation_study.md. Resumable: a finished run (its
eval_metrics.json at the last step) is reused, an interrupted one resumes
from its last checkpoint, and rerunning the command finishes what is left.
Prints the table, then the JSON path on its last line.
"""

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from absl import flags

from maskconver.common import flags as command_flags

EXPERIMENT = 'maskconver_synthetic'
# Scenarios drawn and trained at `Settings.large_image_size`, all others at
# `image_size`: `context` needs images wider than level 3's receptive field.
LARGE_SCENARIOS = ('context',)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a study trains on and for how long; fixed per output folder.

  `large_image_size` applies to `LARGE_SCENARIOS`, `small_batch_size` to the
  variants marked `small_batch`.
  """
  image_size: int
  num_train: int
  num_val: int
  train_steps: int
  batch_size: int
  warmup_steps: int
  large_image_size: int
  small_batch_size: int


DEFAULT_SETTINGS = Settings(image_size=128, num_train=400, num_val=50,
                            train_steps=500, batch_size=16, warmup_steps=60,
                            large_image_size=192, small_batch_size=8)
# A smoke run of the whole machinery, a few minutes on 2 cores.
QUICK_SETTINGS = Settings(image_size=128, num_train=16, num_val=8,
                          train_steps=2, batch_size=4, warmup_steps=1,
                          large_image_size=192, small_batch_size=2)
DEFAULT_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class Variant:
  """One model of the study: a name and its config overrides.

  `small_batch`: trained at `Settings.small_batch_size`, for the rows whose
  steps cost 2-4x the base model's (3x3 heads, 192 px images); every
  variant of such a row is.
  """
  name: str
  scenario: str
  overrides: Tuple[str, ...] = ()
  small_batch: bool = False


def image_size(scenario: str, settings: Settings) -> int:
  """Side of a scenario's images, px."""
  return (settings.large_image_size if scenario in LARGE_SCENARIOS else
          settings.image_size)


def batch_size(variant: Variant, settings: Settings) -> int:
  """Training and evaluation batch of a variant."""
  return settings.small_batch_size if variant.small_batch else (
      settings.batch_size)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """metric(better) - metric(worse) as the paper states it, and its figure."""
  better: str
  worse: str
  paper: str          # the paper's figure, as text
  expects_gain: bool  # True: the paper shows a gain; False: no loss (~0)
  metric: str = 'PQ_all'


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  table: str
  question: str
  variants: Tuple[Variant, ...]
  comparisons: Tuple[Comparison, ...]


_ONE_LEVEL = ('task.model.min_level=3', 'task.model.max_level=3')
_NO_EMBEDDING = ('task.model.use_class_embedding=false',)
_BOX = ('task.train_data.parser.center_type=box',
        'task.validation_data.parser.center_type=box')
# Both head types with the R50 recipe's widths and depths.
_WIDE_HEADS = ('task.model.center_head.num_filters=256',
               'task.model.center_head.num_blocks=4',
               'task.model.mask_head.num_filters=256',
               'task.model.mask_head.num_blocks=1')
_CONV_HEADS = ('task.model.center_head.block_type=conv',
               'task.model.mask_head.block_type=conv')

# The base model on `concave`: mask centers, stuff as centers, no copy-paste.
CONCAVE_BASE = Variant('mask_centers', 'concave')
ROWS = (
    Row('class_embedding_one_level', 'Table 4',
        'class embedding on/off, heads on L3 only, colliding centers',
        (Variant('one_level', 'collisions', _ONE_LEVEL),
         Variant('one_level_no_embedding', 'collisions',
                 _ONE_LEVEL + _NO_EMBEDDING)),
        (Comparison('one_level', 'one_level_no_embedding',
                    '+2.3 (MobileNet-MH, L3 only)', True),)),
    Row('class_embedding_levels', 'Table 4',
        'class embedding on/off, heads on L3-L5, same-size colliding centers',
        (Variant('same_size', 'same_size_collisions'),
         Variant('same_size_no_embedding', 'same_size_collisions',
                 _NO_EMBEDDING)),
        (Comparison('same_size', 'same_size_no_embedding',
                    '+1.5 (R50, L3-L7)', True),)),
    Row('centers', 'Table 5', 'mask vs box centers, concave shapes',
        (CONCAVE_BASE, Variant('box_centers', 'concave', _BOX)),
        (Comparison('mask_centers', 'box_centers', '+0.6', True),)),
    Row('heads', 'Table 3',
        'light 7x7 depthwise vs 3x3 conv heads, the R50 recipe\'s widths',
        (Variant('light_heads_256', 'collisions', _WIDE_HEADS,
                 small_batch=True),
         Variant('conv3x3_heads_256', 'collisions',
                 _WIDE_HEADS + _CONV_HEADS, small_batch=True)),
        (Comparison('light_heads_256', 'conv3x3_heads_256',
                    '+0.3 at 1/4 of the FLOPs (171B vs 696B)', False),)),
    Row('decoder', 'Table 2',
        'ConvNeXt-UNet+SE vs FPN vs BiFPN, class set by distant context',
        (Variant('unet_context', 'context', (
            'task.model.decoder.convnext_unet.num_blocks=[4,1,1]',),
                 small_batch=True),
         Variant('fpn_context', 'context', (
             'task.model.decoder.type=fpn',
             'task.model.decoder.fpn.num_filters=64'), small_batch=True),
         Variant('bifpn_context', 'context', (
             'task.model.decoder.type=bifpn',
             'task.model.decoder.bifpn.num_filters=64',
             'task.model.decoder.bifpn.num_repeats=3'), small_batch=True)),
        (Comparison('unet_context', 'fpn_context', '+7.7', True),
         Comparison('unet_context', 'bifpn_context', '+3.1', True))),
    Row('stuff', 'Table 7', 'stuff as centers vs as regions (PQ stuff)',
        (CONCAVE_BASE, Variant('stuff_regions', 'concave', (
            'task.model.stuff_representation=region',))),
        (Comparison('mask_centers', 'stuff_regions',
                    '-0.2 PQ stuff (45.6 vs 45.8), 1.27x the FPS', False,
                    'PQ_stuff'),)),
    Row('copy_paste', 'Table 6', 'panoptic copy-paste off/on',
        (Variant('copy_paste', 'concave', (
            'task.train_data.parser.copy_paste_prob=0.5',)), CONCAVE_BASE),
        (Comparison('copy_paste', 'mask_centers', '+1.7', True),)),
)
ROW_NAMES = tuple(row.name for row in ROWS)


def _run(command: Sequence[str], log_path: str,
         env: Optional[Dict[str, str]] = None) -> None:
  """Runs a command, its output to log_path; RuntimeError naming the log."""
  with open(log_path, 'a') as log:
    log.write(f'$ {" ".join(command)}\n')
    log.flush()
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                           env=env)
  if code:
    raise RuntimeError(f'{command[2]} exited with {code}; see {log_path}')


def prepare_data(output_dir: str, scenario: str, settings: Settings) -> str:
  """Writes the scenario's dataset and TFRecords once; returns records dir."""
  data_dir = os.path.join(output_dir, 'data', scenario)
  records = os.path.join(output_dir, 'records', scenario)
  if os.path.exists(os.path.join(records, 'val_label_map.json')):
    return records
  size = image_size(scenario, settings)
  os.makedirs(records, exist_ok=True)
  log = os.path.join(records, 'prepare.log')
  _run([sys.executable, '-m', 'maskconver.data.synthetic',
        f'--output_dir={data_dir}', f'--scenario={scenario}',
        f'--num_train={settings.num_train}', f'--num_val={settings.num_val}',
        f'--image_size={size}', '--seed=0'], log)
  # val last: its label map marks the records as complete.
  for split in ('train', 'val'):
    _run([sys.executable, '-m', 'maskconver.data.convert_coco_panoptic',
          f'--image_dir={data_dir}/{split}',
          f'--panoptic_json={data_dir}/annotations/panoptic_{split}.json',
          f'--panoptic_masks_dir={data_dir}/annotations/panoptic_{split}',
          f'--output_prefix={records}/{split}', '--num_shards=2'], log)
  return records


def variant_overrides(variant: Variant, records: str,
                      settings: Settings) -> List[str]:
  """Every config override of one variant's training run."""
  steps = settings.train_steps
  size = image_size(variant.scenario, settings)
  batch = batch_size(variant, settings)
  return [
      f'task.train_data.input_path={records}/train-*',
      f'task.validation_data.input_path={records}/val-*',
      f'task.validation_data.label_map_path={records}/val_label_map.json',
      f'task.model.input_size=[{size},{size},3]',
      f'task.train_data.parser.eval_groundtruth_padded_size=[{size},{size}]',
      'task.validation_data.parser.eval_groundtruth_padded_size='
      f'[{size},{size}]',
      f'task.train_data.global_batch_size={batch}',
      f'task.validation_data.global_batch_size={batch}',
      'task.allow_image_summary=false',
      f'trainer.train_steps={steps}',
      f'trainer.validation_interval={steps}',
      f'trainer.checkpoint_interval={min(250, steps)}',
      f'trainer.steps_per_loop={min(50, steps)}',
      f'trainer.summary_interval={min(50, steps)}',
      f'trainer.optimizer_config.learning_rate.cosine.decay_steps={steps}',
      'trainer.optimizer_config.warmup.linear.warmup_steps='
      f'{settings.warmup_steps}',
      *variant.overrides,
  ]


def finished_metrics(model_dir: str, steps: int) -> Optional[Dict]:
  """The run's final evaluation, or None when it has not finished."""
  path = os.path.join(model_dir, 'eval_metrics.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    metrics = json.load(f)
  return metrics if metrics.get('step', 0) >= steps else None


def train_variant(variant: Variant, seed: int, records: str, model_dir: str,
                  settings: Settings, threads: int) -> Dict:
  """Trains and evaluates one variant with one seed, or reuses the result."""
  metrics = finished_metrics(model_dir, settings.train_steps)
  if metrics is None:
    os.makedirs(model_dir, exist_ok=True)
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'))
    overrides = ','.join(variant_overrides(variant, records, settings))
    _run([sys.executable, '-m', 'maskconver.train', f'--seed={seed}',
          f'--experiment={EXPERIMENT}', '--mode=train_and_eval',
          f'--model_dir={model_dir}', f'--params_override={overrides}'],
         os.path.join(model_dir, 'train.log'), env)
    metrics = finished_metrics(model_dir, settings.train_steps)
    if metrics is None:
      raise RuntimeError(f'{model_dir}: training ended without an '
                         'evaluation at the last step; see train.log')
  return {key: metrics[key] for key in ('PQ_all', 'PQ_things', 'PQ_stuff')}


def variant_stats(variant: Variant, records: str, stats_path: str,
                  settings: Settings) -> Dict[str, int]:
  """Params and FLOPs (multiply-adds) of a variant at its image size."""
  if os.path.exists(stats_path):
    with open(stats_path) as f:
      return json.load(f)
  from maskconver import experiment_loading  # pylint: disable=g-import-not-at-top
  from maskconver.tools import model_stats  # pylint: disable=g-import-not-at-top
  params = experiment_loading.load_experiment(
      EXPERIMENT, (), ','.join(variant_overrides(variant, records, settings)))
  size = image_size(variant.scenario, settings)
  stats = model_stats.model_stats(params.task.model, [size, size])
  result = {'params': int(stats['params']), 'flops': int(stats['flops']),
            'image_size': size, 'batch_size': batch_size(variant, settings)}
  with open(stats_path, 'w') as f:
    json.dump(result, f)
  return result


def _mean_spread(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and half the range (the spread shown as +-)."""
  return (sum(values) / len(values), (max(values) - min(values)) / 2)


def verdict(deltas: Sequence[float], noise: float, expects_gain: bool) -> str:
  """Whether the paired deltas agree with the paper's direction.

  A difference is clear when every seed's delta has the same sign and their
  mean exceeds `noise` (the larger seed-to-seed range of the two variants).
  """
  mean = sum(deltas) / len(deltas)
  clear = (all(d > 0 for d in deltas) or all(d < 0 for d in deltas)) and (
      abs(mean) > noise)
  if not clear:
    return ('no clear difference at this scale' if expects_gain else
            'agrees: no clear difference')
  if mean > 0:
    return 'agrees' if expects_gain else 'agrees: no loss (a gain here)'
  return 'disagrees: the reverse'


def summarize(rows: Sequence[Row], results: Dict[Tuple[str, int], Dict],
              stats: Dict[str, Dict[str, int]], seeds: Sequence[int]
              ) -> List[Dict]:
  """One entry per row: variants' PQ over seeds and the paired deltas."""
  summary = []
  for row in rows:
    variants = {}
    for variant in row.variants:
      per_seed = [results[(variant.name, s)] for s in seeds
                  if (variant.name, s) in results]
      entry = {'scenario': variant.scenario, 'seeds': len(per_seed),
               **stats.get(variant.name, {})}
      for key in ('PQ_all', 'PQ_things', 'PQ_stuff'):
        values = [r[key] for r in per_seed]
        entry[key] = values
        if values:
          entry[key + '_mean'], entry[key + '_spread'] = _mean_spread(values)
      variants[variant.name] = entry
    comparisons = []
    for c in row.comparisons:
      paired = [s for s in seeds
                if (c.better, s) in results and (c.worse, s) in results]
      deltas = [results[(c.better, s)][c.metric] -
                results[(c.worse, s)][c.metric] for s in paired]
      item = {'better': c.better, 'worse': c.worse, 'metric': c.metric,
              'paper': c.paper, 'deltas': deltas}
      if deltas:
        noise = max(max(variants[n][c.metric]) - min(variants[n][c.metric])
                    for n in (c.better, c.worse))
        item['mean'], item['spread'] = _mean_spread(deltas)
        item['verdict'] = verdict(deltas, noise, c.expects_gain)
      comparisons.append(item)
    summary.append({'row': row.name, 'table': row.table,
                    'question': row.question, 'variants': variants,
                    'comparisons': comparisons})
  return summary


def _pm(mean: Optional[float], spread: Optional[float]) -> str:
  return '-' if mean is None else f'{mean:.1f} +- {spread:.1f}'


def markdown(summary: Sequence[Dict], settings: Settings) -> str:
  """The study's tables as Markdown."""
  lines = [
      f'{settings.num_train} train / {settings.num_val} val images, '
      f'{settings.train_steps} steps; PQ as mean +- half the range over '
      'seeds; FLOPs at the variant\'s image size (px).', '',
      '| row | variant | scenario | seeds | PQ | PQ things | PQ stuff | '
      'params | FLOPs | px | batch |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
  for entry in summary:
    for name, v in entry['variants'].items():
      lines.append(
          f'| {entry["row"]} | {name} | {v["scenario"]} | {v["seeds"]} | '
          f'{_pm(v.get("PQ_all_mean"), v.get("PQ_all_spread"))} | '
          f'{_pm(v.get("PQ_things_mean"), v.get("PQ_things_spread"))} | '
          f'{_pm(v.get("PQ_stuff_mean"), v.get("PQ_stuff_spread"))} | '
          f'{v["params"] / 1e6:.2f}M | {v["flops"] / 1e9:.2f}B | '
          f'{v["image_size"]} | {v["batch_size"]} |'
          if 'params' in v else
          f'| {entry["row"]} | {name} | | | | | | | | | |')
  lines += ['', '| row | paper | difference | measured (per seed) | paper\'s '
            '| verdict |', '| --- | --- | --- | --- | --- | --- |']
  for entry in summary:
    for c in entry['comparisons']:
      per_seed = ', '.join(f'{d:+.1f}' for d in c['deltas'])
      metric = '' if c['metric'] == 'PQ_all' else f' ({c["metric"]})'
      lines.append(
          f'| {entry["row"]} | {entry["table"]} | {c["better"]} - '
          f'{c["worse"]}{metric} | {_pm(c.get("mean"), c.get("spread"))} '
          f'({per_seed}) | {c["paper"]} | {c.get("verdict", "not run")} |')
  return '\n'.join(lines) + '\n'


def _check_settings(output_dir: str, settings: Settings) -> None:
  """Refuses to mix runs of different settings in one output folder."""
  path = os.path.join(output_dir, 'settings.json')
  wanted = dataclasses.asdict(settings)
  if os.path.exists(path):
    with open(path) as f:
      found = json.load(f)
    if found != wanted:
      raise ValueError(
          f'--output_dir={output_dir} holds a study with other settings '
          f'({found}); use another folder, or the same --quick as before')
  else:
    os.makedirs(output_dir, exist_ok=True)
    with open(path, 'w') as f:
      json.dump(wanted, f, indent=1)


def run_study(output_dir: str, rows: Sequence[Row], seeds: Sequence[int],
              settings: Settings, jobs: int) -> Tuple[List[Dict], List[str]]:
  """Trains what is missing; returns the summary and the failures."""
  _check_settings(output_dir, settings)
  variants = {}
  for row in rows:
    for variant in row.variants:
      variants.setdefault(variant.name, variant)
  records = {}
  for scenario in sorted({v.scenario for v in variants.values()}):
    print(f'data: {scenario}', flush=True)
    records[scenario] = prepare_data(output_dir, scenario, settings)
  runs_dir = os.path.join(output_dir, 'runs')
  stats = {}
  for name, variant in variants.items():
    os.makedirs(os.path.join(runs_dir, name), exist_ok=True)
    stats[name] = variant_stats(
        variant, records[variant.scenario],
        os.path.join(runs_dir, name, 'stats.json'), settings)
  threads = max(1, (os.cpu_count() or 1) // jobs)
  results, failures = {}, []
  # Seed-major: a study stopped early has every variant of the first seeds.
  # Within a seed the costliest runs (FLOPs x batch) start first, so that
  # the short ones fill the jobs' ends.
  by_cost = sorted(variants, key=lambda n: -stats[n]['flops'] *
                   stats[n]['batch_size'])
  todo = [(name, seed) for seed in seeds for name in by_cost]
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = {
        pool.submit(train_variant, variants[name], seed,
                    records[variants[name].scenario],
                    os.path.join(runs_dir, name, f'seed{seed}'), settings,
                    threads): (name, seed)
        for name, seed in todo}
    for future in concurrent.futures.as_completed(futures):
      name, seed = futures[future]
      try:
        results[(name, seed)] = future.result()
      except RuntimeError as e:
        failures.append(str(e))
        print(f'FAILED {name} seed {seed}: {e}', flush=True)
        continue
      minutes = (time.perf_counter() - start) / 60
      print(f'{name:<24} seed {seed}  PQ {results[(name, seed)]["PQ_all"]:5.1f}'
            f'  ({len(results)}/{len(todo)} runs, {minutes:.1f} min)',
            flush=True)
  return summarize(rows, results, stats, seeds), failures


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the study's flags on `values`."""
  flags.DEFINE_string('output_dir', None, 'Where the study writes everything '
                      '(data, records, runs, tables).', required=True,
                      flag_values=values)
  flags.DEFINE_boolean('quick', False,
                       'A few-minute smoke run: tiny data, 2 steps, 1 seed.',
                       flag_values=values)
  flags.DEFINE_string('rows', ','.join(ROW_NAMES),
                      f'Comma-separated subset of {",".join(ROW_NAMES)}.',
                      flag_values=values)
  flags.DEFINE_integer('seeds', None,
                       f'Training seeds 0..N-1 (default {DEFAULT_SEEDS}; '
                       '--quick: 1).',
                       flag_values=values)
  flags.DEFINE_integer('jobs', 2, 'Trainings run at once (threads split '
                       'among them).', flag_values=values)


def _usage(message: str) -> int:
  print(f'error: {message}', file=sys.stderr)
  return command_flags.EXIT_USAGE


def _study(args: command_flags.FlagValues) -> int:
  names = [n for n in args.rows.split(',') if n]
  unknown = sorted(set(names) - set(ROW_NAMES))
  if unknown or not names:
    return _usage(f'--rows: unknown {unknown or "(empty)"}; '
                  f'choose from {",".join(ROW_NAMES)}')
  seeds = args.seeds if args.seeds is not None else (
      1 if args.quick else DEFAULT_SEEDS)
  if seeds < 1:
    return _usage(f'--seeds must be at least 1, got {seeds}')
  if args.jobs < 1:
    return _usage(f'--jobs must be at least 1, got {args.jobs}')
  settings = QUICK_SETTINGS if args.quick else DEFAULT_SETTINGS
  rows = [row for row in ROWS if row.name in names]
  output_dir = os.path.abspath(args.output_dir)
  start = time.perf_counter()
  try:
    summary, failures = run_study(output_dir, rows, list(range(seeds)),
                                  settings, args.jobs)
  except ValueError as e:
    return _usage(str(e))
  except RuntimeError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  table = markdown(summary, settings)
  with open(os.path.join(output_dir, 'ablation_study.md'), 'w') as f:
    f.write(table)
  json_path = os.path.join(output_dir, 'ablation_study.json')
  with open(json_path, 'w') as f:
    json.dump({'settings': dataclasses.asdict(settings), 'seeds': seeds,
               'minutes': (time.perf_counter() - start) / 60,
               'failures': failures, 'rows': summary}, f, indent=1)
  print(table)
  print(f'{len(failures)} failed run(s); wall time '
        f'{(time.perf_counter() - start) / 60:.1f} min')
  print(json_path)
  return 1 if failures else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the study with `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _study, define_flags, sys.argv[1:] if argv is None else argv,
      'ablation_study.py')


if __name__ == '__main__':
  command_flags.run_flag_command(_study, define_flags)
