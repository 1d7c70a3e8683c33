"""Running a full-INT8 .tflite: the real TFLite-Micro interpreter (outputs and the arena it needs) and tf.lite's
reference kernels. The quantize stage checks its model with them; the benchmarks measure with them; neither
owns them. TFLite-Micro and TensorFlow are imported on first use (TensorFlow alone takes seconds)."""
from __future__ import annotations

import re
import warnings

import numpy as np
from tqdm import tqdm

from edgecore.io import quiet_fd
from edgecore.tflite_graph import describe_model

DEFAULT_ARENA = 1 << 20  # generous arena for running; the real need is measured by tflm_arena_bytes


def tflm_invoke(tflite_bytes: bytes, int8_images: np.ndarray, arena_size: int = DEFAULT_ARENA,
                progress: bool = False) -> np.ndarray:
    """Run each int8 NHWC image through the real TFLite-Micro interpreter; returns int8 outputs [N, C]."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=arena_size)
    outs = []
    for img in tqdm(int8_images, desc="TFLite-Micro", unit="img", disable=not progress, leave=False):
        interp.set_input(np.ascontiguousarray(img[None]), 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs).astype(np.int8)


def tflm_arena_bytes(tflite_bytes: bytes) -> int:
    """Arena bytes TFLite-Micro actually used (RecordingMicroAllocator), after one invoke."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=DEFAULT_ARENA)
    shape = describe_model(tflite_bytes)["inputs"][0]["shape"]
    interp.set_input(np.zeros(shape, np.int8), 0)
    interp.invoke()
    with quiet_fd(2) as text:
        interp.print_allocations()
    found = re.search(r"Arena allocation total (\d+) bytes", text[0])
    if not found:
        raise RuntimeError(f"TFLite-Micro did not report its arena use; it printed: {text[0][:300]!r}")
    return int(found.group(1))


def tflite_ref_invoke(tflite_bytes: bytes, int8_images: np.ndarray) -> np.ndarray:
    """Same as tflm_invoke with tf.lite's reference kernels (BUILTIN_REF, not XNNPACK)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interp = tf.lite.Interpreter(model_content=tflite_bytes,
                                     experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i_idx, o_idx = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    outs = []
    for img in int8_images:
        interp.set_tensor(i_idx, np.ascontiguousarray(img[None]))
        interp.invoke()
        outs.append(interp.get_tensor(o_idx).reshape(-1).copy())
    return np.stack(outs).astype(np.int8)
