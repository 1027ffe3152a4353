"""Center embedding head: an embedding vector at every cell of every level."""

from typing import Any, Dict

import tf_keras

from maskconver.modeling.heads import multi_level_head


@tf_keras.utils.register_keras_serializable(package='maskconver')
class CenterEmbeddingHead(multi_level_head.MultiLevelHead):
  """Predicts an `embedding_size` center embedding per cell and level.

  The embedding at a selected center becomes, after the class embedding and
  the MLP, the kernel that produces that center's mask.
  """

  def __init__(self, embedding_size: int, **kwargs):
    """Initializes the head.

    Args:
      embedding_size: channels of the embedding (C_embd).
      **kwargs: MultiLevelHead arguments (min_level, max_level, num_blocks,
        num_filters, block_type, kernel_size) and Layer arguments.
    """
    self.embedding_size = embedding_size
    kwargs.pop('output_channels', None)
    super().__init__(output_channels=embedding_size, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    del config['output_channels']
    config['embedding_size'] = self.embedding_size
    return config
