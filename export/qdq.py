"""Q/DQ placement checks on an ONNX graph, and a TensorRT-style re-quantization when they fail.

Hand-written because no maintained library checks TensorRT's Q/DQ rules: INT8 only, every zero point 0
(symmetric), weights in [-127, 127] per output channel, and no int32 bias DequantizeLinear (TensorRT's
parser rejects it: onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229). Placement follows TensorRT's
explicit-quantization guidance: Q/DQ only on the inputs and weights of weighted layers, so TensorRT fuses
Conv+BN+ReLU and requantizes in the next layer's Q; the logits and softmax stay float."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _weight_axis(node) -> int:
    """Output-channel axis of the weight input for each op whose weights TensorRT runs in INT8."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}[node.op_type]


def _attr(node, name, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def inspect_qdq(model) -> dict:
    """Per compute node: are its activation and weight inputs dequantized INT8, per-channel, symmetric?"""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    problems, per_channel, nodes = [], True, 0

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        nodes += 1
        where = f"{node.op_type} {node.name or node.output[0]}"
        x_dq = producer.get(node.input[0])
        if x_dq is None or x_dq.op_type != "DequantizeLinear":
            problems.append(f"{where}: activation input has no DequantizeLinear")
        w_dq = producer.get(node.input[1])
        if w_dq is None or w_dq.op_type != "DequantizeLinear":
            problems.append(f"{where}: weight input has no DequantizeLinear")
            continue
        w = const(w_dq.input[0])
        if w is None or w.dtype != np.int8:
            problems.append(f"{where}: weights are not stored as an int8 initializer")
            continue
        scale = const(w_dq.input[1])
        if scale is None or scale.size != w.shape[_weight_axis(node)] or scale.size == 1:
            per_channel = False
            problems.append(f"{where}: weights are not quantized per output channel")
        elif _attr(w_dq, "axis", 1) != _weight_axis(node):
            problems.append(f"{where}: weight DequantizeLinear axis {_attr(w_dq, 'axis', 1)}, "
                            f"expected {_weight_axis(node)}")
        if w.min() < -127:
            problems.append(f"{where}: weights use -128 (TensorRT expects [-127, 127])")
        if len(node.input) > 2 and node.input[2]:
            b_dq = producer.get(node.input[2])
            if b_dq is not None and b_dq.op_type == "DequantizeLinear":
                problems.append(f"{where}: bias is an int32 DequantizeLinear (TensorRT accepts only float bias)")
    for node in model.graph.node:
        if node.op_type not in QUANT_OPS or len(node.input) < 3:
            continue
        zp = const(node.input[2])
        if zp is None:
            continue
        if node.op_type == "DequantizeLinear" and zp.dtype == np.int32:
            continue  # int32 bias: already reported above
        if zp.dtype != np.int8:
            problems.append(f"{node.op_type} {node.name}: {zp.dtype} zero point (TensorRT needs int8)")
        elif np.any(zp != 0):
            problems.append(f"{node.op_type} {node.name}: zero point {int(zp.flat[0])} (TensorRT needs 0)")
    problems += _placement_problems(model, producer)
    return {"compute_nodes": nodes, "per_channel": per_channel and nodes > 0, "problems": problems,
            "qdq_nodes": sum(n.op_type in QUANT_OPS for n in model.graph.node)}


def _placement_problems(model, producer) -> list[str]:
    """Q/DQ where TensorRT wants none: on a weighted layer's output (TensorRT then cannot fuse Conv+BN+ReLU
    and requantize once, after the activation) and on the graph outputs (int8 logits or probabilities can
    tie, and the argmax then takes the first)."""
    problems = []
    for node in model.graph.node:
        src = producer.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if src is not None and src.op_type in WEIGHTED_OPS:
            problems.append(f"{src.op_type} {src.name or src.output[0]}: output is quantized before its "
                            "activation (Q/DQ belongs on the next layer's input)")
    for out in model.graph.output:
        src = producer.get(out.name)
        if src is not None and src.op_type == "DequantizeLinear":
            problems.append(f"graph output {out.name} is quantized (keep the logits and softmax float)")
    return problems


class _Reader:
    """onnxruntime calibration reader over float NCHW images, one per batch."""

    def __init__(self, name: str, x: np.ndarray):
        self._it = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self._it, None)


def quantize_for_tensorrt(float_path, out_path, input_name: str, calib_nchw: np.ndarray) -> None:
    """Static INT8 QDQ as TensorRT wants it: symmetric per-tensor activations and per-channel weights on
    the inputs of weighted layers only (nothing on their outputs, the activations or the softmax), float bias."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(float_path), str(out_path), _Reader(input_name, calib_nchw),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=list(WEIGHTED_OPS),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                   "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS)})
