"""Stage "quantize": full-INT8 .tflite verified in TFLite-Micro, its C array, float and INT8-QDQ ONNX -> R/quant/.

Route: the BN-folded QAT student is rebuilt as a TF graph (NHWC, 'SAME' padding = the student's
padding) and converted with a representative dataset from the training split.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import UserError
from .io import atomic_path, ensure_dir, sha256_bytes, write_bytes_atomic, write_json_atomic, write_text_atomic
from .manifest import record_stage, verify_inputs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INPUT_SCALE, INPUT_ZERO_POINT = 1.0 / 255.0, -128  # CONTRACT.md: int8 input = pixel - 128
OUTPUT_SCALE, OUTPUT_ZERO_POINT = 1.0 / 256.0, -128  # int8 softmax
ALLOWED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"}
DEFAULT_ARENA = 1 << 20  # generous arena for running; the real need is measured by tflm_arena_bytes


def to_int8_input(images_u8: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels -> the INT8 model's input (pixel - 128)."""
    return (images_u8.astype(np.int16) - 128).astype(np.int8)


# ---- TF graph and conversion ----

def _tf_function(folded: dict, input_size: int, in_channels: int):
    import tensorflow as tf

    layers = []
    for spec, w, b in folded["convs"]:
        # torch OIHW -> TF HWIO (conv) / HW C 1 (depthwise)
        wt = np.transpose(w, (2, 3, 0, 1)) if spec.kind == "dw" else np.transpose(w, (2, 3, 1, 0))
        layers.append((spec, tf.constant(np.ascontiguousarray(wt)), tf.constant(b)))
    fc_w, fc_b = tf.constant(np.ascontiguousarray(folded["fc"][0].T)), tf.constant(folded["fc"][1])

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, in_channels], tf.float32, name="input")])
    def student(x):
        for spec, w, b in layers:
            if spec.kind == "dw":
                x = tf.nn.depthwise_conv2d(x, w, [1, spec.stride, spec.stride, 1], "SAME")
            else:
                x = tf.nn.conv2d(x, w, spec.stride, "SAME")
            x = tf.nn.relu6(tf.nn.bias_add(x, b))
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.nn.softmax(tf.nn.bias_add(tf.matmul(x, fc_w), fc_b))

    return student


def convert_int8(folded: dict, input_size: int, calib_u8: np.ndarray, in_channels: int = 3) -> bytes:
    """Full-INT8 TFLite flatbuffer (int8 I/O, per-channel weights), checked against the contract."""
    import tensorflow as tf

    fn = _tf_function(folded, input_size, in_channels)
    calib = calib_u8.astype(np.float32) / 255.0
    # The converter takes the input range from the data; one saturated pixel pins it to [0, 1]
    # (0 is always included), which gives the contract's scale 1/255 and zero point -128.
    calib[0, 0, 0, :] = 1.0

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with _quiet_fd(2):
        model = bytes(conv.convert())
    check_int8_model(model)
    return model


@contextlib.contextmanager
def _quiet_fd(fd: int):
    """Send a C-level file descriptor to a temp file for the block; yields a reader of what was written."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(fd)
        os.dup2(tmp.fileno(), fd)
        captured = []
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def _schema():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def describe_model(tflite_bytes: bytes) -> dict:
    """Ops, I/O tensors and per-weight quantization read from the flatbuffer itself."""
    rt = _schema()
    schema = rt.schema_fb
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    m = rt.convert_bytearray_to_object(bytearray(tflite_bytes))
    g = m.subgraphs[0]

    def tensor(i):
        t = g.tensors[i]
        q = t.quantization
        return {"type": types[t.type], "shape": [int(s) for s in t.shape],
                "scales": [float(s) for s in (q.scale if q is not None and q.scale is not None else [])],
                "zero_points": [int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]}

    ops, weights = [], []
    for op in g.operators:
        name = names[rt.get_builtin_code_from_operator_code(m.operatorCodes[op.opcodeIndex])]
        ops.append(name)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            weights.append({"op": name, **tensor(op.inputs[1])})
    return {"ops": ops, "inputs": [tensor(i) for i in g.inputs], "outputs": [tensor(i) for i in g.outputs],
            "weights": weights}


def check_int8_model(tflite_bytes: bytes) -> dict:
    """Raise RuntimeError unless the model is full INT8 with the contract's I/O quantization."""
    d = describe_model(tflite_bytes)
    problems = []
    bad_ops = sorted(set(d["ops"]) - ALLOWED_OPS)
    if bad_ops:
        problems.append(f"ops outside the int8 set: {bad_ops}")
    (inp,), (out,) = d["inputs"], d["outputs"]
    for what, t, scale, zp in (("input", inp, INPUT_SCALE, INPUT_ZERO_POINT), ("output", out, OUTPUT_SCALE, OUTPUT_ZERO_POINT)):
        if t["type"] != "INT8" or t["zero_points"] != [zp] or len(t["scales"]) != 1 \
                or abs(t["scales"][0] - scale) > 1e-9:
            problems.append(f"{what} is {t['type']} scale {t['scales']} zero point {t['zero_points']}, "
                            f"expected INT8 scale {scale:.8f} zero point {zp}")
    for w in d["weights"]:
        channels = w["shape"][-1] if w["op"] == "DEPTHWISE_CONV_2D" else w["shape"][0]
        if w["type"] != "INT8" or len(w["scales"]) != channels or any(z != 0 for z in w["zero_points"]):
            problems.append(f"{w['op']} weights are {w['type']} with {len(w['scales'])} scales, "
                            f"expected per-channel symmetric INT8 ({channels} scales)")
    if problems:
        raise RuntimeError("INT8 conversion broke the contract: " + "; ".join(problems))
    return d


