"""Per-op kernel tests on the emulated Cortex-M0+: one single-op model per kernel variant the compiler emits (the
M0+ assembly's RGB stem rows, offset table, pointwise byte, word and buffered word loops, channel tails, unrolled and
table-driven depthwise, border windows, odd channel counts that take the C paths; pooling, mean, fully
connected, softmax, add), each compiled to C, golden outputs from TFLite-Micro. All cases go into ONE firmware
image: its model_run dispatches on the first input byte, each boot self-test image is one case, so one boot
checks them all. A case that fails on the host too points at the compiler or the C kernels; one that fails
only in the emulator points at the assembly."""
import argparse
import ctypes
import re
import shutil
import subprocess

import numpy as np
import pytest

from export.rp2040.emulator import emulator_missing

pytestmark = pytest.mark.emulator

_missing = emulator_missing() or (None if shutil.which("arm-none-eabi-gcc") else "arm-none-eabi-gcc is not installed")
if _missing:
    pytest.skip(f"M0+ kernel tests need the toolchain and rp2040js: {_missing}", allow_module_level=True)
keras = pytest.importorskip("tensorflow").keras
L = keras.layers

from _tflite_fixture import keras_model, random_int8, tflm_run, to_int8_tflite  # noqa: E402

from edgecore import tflite_graph  # noqa: E402
from export.rp2040 import build  # noqa: E402
from export.rp2040.compile import compile_graph  # noqa: E402
from export.rp2040.emulator import emulator  # noqa: E402
from export.rp2040.host import CFLAGS, NN_DIR, kernel_sources  # noqa: E402
from export.rp2040.selftest import write_selftest_sources  # noqa: E402

