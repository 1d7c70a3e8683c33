"""Small Keras models converted to full-INT8 .tflite, and TFLite-Micro as the reference runtime."""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np


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


def tflm_run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    ip = runtime.Interpreter.from_bytes(model_bytes, arena_size=4 << 20)
    out = []
    for xi in x:
        ip.set_input(xi[None], 0)
        ip.invoke()
        out.append(ip.get_output(0).reshape(-1).copy())
    return np.array(out)


def tflm_arena_bytes(model_bytes: bytes) -> int:
    """TFLite-Micro's own figure: print_allocations() writes 'Arena allocation total N bytes' to fd 2."""
    from tflite_micro.python.tflite_micro import runtime

    ip = runtime.Interpreter.from_bytes(model_bytes, arena_size=4 << 20)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            ip.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    assert m, f"no arena total in TFLM output: {text[:300]}"
    return int(m.group(1))


def random_int8(shape, n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape), dtype=np.int8)
