"""Every tensor key and the label contract, in one place.

Everything else imports its names from here; nothing else spells them.

Label contract
--------------
* **Training class ids** are contiguous, `0 .. num_classes - 1`, with every
  thing class before every stuff class: ids `0 .. num_thing_classes - 1` are
  things, the rest are stuff. The converter sorts categories that way and keeps
  the mapping to the dataset's own category ids in a label map (JSON) so that
  predictions map back to them.
* **Void** is `VOID_CLASS` (-1) in every decoded or parsed class tensor.
* **Segments** are stored as COCO stores them: an RGB PNG whose pixel value
  `R + 256 * G + 256**2 * B` is a segment id (0 = void), plus per-segment lists
  of id, training class id and crowd flag. Keeping the original ids makes the
  records round-trip to COCO panoptic PNG + JSON pixel for pixel, and there is
  no limit of 255 segments per image.
* **Crowd** segments keep their class; they are never training instances, their
  pixels are ignored by every loss, and PQ treats them the official way.
* **Instance ids** in a parsed `instance_mask` are `1 .. n` for thing segments,
  `0` for stuff, void and crowd.
* **Center indices** address the concatenation of all head levels, each
  flattened row-major, from `min_level` to `max_level`: the index of cell
  `(y, x)` of level `l` is `offset(l) + y * width(l) + x`, where `offset(l)` is
  the number of cells of all lower levels.
"""

VOID_CLASS = -1
# Value of a void pixel in a COCO panoptic PNG, after RGB -> id decoding.
VOID_SEGMENT_ID = 0
# Segment id of the padding around a scaled training image: background, not
# void (the heatmap and mask losses see negatives there).
PADDING_SEGMENT_ID = -1
# COCO panoptic PNG id encoding: id = R + LABEL_BASE * G + LABEL_BASE**2 * B.
LABEL_BASE = 256

# --- tf.Example features written by the converter, read by the decoder. -----
IMAGE_ENCODED = 'image/encoded'              # bytes, JPEG or PNG
IMAGE_FORMAT = 'image/format'                # bytes, 'jpeg' or 'png'
IMAGE_HEIGHT = 'image/height'                # int64
IMAGE_WIDTH = 'image/width'                  # int64
IMAGE_SOURCE_ID = 'image/source_id'          # bytes, the dataset's image id
IMAGE_FILENAME = 'image/filename'            # bytes, the image file name
PANOPTIC_ENCODED = 'image/panoptic/encoded'  # bytes, COCO panoptic RGB PNG
PANOPTIC_FILENAME = 'image/panoptic/filename'  # bytes, the PNG file name
SEGMENT_IDS = 'image/panoptic/segment_ids'   # int64 list
SEGMENT_CLASSES = 'image/panoptic/segment_classes'  # int64 list, training ids
SEGMENT_IS_CROWD = 'image/panoptic/segment_is_crowd'  # int64 list, 0 or 1

# --- Decoder output (one example, before parsing). -------------------------
# Keys of the dict returned by the decoder; shapes are per example.
IMAGE = 'image'                    # uint8 [height, width, 3]
HEIGHT = 'height'                  # int32 []
WIDTH = 'width'                    # int32 []
SOURCE_ID = 'source_id'            # string []
SEGMENT_MAP = 'segment_map'        # int32 [height, width], COCO segment ids
SEGMENT_ID_LIST = 'segment_ids'    # int32 [num_segments]
SEGMENT_CLASS_LIST = 'segment_classes'  # int32 [num_segments]
SEGMENT_CROWD_LIST = 'segment_is_crowd'  # bool [num_segments]
# Optional: another decoded example (a dict with the keys above) to paste
# segments from; attached by dataloaders.copy_paste.pair_examples.
COPY_PASTE_SOURCE = 'copy_paste_source'

# --- Parser output: features. -----------------------------------------------
# The parser returns `(image, labels)`; `image` is uint8
# [output_height, output_width, 3], the resized RGB image (its padding is the
# mean pixel); the steps normalize it on the device
# (`maskconver.ops.image_ops.normalize_images`).

# --- Parser output: compact training labels (dict keys). -----------------
# What the input pipeline sends (see dataloaders/targets.py); the steps expand
# it into the dense labels below with `maskconver.ops.target_ops`.
# uint8 (int16 when K > 254) [mask_h, mask_w] at the mask stride: k + 1 on the
# pixels of target slot k, 0 on background, K + 1 on void and crowd.
SLOT_MAP = 'slot_map'
# uint8 (int16 above level 3) [h_min, w_min]: pixels of each min_level cell
# ignored by the heatmap loss (void, crowd, dropped targets).
HEATMAP_IGNORE_COUNT = 'heatmap_ignore_count'
# int32 [max_instances], training class id of each target (0 for padding).
CLASSES = 'classes'
# float32 [max_instances, 2], (y, x) of each target's center in input pixels.
CENTERS = 'centers'
# int32 [max_instances], head level each target is assigned to.
LEVELS = 'levels'
# int32 [max_instances], Gaussian radius in cells of the target's level.
GAUSSIAN_RADII = 'gaussian_radii'
# int32 [], number of real targets.
NUM_INSTANCES = 'num_instances'
# float32 [4, 2], only with `parser.source_padded_size` (the image is then the
# padded source): `resize_and_crop_image`'s image_info of the scale jitter,
# [[source h, w], [output h, w], [y_scale, x_scale], [y_offset, x_offset]],
# that `ops.image_ops.resize_window` applies in the step.
RESIZE_INFO = 'resize_info'

