"""Edge TPU export: Edge TPU rules on the full-INT8 .tflite, compiler handling, tf.lite agreement."""
import json
import shutil

import pytest

from _export_fixture import tiny_run
from export import EXPORTERS
from export.edgetpu import COMPILER_NOT_INSTALLED, check_rules, parse_compiler_output


@pytest.fixture(scope="module")
def edgetpu(tmp_path_factory):
    out = tmp_path_factory.mktemp("edgetpu")
    return out, EXPORTERS["edgetpu"](tiny_run(), out)


def test_tflite_meets_edgetpu_rules_and_agrees(edgetpu):
    out, m = edgetpu
    assert m["edgetpu_rule_problems"] == 0
    assert m["edgetpu_ops_checked"] == m["edgetpu_ops_in_supported_list"] == 5
    assert m["edgetpu_int8_tflite_agreement"] >= 0.98
    ops = json.loads((out / "model.json").read_text())["edgetpu_ops"]
    assert [o["op"] for o in ops] == ["CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert (out / "model_int8.tflite").read_bytes() == (tiny_run() / "quant" / "model_int8.tflite").read_bytes()


def test_compiler_is_run_or_reported_missing(edgetpu):
    out, m = edgetpu
    if shutil.which("edgetpu_compiler"):
        assert m["edgetpu_compiler"] == "compiled" and m["edgetpu_ops_on_edgetpu"] > 0
        assert (out / "model_int8_edgetpu.tflite").is_file()
    else:
        assert m["edgetpu_compiler"] == m["edgetpu_ops_on_edgetpu"] == COMPILER_NOT_INSTALLED


def test_float_tflite_breaks_the_rules(tmp_path):
    import tensorflow as tf

    k = tf.keras.Sequential([tf.keras.Input((None, 8, 3)), tf.keras.layers.Conv2D(4, 3),
                             tf.keras.layers.Lambda(tf.math.cumsum)])
    path = tmp_path / "float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(k).convert())
    problems = check_rules(path)["problems"]
    assert any("float32 (Edge TPU needs 8-bit quantized)" in p for p in problems)
    assert any("dynamic shape" in p for p in problems)
    assert any("CUMSUM: not in the Edge TPU supported-op list" in p for p in problems)


def test_compiler_summary_parser():
    log = """Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 40 ms.
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: model_int8_edgetpu.log

Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
CUMSUM                         1          Operation not supported
"""
    parsed = parse_compiler_output(log)
    assert (parsed["ops_total"], parsed["ops_on_edgetpu"], parsed["ops_on_cpu"]) == (6, 5, 1)
    assert parsed["table"][-1] == {"op": "CUMSUM", "count": 1, "status": "Operation not supported"}


def test_a_truncated_tflite_is_one_line_error(tmp_path):
    from edgecore.errors import UserError

    path = tmp_path / "cut.tflite"
    path.write_bytes((tiny_run() / "quant" / "model_int8.tflite").read_bytes()[:200])
    with pytest.raises(UserError, match="cut.tflite is not a TFLite flatbuffer") as e:
        check_rules(path)
    assert "\n" not in str(e.value)
    path.write_bytes(b"garbage, no identifier")
    with pytest.raises(UserError, match="no TFL3 identifier"):
        check_rules(path)