# name -> (input shape, layers); outputs stay under 256 bytes (a self-test line holds MODEL_NUM_CLASSES scores).
CASES = {
    "conv_rgb_3x3_s2_same_relu6": ((10, 12, 3),
                                   lambda x: L.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(x)),
    # padded on every side: the top and bottom rows run over a padded strip, one call each
    "pad_then_conv_rgb_3x3_s2": ((10, 12, 3), lambda x: L.Conv2D(6, 3, strides=2)(L.ZeroPadding2D(1)(x))),
    "conv_rgb_3x3_s1_odd_width": ((6, 7, 3), lambda x: L.Conv2D(5, 3, padding="same")(x)),
    # a large bias widens the output range: right shifts beyond the short record's, through the unrolled loops
    "conv_rgb_3x3_s2_long_records": ((10, 12, 3), lambda x: L.Conv2D(
        5, 3, strides=2, padding="same", bias_initializer=keras.initializers.Constant(40.0))(x)),
    "conv_5x5_s2_same_relu": ((8, 9, 5), lambda x: L.Conv2D(9, 5, strides=2, padding="same", activation="relu")(x)),
    "conv_3x2_s1_valid": ((6, 7, 6), lambda x: L.Conv2D(7, (3, 2), padding="valid")(x)),
    "conv_144_taps_same": ((5, 5, 16), lambda x: L.Conv2D(4, 3, padding="same")(x)),
    "conv_s3_same": ((10, 10, 4), lambda x: L.Conv2D(4, 3, strides=3, padding="same")(x)),
    "pointwise_bytes_odd": ((3, 5, 10), lambda x: L.Conv2D(11, 1)(x)),
    "pointwise_words_relu6": ((4, 4, 16), lambda x: L.Conv2D(8, 1, activation="relu6")(x)),
    "pointwise_words_tail": ((5, 6, 8), lambda x: L.Conv2D(7, 1)(x)),
    # fewer than 4 channels: no full block, every pixel's tail block writes through nn_blocks' scratch
    "pointwise_words_3_channels": ((4, 5, 8), lambda x: L.Conv2D(3, 1)(x)),
    "conv_rgb_3x3_s2_2_channels": ((8, 10, 3), lambda x: L.Conv2D(2, 3, strides=2, padding="same")(x)),
    # oc % 4 == 0 takes the specialised loops (.Lrow9s, .Lws, .Lwx): their requantization's slow paths and act_max too
    "conv_rgb_3x3_s2_same_relu_c8": ((8, 10, 3), lambda x: L.Conv2D(8, 3, strides=2, padding="same",
                                                                     activation="relu")(x)),
    "conv_rgb_3x3_s2_long_records_c8": ((8, 10, 3), lambda x: L.Conv2D(
        8, 3, strides=2, padding="same", bias_initializer=keras.initializers.Constant(40.0))(x)),
    "pointwise_words_long_records_c8": ((3, 4, 16), lambda x: L.Conv2D(
        8, 1, bias_initializer=keras.initializers.Constant(40.0))(x)),
    "pointwise_relu6_saturates_c8": ((4, 4, 16), lambda x: L.Conv2D(
        8, 1, activation="relu6", kernel_initializer=keras.initializers.RandomNormal(0.0, 3.0))(x)),
    # the output one byte past a word boundary: the byte-storing block ends of the same loops
    "depthwise_3x3_s1_same_c8_odd_out": ((5, 6, 8), lambda x: L.DepthwiseConv2D(3, padding="same")(x)),
    "pointwise_words_c8_odd_out": ((4, 4, 16), lambda x: L.Conv2D(8, 1)(x)),
    "conv_rgb_3x3_s2_c8_odd_out": ((8, 10, 3), lambda x: L.Conv2D(8, 3, strides=2, padding="same")(x)),
    "pointwise_words_odd_count": ((3, 4, 12), lambda x: L.Conv2D(6, 1)(x)),
    # 16 to 128 inputs and 16 channels or more: each pixel's inputs sign-extended once into a buffer (.Lwx)
    "pointwise_buffered_c16": ((3, 5, 16), lambda x: L.Conv2D(16, 1)(x)),
    "pointwise_buffered_relu6_saturates_c16": ((2, 3, 24), lambda x: L.Conv2D(
        16, 1, activation="relu6", kernel_initializer=keras.initializers.RandomNormal(0.0, 3.0))(x)),
    "pointwise_buffered_long_records_c20": ((2, 3, 16), lambda x: L.Conv2D(
        20, 1, bias_initializer=keras.initializers.Constant(40.0))(x)),
    "pointwise_buffered_128_inputs": ((1, 2, 128), lambda x: L.Conv2D(16, 1)(x)),
    "pointwise_words_136_inputs_c16": ((1, 1, 136), lambda x: L.Conv2D(16, 1)(x)),
    "pointwise_words_8_inputs_c16": ((2, 3, 8), lambda x: L.Conv2D(16, 1)(x)),
    "pointwise_relu6_saturates": ((4, 4, 16), lambda x: L.Conv2D(
        7, 1, activation="relu6", kernel_initializer=keras.initializers.RandomNormal(0.0, 3.0))(x)),
    "depthwise_3x3_s1_same_c8": ((5, 6, 8), lambda x: L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)),
    "depthwise_3x3_s2_same_c4": ((9, 11, 4), lambda x: L.DepthwiseConv2D(3, strides=2, padding="same")(x)),
    # 8, 16 and 32 channels: taps at immediate offsets (.Ldw3c8/16/32); 64 takes .Ldw3
    "depthwise_3x3_s1_same_relu_c16": ((3, 4, 16), lambda x: L.DepthwiseConv2D(3, padding="same",
                                                                               activation="relu")(x)),
    "depthwise_3x3_s2_valid_c32": ((5, 3, 32), lambda x: L.DepthwiseConv2D(3, strides=2, activation="relu")(x)),
    "depthwise_3x3_valid_c64": ((3, 3, 64), lambda x: L.DepthwiseConv2D(3)(x)),
    "depthwise_3x3_long_records_c8": ((5, 6, 8), lambda x: L.DepthwiseConv2D(
        3, padding="same", bias_initializer=keras.initializers.Constant(40.0))(x)),
    "depthwise_3x5_valid_c8": ((7, 8, 8), lambda x: L.DepthwiseConv2D((3, 5), padding="valid", activation="relu")(x)),
    "depthwise_2x2_even_taps_c8": ((5, 6, 8), lambda x: L.DepthwiseConv2D(2, padding="same")(x)),
    "depthwise_5x5_s2_same_c12": ((7, 7, 12), lambda x: L.DepthwiseConv2D(5, strides=2, padding="same")(x)),
    "depthwise_c6_c_path": ((5, 6, 6), lambda x: L.DepthwiseConv2D(3, padding="same")(x)),
    "pad_then_depthwise_c4": ((7, 7, 4), lambda x: L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(1)(x))),
    "avgpool_3_s2_same": ((9, 11, 4), lambda x: L.AveragePooling2D(3, strides=2, padding="same")(x)),
    "mean_hw": ((6, 5, 7), lambda x: L.GlobalAveragePooling2D()(x)),
    # 4 channels a word, over more than 256 pixels (the 16-bit lane sums are flushed every 256)
    "mean_hw_300_pixels_c4": ((20, 15, 4), lambda x: L.GlobalAveragePooling2D()(x)),
    "fully_connected": ((3, 4, 5), lambda x: L.Dense(9)(L.Flatten()(x))),
    "softmax": ((2, 3, 4), lambda x: L.Softmax()(L.Dense(10)(L.Flatten()(x)))),
    "add": ((4, 5, 3), lambda x: L.Add()([L.Conv2D(4, 1)(x), L.Conv2D(4, 3, padding="same")(x)])),
}
SAMPLES = 2  # random inputs per case


