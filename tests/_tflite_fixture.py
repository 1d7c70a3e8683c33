"""Small Keras models converted to full-INT8 .tflite, and TFLite-Micro as the reference runtime."""
from __future__ import annotations

import numpy as np

# The reference runtime is the pipeline's own TFLite-Micro helpers, not a copy of them.
from edgecore.interpreters import tflm_arena_bytes  # noqa: F401
from edgecore.interpreters import tflm_invoke as tflm_run  # noqa: F401


def to_int8_tflite(model, input_shape, seed: int = 0, n_calib: int = 16) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(n_calib):
            yield [rng.uniform(0, 1, (1, *input_shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def keras_model(input_shape, build, seed: int = 0):
    """build(x) -> y on a Keras input; weights random but fixed by the seed."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(input_shape, batch_size=1)
    return tf.keras.Model(inp, build(inp))


def random_int8(shape, n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape), dtype=np.int8)
