"""Weight initializers shared by MaskConver's layers."""

import tf_keras

# ConvNeXt's and ViT's initialization scale.
STDDEV = 0.02


def truncated_normal() -> tf_keras.initializers.Initializer:
  """A new TruncatedNormal(0.02) for one variable.

  One unseeded initializer instance draws the same values at every call, so
  sharing an instance would start same-sized kernels identical: every
  variable gets its own.
  """
  return tf_keras.initializers.TruncatedNormal(stddev=STDDEV)
