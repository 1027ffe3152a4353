"""Start-up check: the dataset's label map fits the model's classes.

Training ids are contiguous with things first (see `maskconver.keys`), so a
model whose `num_classes` or `num_thing_classes` differs from the label map
of its records trains silently wrong: classes beyond `num_classes` are
dropped or break target building, and classes on the wrong side of the
thing/stuff split get the wrong kind of target. The check runs when the
inputs are built, before the first step.
"""

from typing import Optional

from maskconver.data import label_map as label_map_lib


def check_label_map(path: str, num_classes: int, num_thing_classes: int,
                    source: str) -> label_map_lib.LabelMap:
  """Loads a label map and checks its classes against the model's.

  Args:
    path: the label map JSON.
    num_classes: `task.model.num_classes`.
    num_thing_classes: `task.model.num_thing_classes`.
    source: where the path comes from, for the message (e.g.
      'task.train_data.label_map_path=records/train_label_map.json').

  Returns:
    The label map.

  Raises:
    PanopticFormatError: if the file is missing or not a label map (naming
      it).
    ValueError: if the class count or the thing/stuff split differs, naming
      both and the fields to change.
  """
  labels = label_map_lib.LabelMap.load(path)
  if (labels.num_classes, labels.num_thing_classes) == (num_classes,
                                                        num_thing_classes):
    return labels
  raise ValueError(
      f'{source}: the dataset has {labels.num_classes} classes '
      f'({labels.num_thing_classes} things, {labels.num_stuff_classes} stuff) '
      f'but the model has task.model.num_classes={num_classes} '
      f'(task.model.num_thing_classes={num_thing_classes}). Set '
      f'task.model.num_classes={labels.num_classes} and '
      f'task.model.num_thing_classes={labels.num_thing_classes}, or give the '
      'records and label map of the dataset this model is for.')


def check_input_label_maps(train_path: Optional[str], train_source: str,
                           other_path: Optional[str], other_source: str
                           ) -> None:
  """Checks that two label maps (e.g. train and validation) are the same.

  Raises:
    ValueError: naming both if their classes differ.
  """
  if not train_path or not other_path:
    return
  first = label_map_lib.LabelMap.load(train_path)
  second = label_map_lib.LabelMap.load(other_path)
  if first != second:
    raise ValueError(
        f'{train_source} and {other_source} differ ({first!r} vs '
        f'{second!r}, or names / category ids): training ids would mean '
        'different classes. Convert both splits from the same categories.')
