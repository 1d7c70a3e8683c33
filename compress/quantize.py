"""Stage "quantize": full-INT8 .tflite verified in TFLite-Micro, its C array, float and INT8-QDQ ONNX -> R/quant/.

Route (docs/quantization.md): the float student's BatchNorm is folded, torch.export gives its graph, torchao's PT2E
QAT fine-tunes it under the int8 contract's fake quantization (compress/pt2e_int8.py), convert_pt2e bakes the
learned ranges in and litert-torch writes the .tflite. The activation scales QAT trained under are the ones shipped.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import pt2e_int8
from .camera import DEFAULT_STRENGTH
from .data import load_dataset, split_name
from .distill import (js_divergence, kd_training_set, load_float, load_split, load_teacher, predict, set_determinism,
                      to_input, training_batch)
from edgecore import preprocess
from edgecore.config import from_args
from edgecore.errors import UserError
from edgecore.interpreters import tflite_ref_invoke, tflm_arena_bytes, tflm_invoke
from edgecore.io import (atomic_path, ensure_dir, quiet_fd, read_json, sha256_bytes, write_bytes_atomic, write_json_atomic,
                 write_text_atomic)
from edgecore.manifest import record_stage, verify_inputs
from edgecore.tflite_graph import SUPPORTED, describe_model, read_flatbuffer
from .pt2e_int8 import INPUT_SCALE, INPUT_ZERO_POINT, OUTPUT_SCALE, OUTPUT_ZERO_POINT
from .student import fold_bn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ALLOWED_OPS = set(SUPPORTED)  # the ops the RP2040 compiler lowers to firmware/nn kernels: the narrowest runtime


# ---- quantization-aware fine-tune (torchao PT2E) and conversion (litert-torch) ----

@dataclass(frozen=True)
class QuantParams:
    qat_epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 64
    alpha: float = 0.9
    augment: float = DEFAULT_STRENGTH
    consistency: float = 0.0
    calib_images: int = 200
    threads: int = 1


def _qat_loss(probs: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Cross-entropy of the deployed (int8 softmax) probabilities against the teacher's, plus the hard label where
    one exists. The graph ends in the int8 softmax, so the loss sees what the device outputs; its 1/256 steps are
    floored at half a step so that an output of 0 still has a finite log."""
    logp = torch.log(probs.clamp_min(OUTPUT_SCALE / 2))
    soft = -(teacher * logp).sum(1).mean()
    known = labels >= 0
    hard = F.nll_loss(logp[known], labels[known]) if bool(known.any()) else soft * 0.0
    return alpha * soft + (1.0 - alpha) * hard


def _qat_step_loss(prepared, batch_u8, soft, labels, params: QuantParams, gen: torch.Generator) -> torch.Tensor:
    """The training step's loss as the float student had it (distill.step_loss), on the deployed probabilities."""
    x, soft, labels = training_batch(batch_u8, soft, labels, params.augment, params.consistency, gen)
    probs = prepared(x)
    loss = _qat_loss(probs, soft, labels, params.alpha)
    if params.consistency <= 0:
        return loss
    n = len(batch_u8)
    logp = torch.log(probs.clamp_min(OUTPUT_SCALE / 2))  # log_softmax of it renormalises the int8 steps
    return loss + params.consistency * js_divergence(logp[:n], logp[n:])


