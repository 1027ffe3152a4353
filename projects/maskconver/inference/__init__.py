"""Running exported or checkpointed MaskConver models on images and videos."""
