"""OpenVINO export: FP32 and NNCF INT8 IR measured with the CPU plugin."""
import pytest

from _export_fixture import tiny_run
from export import EXPORTERS


@pytest.fixture(scope="module")
def openvino(tmp_path_factory):
    out = tmp_path_factory.mktemp("openvino")
    return out, EXPORTERS["openvino"](tiny_run(), out, calib=40)


def test_ir_files_load_and_int8_is_quantized(openvino):
    import openvino as ov

    out, m = openvino
    core = ov.Core()
    fp32 = core.read_model(str(out / "model_fp32.xml"))
    int8 = core.read_model(str(out / "model_int8.xml"))
    assert not any(op.get_type_name() == "FakeQuantize" for op in fp32.get_ops())
    assert sum(op.get_type_name() == "FakeQuantize" for op in int8.get_ops()) >= 3
    assert m["openvino_calibration_images"] == 40


def test_agreement_with_float_student(openvino):
    _, m = openvino
    assert m["openvino_fp32_agreement"] >= 0.995
    assert m["openvino_int8_agreement"] >= 0.98
    assert m["openvino_fp32_cpu_latency_ms"] > 0 and m["openvino_int8_cpu_latency_ms"] > 0
