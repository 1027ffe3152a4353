"""Center heatmap head: one heatmap per class at every head level."""

import math
from typing import Any, Dict

import tf_keras

from maskconver.modeling.heads import multi_level_head


@tf_keras.utils.register_keras_serializable(package='maskconver')
class CenterHeatmapHead(multi_level_head.MultiLevelHead):
  """Predicts `num_classes` center heatmap logits per level.

  The output bias starts at -log((1 - p) / p) so that every class begins with
  probability `prior_probability` (0.1) everywhere: with most cells negative,
  the focal loss does not start by pushing millions of cells down at once.
  """

  def __init__(self, num_classes: int, prior_probability: float = 0.1,
               **kwargs):
    """Initializes the head.

    Args:
      num_classes: number of classes, things and stuff.
      prior_probability: initial sigmoid output, in (0, 1).
      **kwargs: MultiLevelHead arguments (min_level, max_level, num_blocks,
        num_filters, block_type, kernel_size) and Layer arguments.
    """
    if not 0.0 < prior_probability < 1.0:
      raise ValueError(
          f'prior_probability must lie in (0, 1), got {prior_probability}')
    self.num_classes = num_classes
    self.prior_probability = prior_probability
    kwargs.pop('output_channels', None)
    kwargs.pop('bias_init_value', None)
    super().__init__(
        output_channels=num_classes,
        bias_init_value=-math.log((1.0 - prior_probability) /
                                  prior_probability),
        **kwargs)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    del config['output_channels'], config['bias_init_value']
    config.update({
        'num_classes': self.num_classes,
        'prior_probability': self.prior_probability,
    })
    return config