# ---- running the model: TFLite-Micro and the tf.lite reference kernels ----

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
    with _quiet_fd(2) as text:
        interp.print_allocations()
    found = re.search(r"Arena allocation total (\d+) bytes", text[0])
    if not found:
        raise RuntimeError(f"TFLite-Micro did not report its arena use; it printed: {text[0][:300]!r}")
    return int(found.group(1))


def tflite_ref_invoke(tflite_bytes: bytes, int8_images: np.ndarray) -> np.ndarray:
    """Same as tflm_invoke with tf.lite's reference kernels (BUILTIN_REF, not XNNPACK)."""
    import warnings

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


# ---- C array for TFLite-Micro ----

def c_array(tflite_bytes: bytes, source: str = "model_int8.tflite") -> tuple[str, str]:
    """(model_data.h, model_data.cc) holding the flatbuffer as `g_model_data` / `g_model_data_len`."""
    note = f"/* Generated by compress.quantize from {source} (sha256 {sha256_bytes(tflite_bytes)}). Do not edit. */\n"
    header = (note + "#ifndef MODEL_DATA_H_\n#define MODEL_DATA_H_\n\n"
              "extern const unsigned char g_model_data[];\nextern const unsigned int g_model_data_len;\n\n"
              "#endif  /* MODEL_DATA_H_ */\n")
    rows = [", ".join(f"0x{b:02x}" for b in tflite_bytes[i:i + 12]) for i in range(0, len(tflite_bytes), 12)]
    body = (note + '#include "model_data.h"\n\n'
            "alignas(16) const unsigned char g_model_data[] = {\n    " + ",\n    ".join(rows) + "\n};\n"
            f"const unsigned int g_model_data_len = {len(tflite_bytes)};\n")
    return header, body


# ---- ONNX ----

