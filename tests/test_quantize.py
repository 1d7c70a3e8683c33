"""Full-INT8 .tflite through torchao PT2E QAT and litert-torch: contract quantization, QAT ranges = shipped ranges,
TFLM vs tf.lite reference, C array, arena, determinism, ONNX."""
import re
import shutil

import numpy as np
import pytest
import torch

import _tiny_run
from compress import distill, pt2e_int8, quantize
from compress.distill import TrainParams, predict, train_student
from edgecore.errors import UserError
from edgecore.io import quiet_fd
from edgecore.tflite_graph import describe_model
from edgecore.interpreters import tflite_ref_invoke, tflm_arena_bytes, tflm_invoke
from compress.quantize import (QuantParams, c_array, check_int8_model, convert, quantize_student, scale_gap,
                               tensor_scales)
from edgecore.preprocess import standardize, to_int8 as to_int8_input
from compress.student import StudentConfig

CFG = StudentConfig(input_size=_tiny_run.SIZE)
QAT = QuantParams(qat_epochs=2, batch_size=16, calib_images=32)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    y_train = np.repeat(np.arange(6), 12)
    x_train = _tiny_run.images(rng, y_train)
    y_test = np.repeat(np.arange(6), 6)
    x_test = _tiny_run.images(rng, y_test)
    soft = np.full((len(y_train), 6), 0.02, np.float32)
    soft[np.arange(len(y_train)), y_train] = 0.9
    model = train_student(x_train, soft, y_train, CFG, TrainParams(epochs=3, batch_size=16, threads=1), seed=0,
                          log=lambda m: None)
    prepared = quantize_student(model, x_train, soft, y_train, x_train[:32], QAT, seed=0, log=lambda m: None)
    tflite = convert(prepared, CFG.input_size)
    return {"model": model, "prepared": prepared, "tflite": tflite, "x_train": x_train, "y_train": y_train,
            "soft": soft, "x_test": x_test, "y_test": y_test}


def test_tflite_is_full_int8_with_contract_io(trained):
    d = describe_model(trained["tflite"])
    assert d["ops"] == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 5 + ["MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    (inp,), (out,) = d["inputs"], d["outputs"]
    assert inp["type"] == "INT8" and inp["shape"] == [1, 32, 32, 3] and inp["zero_points"] == [-128]
    assert inp["scales"][0] == pytest.approx(1 / 255, abs=1e-9)
    assert out["type"] == "INT8" and out["zero_points"] == [-128] and out["scales"][0] == pytest.approx(1 / 256)
    assert len(d["weights"]) == 12
    for w in d["weights"]:
        channels = w["shape"][-1] if w["op"] == "DEPTHWISE_CONV_2D" else w["shape"][0]
        assert w["type"] == "INT8" and len(w["scales"]) == channels > 1 and set(w["zero_points"]) == {0}


def test_the_model_ships_the_ranges_qat_trained_under(trained):
    qat = pt2e_int8.activation_scales(trained["prepared"])
    shipped = tensor_scales(trained["tflite"])
    assert len(qat) == len(shipped) == 15  # input, 11 convs, mean, fully connected, softmax
    assert scale_gap(qat, shipped) < 1e-6
    assert scale_gap(qat[:-1], shipped) == float("inf")


def test_int8_model_computes_the_qat_graph(trained):
    x = trained["x_test"]
    with torch.no_grad():
        fake = trained["prepared"](distill.to_input(x)).numpy()
    int8 = (tflm_invoke(trained["tflite"], to_int8_input(x)).astype(np.float32) + 128) / 256
    assert np.abs(fake - int8).max() <= 2.5 / 256  # rounding order differs by at most a couple of LSB


def test_input_quantization_is_forced_even_for_dim_calibration_images(trained):
    dim = (trained["x_train"][:16] // 3).astype(np.uint8)  # max pixel 85
    ptq = quantize_student(trained["model"], dim, trained["soft"][:16], trained["y_train"][:16], dim,
                           QuantParams(qat_epochs=0, calib_images=16), seed=0, log=lambda m: None)
    inp = describe_model(convert(ptq, CFG.input_size))["inputs"][0]
    assert inp["zero_points"] == [-128] and inp["scales"][0] == pytest.approx(1 / 255, abs=1e-9)


def test_conversion_is_byte_identical(trained):
    t = trained
    again = quantize_student(t["model"], t["x_train"], t["soft"], t["y_train"], t["x_train"][:32], QAT, seed=0,
                             log=lambda m: None)
    assert convert(again, CFG.input_size) == t["tflite"]


def test_check_rejects_a_float_model(trained):
    import litert_torch

    nhwc = litert_torch.to_channel_last_io(pt2e_int8.Probabilities(trained["model"].eval()), args=[0])
    with quiet_fd(2):
        float_model = bytes(litert_torch.convert(nhwc, (torch.zeros(1, 32, 32, 3),)).model_content())
    with pytest.raises(RuntimeError, match="input is FLOAT32"):
        check_int8_model(float_model)


def test_tflm_matches_tflite_reference_kernels(trained):
    q = to_int8_input(trained["x_test"])
    assert np.array_equal(q.astype(np.int16), standardize(trained["x_test"]).astype(np.int16) - 128)
    micro = tflm_invoke(trained["tflite"], q)
    ref = tflite_ref_invoke(trained["tflite"], q)
    assert micro.shape == ref.shape == (len(q), 6) and micro.dtype == np.int8
    assert np.abs(micro.astype(np.int16) - ref.astype(np.int16)).max() <= 1


def test_arena_measurement_is_exact(trained):
    arena = tflm_arena_bytes(trained["tflite"])
    q = to_int8_input(trained["x_test"][:2])
    tflm_invoke(trained["tflite"], q, arena_size=arena)  # enough
    with pytest.raises(RuntimeError, match="allocate"):
        tflm_invoke(trained["tflite"], q, arena_size=arena - 64)


def test_c_array_bytes_equal_the_tflite(trained):
    model = trained["tflite"]
    header, body = c_array(model)
    assert "extern const unsigned char g_model_data[];" in header
    assert "extern const unsigned int g_model_data_len;" in header
    assert "alignas(16) const unsigned char g_model_data[] = {" in body
    array = re.search(r"g_model_data\[\] = \{(.*?)\};", body, re.S).group(1)
    parsed = bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-f]{2})", array))
    assert parsed == model
    assert int(re.search(r"g_model_data_len = (\d+);", body).group(1)) == len(model)


