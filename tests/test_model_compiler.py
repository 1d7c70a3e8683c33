"""The RP2040 model compiler: whole graphs bit-exact with TFLite-Micro, a smaller arena, clean refusals, CLI."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _tflite_fixture import keras_model, random_int8, tflm_arena_bytes, tflm_run, to_int8_tflite

tf = pytest.importorskip("tensorflow")
L = tf.keras.layers
ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "artifacts" / "default" / "quant" / "model_int8.tflite"


def _mixed(x):
    """Every supported op, odd sizes, channels not a multiple of 4."""
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Add()([x, L.Conv2D(6, 1)(x)])
    x = L.ZeroPadding2D(((1, 0), (1, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    x = L.Conv2D(7, 3, padding="valid")(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return L.Softmax()(L.Dense(5)(x))


def _separable(x):
    """A small copy of the default student's structure (stem conv, depthwise-separable blocks, GAP, FC)."""
    he = "he_normal"  # keeps activations alive through random layers
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6", kernel_initializer=he)(x)
    for ch, s in ((12, 2), (20, 1), (33, 2)):
        x = L.DepthwiseConv2D(3, strides=s, padding="same", activation="relu6", depthwise_initializer=he)(x)
        x = L.Conv2D(ch, 1, activation="relu6" if ch != 33 else None, kernel_initializer=he)(x)
    x = L.GlobalAveragePooling2D()(x)
    return L.Softmax()(L.Dense(6, kernel_initializer=he)(x) * 8.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, shape, build in (("mixed", (17, 15, 3), _mixed), ("separable", (33, 31, 3), _separable)):
        b = to_int8_tflite(keras_model(shape, build, seed=5), shape, seed=2)
        (d / f"{name}.tflite").write_bytes(b)
        out[name] = (d / f"{name}.tflite", b, shape)
    return out


@pytest.mark.parametrize("name", ["mixed", "separable"])
def test_graph_bit_exact_and_smaller_arena(models, name):
    from export.rp2040.host import HostModel

    path, b, shape = models[name]
    hm = HostModel(path)
    x = random_int8(shape, 64, seed=4)
    ours, ref = hm.run(x), tflm_run(b, x)
    assert len({tuple(r) for r in ref}) > 8, "reference outputs barely vary: the test would prove little"
    np.testing.assert_array_equal(ours, ref)
    tflm = tflm_arena_bytes(b)
    print(f"{name}: compiled arena {hm.arena_bytes} B, TFLM arena {tflm} B")
    assert 0 < hm.arena_bytes < tflm


def test_arena_plan_reuses_memory(models):
    from export.rp2040.host import HostModel

    s = HostModel(models["separable"][0]).summary
    arena_tensors = [st["output_bytes"] for st in s["steps"] if st["output"].startswith("(arena")]
    # liveness lets buffers share bytes: the arena is far below the sum of all intermediate tensors
    assert s["arena_bytes"] < sum(arena_tensors) / 2


def test_refuses_float_model(tmp_path):
    from edgecore.errors import UserError
    from export.rp2040.compile import compile_file

    m = keras_model((8, 8, 3), lambda x: L.Conv2D(4, 3)(x))
    p = tmp_path / "float.tflite"
    p.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    with pytest.raises(UserError, match="float32"):
        compile_file(p, tmp_path / "out")
    assert not (tmp_path / "out" / "model.c").exists()


def test_refuses_unsupported_op_by_name(tmp_path):
    from edgecore.errors import UserError
    from export.rp2040.compile import compile_file

    shape = (8, 8, 3)
    b = to_int8_tflite(keras_model(shape, lambda x: L.MaxPooling2D(2)(L.Conv2D(4, 3)(x))), shape)
    p = tmp_path / "maxpool.tflite"
    p.write_bytes(b)
    with pytest.raises(UserError, match="unsupported op MAX_POOL_2D"):
        compile_file(p, tmp_path / "out")


def test_weights_placement(models):
    """sram (the default) marks every streamed constant array NN_SRAM (rp2040.ld copies it to SRAM); flash none."""
    from edgecore.errors import UserError
    from edgecore import tflite_graph
    from export.rp2040.compile import compile_graph

    g = tflite_graph.load(models["separable"][0])
    sram, flash = compile_graph(g), compile_graph(g, placement="flash")
    arrays = [ln for ln in sram.model_c.splitlines() if ln.startswith("static const") and "[" in ln]
    assert arrays and all(" NN_SRAM = {" in ln for ln in arrays)
    assert "NN_SRAM" not in flash.model_c
    assert (sram.summary["weights_in"], flash.summary["weights_in"]) == ("sram", "flash")
    with pytest.raises(UserError, match="placement"):
        compile_graph(g, placement="eeprom")


def test_cli(models, tmp_path):
    cmd = [sys.executable, "-m", "export.rp2040.compile"]
    assert subprocess.run(cmd + ["--help"], cwd=ROOT, capture_output=True).returncode == 0
    r = subprocess.run(cmd + ["--tflite", str(models["mixed"][0]), "--out", str(tmp_path / "c"),
                              "--class-names", "a,b,c,d,e"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "arena" in r.stdout
    h = (tmp_path / "c" / "model.h").read_text()
    assert "#define MODEL_NUM_CLASSES 5" in h and "#define MODEL_INPUT_H 17" in h
    assert '"a", "b", "c", "d", "e"' in (tmp_path / "c" / "model.c").read_text()
    bad = subprocess.run(cmd + ["--tflite", str(tmp_path / "missing.tflite"), "--out", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not STUDENT.is_file(), reason="default student not built (run the pipeline first)")
def test_default_student_bit_exact():
    from export.rp2040.host import HostModel

    b = STUDENT.read_bytes()
    hm = HostModel(STUDENT)
    x = random_int8(hm.input_shape, 16, seed=9)
    np.testing.assert_array_equal(hm.run(x), tflm_run(b, x))
    assert hm.arena_bytes < tflm_arena_bytes(b)


def test_packed_weight_stream():
    """lower._blocks4 lays out what nn.h documents and nn_wtap decodes: packed tap pairs (w_a + 2^16 w_b), an odd
    last tap plain, each block's records after its weights; depthwise plain. _pairs_fit refuses a pair of -128s."""
    from export.rp2040.lower import _blocks4, _pairs_fit

    rng = np.random.default_rng(5)
    for out_c, n in ((6, 27), (8, 16), (3, 1), (5, 4)):
        w2 = rng.integers(-127, 128, (out_c, n))
        records = rng.integers(0, 2**32, (out_c, 8))
        for packed in (True, False):
            stream = _blocks4(w2, records, packed).astype(np.int64).reshape(-(-out_c // 4), -1)
            body = 4 * ((n + 1) // 2) if packed else 4 * n
            assert stream.shape[1] == body + 32
            for o in range(out_c):
                block, j = stream[o // 4], o % 4
                assert np.array_equal(block[body + 8 * j:body + 8 * j + 8] % 2**32, records[o])
                for t in range(n):
                    if not packed:
                        got = block[4 * t + j]
                    elif t == n - 1 and n % 2:
                        got = block[2 * t + j]
                    else:
                        word = int(block[4 * (t // 2) + 2 * (j // 2) + t % 2])
                        lo = ((word & 0xFFFF) ^ 0x8000) - 0x8000
                        got = lo if j % 2 == 0 else (word - lo) >> 16
                    assert got == w2[o, t], (out_c, n, packed, o, t)
    assert _pairs_fit(np.array([[127, -127, 127, 127]])) and not _pairs_fit(np.array([[-128, -128, 0, 0]]))