def export_onnx_float(model, input_size: int, path: Path) -> None:
    """Float ONNX, NCHW float input in [0, 1], output 'probs'; legacy exporter, opset 17, BN folded.

    The exporter spells F.pad's constant pads as a Slice/Concat/Reshape subgraph; onnxruntime's basic
    (standard-ops-only) constant folding turns it back into plain Pad inputs, so the file holds only
    Pad, Conv, Clip, ReduceMean, Gemm and Softmax.
    """
    import onnx
    import onnxruntime as ort
    import torch

    dummy = torch.zeros(1, model.cfg.in_channels, input_size, input_size)
    with tempfile.TemporaryDirectory() as tmp_dir:
        raw = Path(tmp_dir) / "raw.onnx"
        with _quiet_fd(2):
            torch.onnx.export(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval(), (dummy,), str(raw),
                              dynamo=False, opset_version=17, input_names=["input"], output_names=["probs"],
                              dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
                              training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(Path(tmp_dir) / "folded.onnx")
        ort.InferenceSession(str(raw), so, providers=["CPUExecutionProvider"])
        folded = onnx.load(so.optimized_model_filepath)
    used = {n.domain for n in folded.graph.node} | {""}
    keep = [o for o in folded.opset_import if o.domain in used]  # ORT lists its own domains; none is used
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    onnx.checker.check_model(folded)
    with atomic_path(path) as tmp:
        onnx.save(folded, str(tmp))


def export_onnx_qdq(float_path: Path, calib_u8: np.ndarray, path: Path) -> None:
    """INT8 QDQ ONNX (per-channel symmetric int8 weights, int8 activations) calibrated on `calib_u8`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib_u8)

        def get_next(self):
            img = next(self.it, None)
            return None if img is None else {"input": (img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)}

    with atomic_path(path) as tmp:
        quantize_static(str(float_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)


def onnx_predict(path: Path, images_u8: np.ndarray, batch: int = 256) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"input": images_u8[i:i + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255.0})[0]
            for i in range(0, len(images_u8), batch)]
    return np.concatenate(outs)


# ---- stage glue ----

def add_arguments(p) -> None:
    g = p.add_argument_group("quantize")
    g.add_argument("--quant-calib-images", type=int, default=200, metavar="N",
                   help="training images used to calibrate INT8 activation ranges (default 200)")


def calibration_images(x_train: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded subset of the training split (order fixed by the seed)."""
    rng = np.random.default_rng([seed, 0xCA11B])
    idx = np.sort(rng.permutation(len(x_train))[:count])
    return x_train[idx]


def run(args) -> dict:
    import torch

    from .distill import load_float, load_qat, load_split, predict

    run_dir = Path(args.run)
    if args.quant_calib_images < 1:
        raise UserError(f"--quant-calib-images must be >= 1, got {args.quant_calib_images}")
    float_path, qat_path = run_dir / "student" / "student_float.pt", run_dir / "student" / "student_qat.pt"
    for p in (float_path, qat_path):
        if not p.is_file():
            raise UserError(f"student model not found: {p} (run the distill stage first)")
    # Before anything is unpickled: only the bytes distill wrote are loaded.
    verify_inputs(run_dir, "student", [float_path, qat_path], f"python -m compress distill --run {run_dir}")
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    torch.set_num_threads(1)
    student, qat = load_float(float_path), load_qat(qat_path)
    cfg = student.cfg
    x_train, _, _, _ = load_split(run_dir, "train", cfg.input_size)
    x_test, y_test, _, _ = load_split(run_dir, "test", cfg.input_size)
    out_dir = ensure_dir(run_dir / "quant")
    calib = calibration_images(x_train, args.quant_calib_images, args.seed)

    t0 = time.monotonic()
    model = convert_int8(qat.export_folded(), cfg.input_size, calib, cfg.in_channels)
    info = describe_model(model)
    arena = tflm_arena_bytes(model)
    q_in = to_int8_input(x_test)
    tflm_out = tflm_invoke(model, q_in, progress=True)
    ref_out = tflite_ref_invoke(model, q_in)
    float_pred = predict(student, x_test).argmax(1)
    int8_pred = tflm_out.argmax(1)

    paths = {k: out_dir / v for k, v in {
        "tflite": "model_int8.tflite", "h": "model_data.h", "cc": "model_data.cc",
        "onnx": "student_float.onnx", "qdq": "student_int8_qdq.onnx", "json": "tflm.json"}.items()}
    write_bytes_atomic(paths["tflite"], model)
    header, body = c_array(model)
    write_text_atomic(paths["h"], header)
    write_text_atomic(paths["cc"], body)
    export_onnx_float(student, cfg.input_size, paths["onnx"])
    export_onnx_qdq(paths["onnx"], calib, paths["qdq"])
    onnx_float_pred = onnx_predict(paths["onnx"], x_test).argmax(1)
    onnx_qdq_pred = onnx_predict(paths["qdq"], x_test).argmax(1)

    float_acc = float((float_pred == y_test).mean())
    int8_acc = float((int8_pred == y_test).mean())
    metrics = {
        "student_int8_acc": int8_acc,
        "int8_drop_points": round(100.0 * (float_acc - int8_acc), 3),
        "int8_float_agreement": float((int8_pred == float_pred).mean()),
        "model_bytes": len(model),
        "arena_bytes": arena,
        "tflm_vs_ref_max_lsb": int(np.abs(tflm_out.astype(np.int16) - ref_out.astype(np.int16)).max()),
        "onnx_float_acc": float((onnx_float_pred == y_test).mean()),
        "onnx_qdq_acc": float((onnx_qdq_pred == y_test).mean()),
        "quantize_seconds": round(time.monotonic() - t0, 1),
    }
    write_json_atomic(paths["json"], {
        **metrics, "student_float_acc": float_acc, "test_images": len(y_test), "ops": info["ops"],
        "input": info["inputs"][0], "output": info["outputs"][0], "tflite_sha256": sha256_bytes(model),
        "calibration_images": len(calib),
        "arena_note": "RecordingMicroAllocator total after one invoke, host (64-bit) TFLite-Micro build"})
    record_stage(run_dir, "quant", inputs=[float_path, qat_path], outputs=list(paths.values()),
                 params={"calib_images": len(calib)}, metrics=metrics, seed=args.seed)
    return metrics