def _case_source(i: int, compiled) -> str:
    """The case's model.c as a translation unit of its own: its model.h inlined, model_run renamed case<i>_run,
    no class names."""
    header = compiled.model_h.replace("#ifndef MODEL_H", "").replace("#define MODEL_H", "").replace("#endif", "")
    text = compiled.model_c.replace('#include "model.h"', header)
    text = re.sub(r"^.*\bmodel_class_names\b.*$", "", text, flags=re.M)
    return re.sub(r"\bmodel_run\b", f"case{i}_run", text)


def _dispatch_sources(n: int, in_bytes: int, out_bytes: int, arena: int, odd: list[int]) -> tuple[str, str]:
    """model.h/model.c of the test image: input byte 0 picks the case, its input starts at byte 4 (word-aligned).
    The cases with odd[k] write their output one byte past a word boundary (nn_blocks' loops that store a word need
    an aligned y and fall back to their byte-storing block end otherwise), then it is copied to the output."""
    h = ("#ifndef MODEL_H\n#define MODEL_H\n#include <stdint.h>\n"
         f"#define MODEL_INPUT_H 1\n#define MODEL_INPUT_W {in_bytes}\n#define MODEL_INPUT_C 1\n"
         f"#define MODEL_INPUT_BYTES {in_bytes}\n#define MODEL_NUM_CLASSES {out_bytes}\n"
         f"#define MODEL_ARENA_BYTES {arena}\n"
         "extern const char *const model_class_names[MODEL_NUM_CLASSES];\n"
         "int model_run(const int8_t *input, int8_t *output);\n#endif\n")
    decls = "".join(f"int case{i}_run(const int8_t *input, int8_t *output);\n" for i in range(n))
    table = ", ".join(f"case{i}_run" for i in range(n))
    names = ", ".join(f'"o{k}"' for k in range(out_bytes))
    odd_table = ", ".join(str(int(o)) for o in odd)
    c = ('#include <string.h>\n#include "model.h"\n' + decls +
         f"const char *const model_class_names[MODEL_NUM_CLASSES] = {{{names}}};\n"
         f"static int (*const cases[{n}])(const int8_t *, int8_t *) = {{{table}}};\n"
         f"static const uint8_t odd[{n}] = {{{odd_table}}};\n"
         "static int8_t odd_out[MODEL_NUM_CLASSES + 4] __attribute__((aligned(4)));\n"
         "int model_run(const int8_t *input, int8_t *output) {\n"
         "    memset(output, 0, MODEL_NUM_CLASSES);\n"
         f"    const uint8_t k = (uint8_t)input[0];\n    if (k >= {n}) return 1;\n"
         "    if (!odd[k]) return cases[k](input + 4, output);\n"
         "    memset(odd_out, 0, sizeof odd_out);\n"
         "    const int rc = cases[k](input + 4, odd_out + 1);\n"
         "    memcpy(output, odd_out + 1, MODEL_NUM_CLASSES);\n    return rc;\n}\n")
    return h, c


