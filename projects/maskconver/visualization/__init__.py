"""Panoptic drawing: palettes, overlays with boundaries, legends, panels."""