# --- Dense training labels, built on the device from the compact ones. -----
# float32 {str(level): [batch, h_l, w_l, num_classes]} Gaussian heatmaps.
CENTER_HEATMAPS = 'center_heatmaps'
# float32 {str(level): [batch, h_l, w_l]}, 0 where the heatmap loss ignores a
# cell (mostly void or crowd), 1 elsewhere (padding included).
HEATMAP_WEIGHTS = 'heatmap_weights'
# uint8 [batch, max_instances, mask_h, mask_w], binary mask of each target.
MASKS = 'masks'
# float32 [batch, mask_h, mask_w], 0 on void and crowd pixels, else 1.
MASK_WEIGHTS = 'mask_weights'
# int32 [batch, max_instances], flat index of each target's center.
CENTER_INDICES = 'center_indices'
# bool [batch, max_instances], whether each target is a thing.
IS_THING = 'is_thing'
# float32 [batch, max_instances], 1 for real targets, 0 for padding.
VALID = 'valid'

# --- Parser output: evaluation ground truth (labels['groundtruths']). -------
GROUNDTRUTHS = 'groundtruths'
# float32 [4, 2]: original [h, w], scaled [h, w], [y_scale, x_scale],
# [y_offset, x_offset] (Model Garden's image_info convention).
IMAGE_INFO = 'image_info'
# int32 [padded_h, padded_w], original-resolution COCO segment ids, padded
# with VOID_SEGMENT_ID.
GT_SEGMENT_MAP = 'gt_segment_map'
# int32 [max_segments], padded with 0.
GT_SEGMENT_IDS = 'gt_segment_ids'
# int32 [max_segments], padded with VOID_CLASS.
GT_SEGMENT_CLASSES = 'gt_segment_classes'
# bool [max_segments].
GT_SEGMENT_IS_CROWD = 'gt_segment_is_crowd'
# uint8 [SOURCE_ID_LENGTH]: the source id's UTF-8 bytes, zero-padded (no
# strings on the device: TPUs cannot take them).
GT_SOURCE_ID = 'source_id_bytes'
SOURCE_ID_LENGTH = 256

# --- Model outputs (dict keys). ------------------------------------------
# float32 {str(level): [batch, h_l, w_l, num_classes]}, heatmap logits.
CLASS_HEATMAP_LOGITS = 'class_heatmap_logits'
# float32 {str(level): [batch, h_l, w_l, embedding_size]}.
CENTER_EMBEDDINGS = 'center_embeddings'
# float32 [batch, mask_h, mask_w, embedding_size], stride-4 mask features.
MASK_FEATURES = 'mask_features'
# float32 [batch, mask_h, mask_w, num_instances], one mask per instance.
MASK_LOGITS = 'mask_logits'
# float32 [batch, h_min, w_min, num_stuff_classes], stuff region logits on
# min_level (only with stuff_representation 'region').
STUFF_REGION_LOGITS = 'stuff_region_logits'
# Inference only: the selected centers.
# int32 [batch, num_instances], training class ids.
DETECTED_CLASSES = 'detected_classes'
# float32 [batch, num_instances], center heatmap scores after the activation.
DETECTED_SCORES = 'detected_scores'
# int32 [batch, num_instances], flat center indices (see above).
DETECTED_CENTER_INDICES = 'detected_center_indices'

# --- Panoptic post-processing outputs. -----------------------------------
# int32 [batch, height, width], training class id per pixel, VOID_CLASS where
# nothing was predicted.
CATEGORY_MASK = 'category_mask'
# int32 [batch, height, width], 1 .. n per thing instance, 0 for stuff / void.
INSTANCE_MASK = 'instance_mask'
# int32 [batch, height, width], segment index + 1 (0 = void); indexes the
# per-segment outputs below.
PANOPTIC_SEGMENT_MAP = 'segment_map'
# int32 [batch, num_instances], class of each kept segment (VOID_CLASS if not
# kept); float32 [batch, num_instances] score; bool [batch, num_instances].
SEGMENT_CLASSES_OUT = 'segment_classes'
SEGMENT_SCORES_OUT = 'segment_scores'
SEGMENT_IS_THING_OUT = 'segment_is_thing'
