"""Pure TF ops that run on the device, inside train, validation and serving steps.

Everything here has static output shapes, no strings and no host code, and
compiles with XLA (`tf.function(jit_compile=True)`) in float32 and bfloat16.
"""
