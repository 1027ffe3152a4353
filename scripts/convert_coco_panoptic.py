"""Converts a COCO panoptic dataset to TFRecords; see the module for flags.

  python scripts/convert_coco_panoptic.py --image_dir=... --panoptic_json=... \
      --panoptic_masks_dir=... --output_prefix=... [--num_shards=N]
"""

import sys

from maskconver.data import convert_coco_panoptic

if __name__ == '__main__':
  sys.exit(convert_coco_panoptic.main())