@pytest.fixture(scope="module")
def kernel_image(tmp_path_factory):
    """(case names, self-test inputs, TFLM golden outputs, gen dir, firmware dir)."""
    tmp = tmp_path_factory.mktemp("m0_kernels")
    gen, fw = tmp / "gen", tmp / "fw"
    gen.mkdir()
    names, inputs, golden, arena = sorted(CASES), [], [], 0
    for i, name in enumerate(names):
        shape, layers = CASES[name]
        model = to_int8_tflite(keras_model(shape, layers, seed=7), shape, seed=3)
        (tmp / f"{name}.tflite").write_bytes(model)
        compiled = compile_graph(tflite_graph.load(tmp / f"{name}.tflite"))
        arena = max(arena, compiled.summary["arena_bytes"])
        (gen / f"case{i}.c").write_text(_case_source(i, compiled))
        x = random_int8(shape, SAMPLES, seed=11 + i)
        golden += list(tflm_run(model, x))
        inputs += [(i, xi.reshape(-1)) for xi in x]
    in_bytes = -(-(4 + max(xi.size for _, xi in inputs)) // 4) * 4
    out_bytes = max(g.size for g in golden)
    assert out_bytes < 256, "a case's output does not fit one self-test line"
    images = np.zeros((len(inputs), 1, in_bytes, 1), np.int8)
    for j, (i, xi) in enumerate(inputs):
        images[j, 0, 0, 0] = i
        images[j, 0, 4:4 + xi.size, 0] = xi
    h, c = _dispatch_sources(len(names), in_bytes, out_bytes, arena, [n.endswith("_odd_out") for n in names])
    (gen / "model.h").write_text(h)
    (gen / "model.c").write_text(c)
    write_selftest_sources(gen, images, [0] * len(images))
    fw.mkdir()
    build._make(gen, fw, "kernels", 8192, "w25q080")
    return names, images, golden, gen, fw


def _mismatches(names, golden, got) -> str:
    """'' when every output equals its golden one, else the failing cases' names first, then the outputs."""
    bad = [(names[j // SAMPLES], f"sample {j % SAMPLES}: want {g.tolist()} got {o[:g.size].tolist()}")
           for j, (g, o) in enumerate(zip(golden, got)) if o[:g.size].tolist() != g.tolist()]
    if not bad:
        return ""
    return "failing: " + ", ".join(sorted({n for n, _ in bad})) + "\n" + "\n".join(f"{n} {s}" for n, s in bad)


def test_every_kernel_variant_on_the_host_equals_tflite_micro(kernel_image, tmp_path):
    """The test image's C, built for the host: the compiler's constants and the C kernels."""
    names, images, golden, gen, _ = kernel_image
    lib = tmp_path / "kernels.so"
    subprocess.run(["gcc", *CFLAGS, f"-I{NN_DIR}", f"-I{gen}", *map(str, sorted(gen.glob("*.c"))),
                    *map(str, kernel_sources()), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    so.model_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    n_out = max(g.size for g in golden)
    got = []
    for img in images:
        out = np.zeros(n_out, np.int8)
        assert so.model_run(np.ascontiguousarray(img.reshape(-1)).ctypes.data, out.ctypes.data) == 0
        got.append(out)
    bad = _mismatches(names, golden, got)
    assert not bad, bad


def test_every_kernel_variant_on_the_m0_equals_tflite_micro(kernel_image):
    """The same C and the M0+ assembly in rp2040js, all cases in one boot; prints each case's cycles."""
    names, images, golden, _, fw = kernel_image
    with emulator(fw / "kernels.uf2") as port:
        boot = port.wait_for(b"READY", 300).decode()
    lines = re.findall(r"selftest (\d+) label=\w+ class=\w+ rc=(\d+) cycles=(\d+) scores=([-\d,]+)", boot)
    assert len(lines) == len(images), boot[-500:]
    assert all(rc == "0" for _, rc, _, _ in lines)
    got = [np.array([int(v) for v in s.split(",")], np.int8) for _, _, _, s in lines]
    for j in range(0, len(lines), SAMPLES):
        print(f"{names[j // SAMPLES]:32s} {lines[j][2]:>8s} cycles")
    bad = _mismatches(names, golden, got)
    assert not bad, bad