def quantize_student(student, images: np.ndarray, soft: np.ndarray, labels: np.ndarray, calib: np.ndarray,
                     params: QuantParams, seed: int, log=print):
    """Fold BN, then either QAT (params.qat_epochs > 0: observers start from `calib`, track ranges for one epoch,
    then freeze while the weights adapt) or post-training calibration on `calib`. Returns the prepared graph."""
    set_determinism(seed, params.threads)
    prepared = pt2e_int8.prepare(fold_bn(student), student.cfg.input_size, qat=params.qat_epochs > 0)
    with torch.no_grad():
        for i in range(0, len(calib), params.batch_size):
            prepared(to_input(calib[i:i + params.batch_size]))
    if params.qat_epochs == 0:
        return prepared
    gen = torch.Generator().manual_seed(seed)
    images_t, soft_t = torch.as_tensor(images), torch.as_tensor(soft, dtype=torch.float32)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.AdamW(prepared.parameters(), lr=params.lr, weight_decay=0.0)
    steps = -(-len(images) // params.batch_size) * params.qat_epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    for epoch in range(params.qat_epochs):
        if epoch == 1:
            pt2e_int8.freeze_observers(prepared)
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        bar = tqdm(range(0, len(images), params.batch_size), desc=f"QAT epoch {epoch + 1}/{params.qat_epochs}",
                   unit="batch", leave=False)
        for start in bar:
            idx = order[start:start + params.batch_size]
            loss = _qat_step_loss(prepared, images_t[idx], soft_t[idx], labels_t[idx], params, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"QAT epoch {epoch + 1}/{params.qat_epochs}: loss {total / len(images):.4f}")
    pt2e_int8.freeze_observers(prepared)
    return prepared


def tensor_scales(tflite_bytes: bytes) -> list[float]:
    """The model input's scale, then each op's output scale, in execution order."""
    g = read_flatbuffer(tflite_bytes).subgraphs[0]
    ids = [g.inputs[0]] + [op.outputs[0] for op in g.operators]
    return [float(g.tensors[i].quantization.scale[0]) for i in ids]


def scale_gap(qat_scales: list[float], deployed: list[float]) -> float:
    """Largest relative difference between the activation scales QAT trained under and those the .tflite ships
    with (0 = the model runs on exactly the grids it was trained for); inf if the tensors do not pair up."""
    if len(qat_scales) != len(deployed):
        return float("inf")
    return max(abs(a - b) / b for a, b in zip(qat_scales, deployed))


def convert(prepared, input_size: int, in_channels: int = 3) -> bytes:
    """The prepared graph as a full-INT8 TFLite flatbuffer (int8 I/O, per-channel weights), contract checked."""
    model = pt2e_int8.to_tflite(prepared, input_size, in_channels)
    check_int8_model(model)
    return model


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
    Pad, Conv, Clip, ReduceMean, Flatten, Gemm and Softmax.
    """
    import onnx
    import onnxruntime as ort
    import torch

    dummy = torch.zeros(1, model.cfg.in_channels, input_size, input_size)
    with tempfile.TemporaryDirectory() as tmp_dir:
        raw = Path(tmp_dir) / "raw.onnx"
        with quiet_fd(2):
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
            return None if img is None else {"input": preprocess.to_float_nchw(img[None])}

    with atomic_path(path) as tmp:
        quantize_static(str(float_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)


def onnx_predict(path: Path, images_u8: np.ndarray, batch: int = 256) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"input": preprocess.to_float_nchw(images_u8[i:i + batch])})[0]
            for i in range(0, len(images_u8), batch)]
    return np.concatenate(outs)


# ---- stage glue ----

def add_arguments(p) -> None:
    d = QuantParams()
    g = p.add_argument_group("quantize")
    g.add_argument("--qat-epochs", type=int, default=d.qat_epochs, metavar="N",
                   help="quantization-aware fine-tune epochs on the distillation data (torchao PT2E); activation "
                        "ranges are tracked in the first and frozen after it; 0 = post-training calibration only "
                        f"(default {d.qat_epochs})")
    g.add_argument("--qat-lr", type=float, default=d.lr, metavar="LR", help=f"QAT learning rate (default {d.lr})")
    g.add_argument("--quant-calib-images", type=int, default=d.calib_images, metavar="N",
                   help="training images whose activations initialise the int8 ranges (default "
                        f"{d.calib_images})")


def calibration_images(x_train: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded subset of the training images (order fixed by the seed)."""
    rng = np.random.default_rng([seed, 0xCA11B])
    idx = np.sort(rng.permutation(len(x_train))[:count])
    return x_train[idx]


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of the quantize stage (`python -m compress quantize --help`); the rest of QuantParams comes from
    what distill recorded for the student."""
    qat_epochs: int = QuantParams.qat_epochs
    qat_lr: float = QuantParams.lr
    quant_calib_images: int = QuantParams.calib_images
    seed: int = 0


def run(args) -> dict:
    return quantize_run(Path(args.run), from_args(QuantizeConfig, args))


def quantize_run(run_dir: Path, config: QuantizeConfig) -> dict:
    """Stage quantize: R/student/ + R/teacher/ + R/data/ -> R/quant/ (full-INT8 .tflite, C array, ONNX, TFLM
    report); returns its metrics."""
    run_dir = Path(run_dir)
    if config.quant_calib_images < 1 or config.qat_epochs < 0 or not config.qat_lr > 0:
        raise UserError(f"--quant-calib-images must be >= 1, --qat-epochs >= 0 and --qat-lr > 0 (got "
                        f"{config.quant_calib_images}, {config.qat_epochs}, {config.qat_lr})")
    float_path = run_dir / "student" / "student_float.pt"
    if not float_path.is_file():
        raise UserError(f"student model not found: {float_path} (run the distill stage first)")
    soft_path = run_dir / "teacher" / "soft_labels.npz"
    # Before anything is unpickled: only the bytes the earlier stages wrote are loaded.
    cfg_path = run_dir / "student" / "config.json"
    verify_inputs(run_dir, "student", [float_path, cfg_path], f"python -m compress distill --run {run_dir}")
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    verify_inputs(run_dir, "teacher", [soft_path], f"python -m compress teach --run {run_dir}")
    student_cfg = read_json(cfg_path, "student config")
    if student_cfg.get("preprocess") != preprocess.NAME:
        raise UserError(f"{float_path} was trained on {student_cfg.get('preprocess') or 'unstandardised pixels'}, "
                        f"but this version feeds every runtime {preprocess.NAME}; re-run distill")
    student = load_float(float_path)
    cfg = student.cfg
    teacher = load_teacher(run_dir)
    x_train, p_train, y_train, classes = kd_training_set(run_dir, cfg.input_size, teacher)
    if len(classes) != cfg.num_classes:
        raise UserError(f"{float_path} has {cfg.num_classes} outputs but the dataset has {len(classes)} classes; "
                        "re-run distill")
    x_test, y_test, _, _ = load_split(run_dir, "test", cfg.input_size)
    out_dir = ensure_dir(run_dir / "quant")
    trained = student_cfg.get("train", {})
    params = QuantParams(qat_epochs=config.qat_epochs, lr=config.qat_lr, calib_images=config.quant_calib_images,
                         alpha=float(trained.get("alpha", QuantParams.alpha)),
                         augment=float(trained.get("augment", QuantParams.augment)),  # QAT sees what training saw
                         consistency=float(trained.get("consistency", QuantParams.consistency)))
    calib = calibration_images(x_train, params.calib_images, config.seed)

    t0 = time.monotonic()
    prepared = quantize_student(student, x_train, p_train, y_train, calib, params, config.seed,
                                log=lambda m: tqdm.write(m))
    qat_scales = pt2e_int8.activation_scales(prepared)
    model = convert(prepared, cfg.input_size, cfg.in_channels)
    info = describe_model(model)
    arena = tflm_arena_bytes(model)
    q_in = preprocess.to_int8(x_test)
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
        "qat_vs_deployed_scale_gap": scale_gap(qat_scales, tensor_scales(model)),
        "model_bytes": len(model),
        "arena_bytes": arena,
        "tflm_vs_ref_max_lsb": int(np.abs(tflm_out.astype(np.int16) - ref_out.astype(np.int16)).max()),
        "tflm_vs_ref_argmax_agreement": float((tflm_out.argmax(1) == ref_out.argmax(1)).mean()),
        "onnx_float_acc": float((onnx_float_pred == y_test).mean()),
        "onnx_qdq_acc": float((onnx_qdq_pred == y_test).mean()),
        "quantize_seconds": round(time.monotonic() - t0, 1),
        "accuracy_data": split_name(load_dataset(run_dir).source, len(y_test)),
    }
    baseline = student_cfg.get("metrics", {}).get("baseline_float_acc")
    if isinstance(baseline, float):
        metrics["kd_gain_points"] = round(100.0 * (int8_acc - baseline), 2)
    write_json_atomic(paths["json"], {
        **metrics, "student_float_acc": float_acc, "test_images": len(y_test), "ops": info["ops"],
        "input": info["inputs"][0], "output": info["outputs"][0], "tflite_sha256": sha256_bytes(model),
        "calibration_images": len(calib), "qat_activation_scales": qat_scales,
        "arena_note": "RecordingMicroAllocator total after one invoke, host (64-bit) TFLite-Micro build"})
    record_stage(run_dir, "quant", inputs=[float_path, cfg_path, soft_path, run_dir / "data" / "dataset.json"],
                 outputs=list(paths.values()),
                 params={"qat_epochs": params.qat_epochs, "qat_lr": params.lr, "calib_images": len(calib)},
                 metrics=metrics, seed=config.seed)
    return metrics
