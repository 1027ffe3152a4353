"""MaskConver panoptic segmentation on TensorFlow Model Garden.

Importing the package keeps TensorFlow's C++ start-up messages (GPU probing,
CPU instruction notices) off the terminal: it sets TF_CPP_MIN_LOG_LEVEL=2
unless the variable is already set, so `TF_CPP_MIN_LOG_LEVEL=0` brings them
back. It has no effect once TensorFlow was imported before the package.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
