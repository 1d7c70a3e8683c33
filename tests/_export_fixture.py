"""A tiny run folder with the quantize stage's files, for the exporter tests: a 32x32 CNN trained for a
few steps on images whose class is a disc's colour against a grey surround (tests/_tiny_run.pattern_images), its float ONNX, an onnxruntime QDQ ONNX and a Keras-rebuilt full-INT8
.tflite with the same weights (so every runtime can be compared with the same float student)."""
from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

CLASSES = ["basic", "burnt", "mixed"]
SIZE = 32
PER_CLASS = {"train": 24, "test": 40}
COLOURS = np.array([[200, 190, 60], [50, 40, 30], [220, 215, 205]], dtype=np.float32)


def _images(rng, label: int, n: int) -> np.ndarray:
    from _tiny_run import pattern_images

    return pattern_images(rng, COLOURS, np.full(n, label), SIZE)


def _write_dataset(run: Path, seed: int = 0) -> None:
    from PIL import Image

    from edgecore.manifest import record_stage

    rng = np.random.default_rng(seed)
    items = []
    for split, n in PER_CLASS.items():
        for label, name in enumerate(CLASSES):
            for i, img in enumerate(_images(rng, label, n)):
                rel = f"images/{name}/{split}_{i:03d}.png"
                (run / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(run / "data" / rel)
                sha = hashlib.sha256((run / "data" / rel).read_bytes()).hexdigest()
                items.append({"path": rel, "sha256": sha, "label": name, "split": split})
    (run / "data" / "dataset.json").write_text(json.dumps({"classes": CLASSES, "source": {"kind": "fixture"},
                                                           "items": items}))
    record_stage(run, "data", outputs=[run / "data" / "dataset.json"])  # later stages check what they read


def _record_quant(run: Path) -> None:
    from edgecore.manifest import record_stage

    record_stage(run, "quant", outputs=sorted((run / "quant").glob("*.*")))


def _torch_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, len(CLASSES)))


def _train(model, run: Path, steps: int = 150, lr: float = 0.005):
    """Full-batch Adam steps on the train split, on one thread: the same weights whatever thread count an earlier
    test left torch at (the stages set theirs), and no threads spinning against each other on a loaded machine
    (two threads took 35 s of CPU for the 150 steps where one takes 1.4 s)."""
    import torch

    from compress.data import load_dataset, load_images
    from edgecore.preprocess import to_float_nchw

    ds = load_dataset(run)
    items = ds.split("train")
    x = torch.from_numpy(to_float_nchw(load_images(run, items, (SIZE, SIZE))))
    y = torch.tensor([CLASSES.index(it["label"]) for it in items])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), x


def _keras_int8(model, calib) -> bytes:
    """The same network in Keras NHWC (valid padding, so no torch/TF pad mismatch), converted to full INT8."""
    import tensorflow as tf

    conv1, conv2, fc = model[0], model[2], model[6]
    k = tf.keras.Sequential([
        tf.keras.Input((SIZE, SIZE, 3), batch_size=1),
        tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(len(CLASSES)),
        tf.keras.layers.Softmax(),
    ])
    for layer, src in zip(k.layers[:2], (conv1, conv2)):
        layer.set_weights([src.weight.detach().numpy().transpose(2, 3, 1, 0), src.bias.detach().numpy()])
    k.layers[3].set_weights([fc.weight.detach().numpy().T, fc.bias.detach().numpy()])
    conv = tf.lite.TFLiteConverter.from_keras_model(k)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    # A black and a white frame pin the input range to [0, 1]: the contract's int8 input (scale 1/255, -128).
    nhwc = np.concatenate([calib.permute(0, 2, 3, 1).numpy(), np.zeros((1, SIZE, SIZE, 3), np.float32),
                           np.ones((1, SIZE, SIZE, 3), np.float32)])
    conv.representative_dataset = lambda: ([nhwc[i:i + 1]] for i in range(len(nhwc)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


class _Reader:
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 1].numpy()} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


@functools.lru_cache(maxsize=1)
def tiny_run() -> Path:
    """Build once per test session; tests must write their outputs elsewhere (tmp_path)."""
    import torch
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    run = Path(tempfile.mkdtemp(prefix="export-fixture-"))
    _write_dataset(run)
    model, x = _train(_torch_model(), run)
    quant = run / "quant"
    quant.mkdir()
    torch.onnx.export(model, x[:1], str(quant / "student_float.onnx"), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    # ORT's defaults (asymmetric activations, int32 bias): what a generic QDQ export looks like.
    quantize_static(str(quant / "student_float.onnx"), str(quant / "student_int8_qdq.onnx"), _Reader(x),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    (quant / "model_int8.tflite").write_bytes(_keras_int8(model, x))
    _record_quant(run)
    return run


@functools.lru_cache(maxsize=1)
def student_run() -> Path:
    """A run folder like tiny_run() whose ONNX files come from the real student (compress.student, width 0.5,
    32x32, 100 full-batch steps) through the quantize stage's own ONNX exports. Quantized with symmetric Q/DQ
    on every tensor (the first Orin exporter) and run through onnxruntime's fused x86 int8 kernels, it lost
    35 points of agreement to int16 saturation on an AVX2 host without VNNI."""
    import torch

    from compress.quantize import export_onnx_float, export_onnx_qdq
    from compress.student import Student, StudentConfig

    run = Path(tempfile.mkdtemp(prefix="export-student-fixture-"))
    _write_dataset(run)
    torch.manual_seed(0)
    model, x = _train(Student(StudentConfig(input_size=SIZE, num_classes=len(CLASSES), width=0.5)), run,
                      steps=100, lr=0.01)
    (run / "quant").mkdir()
    export_onnx_float(model, SIZE, run / "quant" / "student_float.onnx")
    calib = (x.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    export_onnx_qdq(run / "quant" / "student_float.onnx", calib, run / "quant" / "student_int8_qdq.onnx")
    _record_quant(run)
    return run
