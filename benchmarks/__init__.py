"""The lab: benchmarks and profilers of MaskConver (`python -m benchmarks.NAME`).

Run from the checkout root; the `maskconver` package never imports it.
"""