def test_onnx_float_and_qdq(trained, tmp_path):
    import onnx

    float_path, qdq_path = tmp_path / "f.onnx", tmp_path / "q.onnx"
    quantize.export_onnx_float(trained["model"], CFG.input_size, float_path)
    x = trained["x_test"]
    torch_probs = torch.softmax(torch.from_numpy(predict(trained["model"], x)), 1).numpy()
    np.testing.assert_allclose(quantize.onnx_predict(float_path, x), torch_probs, atol=1e-5)
    float_model = onnx.load(str(float_path))
    assert {n.op_type for n in float_model.graph.node} == {"Pad", "Conv", "Clip", "ReduceMean", "Flatten", "Gemm", "Softmax"}
    assert {o.domain for o in float_model.opset_import} == {""} and float_model.opset_import[0].version == 17
    quantize.export_onnx_qdq(float_path, trained["x_train"][:16], qdq_path)
    graph = onnx.load(str(qdq_path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert any(v.ndim == 1 and v.size > 1 for k, v in scales.items() if "scale" in k)  # per-channel weights
    qdq = quantize.onnx_predict(qdq_path, x)
    assert qdq.shape == (len(x), 6) and np.abs(qdq - torch_probs).max() < 0.2


def test_quantize_stage_end_to_end(distilled_run, tmp_path):
    run = _tiny_run.make_run(tmp_path / "undistilled")
    with pytest.raises(UserError, match="run the distill stage first"):
        quantize.quantize_run(run, _tiny_run.quantize_config())
    assert not (run / "quant").exists()
    run = tmp_path / "r"
    shutil.copytree(distilled_run[0], run)  # make_run + distill_run(distill_config()), shared with other modules
    metrics = quantize.quantize_run(run, _tiny_run.quantize_config())
    out = run / "quant"
    for name in ("model_int8.tflite", "model_data.h", "model_data.cc", "student_float.onnx",
                 "student_int8_qdq.onnx", "tflm.json", "manifest.json"):
        assert (out / name).is_file(), name
    tflite = (out / "model_int8.tflite").read_bytes()
    assert metrics["model_bytes"] == len(tflite) and metrics["arena_bytes"] == tflm_arena_bytes(tflite)
    assert metrics["tflm_vs_ref_max_lsb"] <= 1 and metrics["qat_vs_deployed_scale_gap"] < 1e-6
    assert "kd_gain_points" in metrics and metrics["accuracy_data"] == "test split, 48 images"
    first = tflite
    quantize.quantize_run(run, _tiny_run.quantize_config())
    assert (out / "model_int8.tflite").read_bytes() == first
