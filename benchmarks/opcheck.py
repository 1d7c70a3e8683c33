"""Op inventories of .tflite and .onnx files, checked against a target's allowed ops before anything runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgecore.errors import UserError

# Tensor types an "8-bit only" accelerator accepts: int8/uint8 data, int32 biases (TFLite schema enum names).
INT8_TYPES = {"INT8", "UINT8", "INT32"}


def tflite_inventory(path: Path) -> tuple[Counter, list[str]]:
    """(op name -> count, ['tensor: TYPE' for every tensor that is not 8-bit/int32]) of a .tflite file."""
    from edgecore.tflite_graph import schema  # TF's schema module, loaded without importing TF

    fb = schema()

    data = Path(path).read_bytes()
    try:
        model = fb.Model.GetRootAsModel(data, 0)
        n_sub = model.SubgraphsLength()
    except Exception as e:  # flatbuffers raises struct/index errors on garbage
        raise UserError(f"{path} is not a TFLite flatbuffer: {e}") from None
    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    ops, wide = Counter(), []
    for s in range(n_sub):
        sub = model.Subgraphs(s)
        for i in range(sub.OperatorsLength()):
            code = model.OperatorCodes(sub.Operators(i).OpcodeIndex())
            # Builtin codes above 127 live in the newer 32-bit field; the old 8-bit one saturates.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = f"CUSTOM:{code.CustomCode().decode()}"
            ops[name] += 1
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            tname = type_names.get(tensor.Type(), str(tensor.Type()))
            if tname not in INT8_TYPES:
                wide.append(f"{tensor.Name().decode()}: {tname}")
    return ops, wide


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
