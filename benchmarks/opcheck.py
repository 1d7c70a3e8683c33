"""Op inventories of .tflite and .onnx files, checked against a target's allowed ops before anything runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgecore.errors import UserError
from edgecore.tflite_graph import describe_model

# Tensor types an "8-bit only" accelerator accepts: int8/uint8 data, int32 biases (TFLite schema enum names).
INT8_TYPES = {"INT8", "UINT8", "INT32"}


def tflite_inventory(path: Path) -> tuple[Counter, list[str]]:
    """(op name -> count, ['tensor: TYPE' for every tensor that is not 8-bit/int32]) of a .tflite file."""
    d = describe_model(Path(path).read_bytes(), str(path))
    wide = [f"{t['name']}: {t['type']}" for t in d["tensors"] if t["type"] not in INT8_TYPES]
    return Counter(d["ops"]), wide


def onnx_inventory(path: Path) -> Counter:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise UserError(f"{path} is not an ONNX model: {str(e).splitlines()[0]}") from None
    return Counter(n.op_type for n in model.graph.node)


def unsupported(ops: Counter, allowed) -> list[str]:
    allowed = set(allowed)
    return sorted(op for op in ops if op not in allowed)


def describe(ops: Counter) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
