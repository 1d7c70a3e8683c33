"""Read a full-INT8 .tflite into a small IR (tensors + ops in execution order) for the C model compiler.

Uses the flatbuffer schema module shipped inside the tensorflow wheel (loaded by file path, so that
reading a model does not import all of TensorFlow)."""
from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecore.errors import UserError
from edgecore.io import read_bytes

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX", "ADD",
             "RESHAPE", "PAD")
_SCHEMA = None


def schema():
    """tensorflow/lite/python/schema_py_generated.py, imported on its own (needs only `flatbuffers`)."""
    global _SCHEMA
    if _SCHEMA is None:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise UserError("tensorflow is not installed (its .tflite schema module is needed)")
        path = Path(list(spec.submodule_search_locations)[0]) / "lite" / "python" / "schema_py_generated.py"
        mod_spec = importlib.util.spec_from_file_location("_tflite_schema", path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        _SCHEMA = mod
    return _SCHEMA


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    dtype: str                     # "int8", "int32", ...
    data: np.ndarray | None        # constant data (weights, bias, shapes), None for activations
    scale: np.ndarray              # float32, one per tensor or per channel
    zero_point: np.ndarray         # int64
    quant_dim: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Op:
    kind: str
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list
    ops: list
    inputs: list
    outputs: list


def _enum_names(cls) -> dict:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


def _options(op) -> dict:
    o = op.builtinOptions
    if o is None:
        return {}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(o).items()}


def read_flatbuffer(buf: bytes, what: str = "model"):
    """The .tflite's object tree (the schema's ModelT); bytes that are not one are a one-line UserError."""
    try:
        return schema().ModelT.InitFromPackedBuf(bytearray(buf), 0)
    except Exception as e:  # the generated reader fails on garbage in many ways (struct, index, type, decode...)
        raise UserError(f"{what} is not a TFLite flatbuffer: {type(e).__name__}: {e}") from None


def op_name(model, op, names: dict) -> str:
    """The builtin name of an operator (codes above 127 live in the newer 32-bit field; the old one saturates)."""
    code = model.operatorCodes[op.opcodeIndex]
    name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
    if name == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return name


def describe_model(buf: bytes, what: str = "model") -> dict:
    """What the pipeline checks in any .tflite, without building the compiler's IR: `ops` (names in execution
    order, every subgraph), `inputs` / `outputs` of the first subgraph and `weights` (conv and fully connected
    weight tensors), each as {type, shape, scales, zero_points}, and `tensors` [{name, type}] of every subgraph."""
    s = schema()
    model = read_flatbuffer(buf, what)
    names = _enum_names(s.BuiltinOperator)
    types = _enum_names(s.TensorType)

    def tensor(g, i):
        t = g.tensors[i]
        q = t.quantization
        shape = t.shape if t.shape is not None else []
        return {"type": types.get(t.type, str(t.type)), "shape": [int(d) for d in shape],
                "scales": [float(v) for v in (q.scale if q is not None and q.scale is not None else [])],
                "zero_points": [int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]}

    ops, weights, tensors = [], [], []
    for g in model.subgraphs or []:
        for op in g.operators or []:
            name = op_name(model, op, names)
            ops.append(name)
            if name in _WEIGHTED:
                weights.append({"op": name, **tensor(g, op.inputs[1])})
        tensors += [{"name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
                     "type": types.get(t.type, str(t.type))} for t in g.tensors or []]
    if not model.subgraphs:
        raise UserError(f"{what}: a .tflite without a subgraph")
    g = model.subgraphs[0]
    return {"ops": ops, "inputs": [tensor(g, i) for i in g.inputs], "outputs": [tensor(g, i) for i in g.outputs],
            "weights": weights, "tensors": tensors}


def load(path: str | Path) -> Graph:
    p = Path(path)
    buf = read_bytes(p, ".tflite model")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise UserError(f"{p} is not a .tflite flatbuffer (no TFL3 identifier)")
    return parse(buf, str(p))


def parse(buf: bytes, what: str = "model") -> Graph:
    # A truncated or bit-flipped flatbuffer fails inside the generated reader in many ways.
    try:
        graph = _decode(buf, what)
    except (struct.error, ValueError, IndexError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise UserError(f"{what}: not a valid .tflite (truncated or corrupted): {type(e).__name__}: {e}") from None
    _check_structure(graph, what)
    _check_int8(graph, what)
    return graph


def _decode(buf: bytes, what: str) -> Graph:
    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    if len(model.subgraphs) != 1:
        raise UserError(f"{what}: {len(model.subgraphs)} subgraphs; only single-subgraph models are supported")
    g = model.subgraphs[0]
    op_names = _enum_names(s.BuiltinOperator)
    type_names = {k: v.lower() for k, v in _enum_names(s.TensorType).items()}

    tensors = []
    for i, t in enumerate(g.tensors):
        dtype = type_names.get(t.type, str(t.type))
        raw = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        if raw is not None and len(raw):
            data = np.frombuffer(bytes(np.asarray(raw, dtype=np.uint8)), dtype=np.dtype(dtype)).reshape(shape)
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, data, scale, zp, int(q.quantizedDimension) if q else 0))

    ops = []
    for op in g.operators:
        kind = op_name(model, op, op_names)
        if kind not in SUPPORTED:
            raise UserError(f"{what}: unsupported op {kind} (the RP2040 compiler supports "
                            f"{', '.join(s for s in SUPPORTED if s != 'PAD')})")
        if kind in _OPTIONS and type(op.builtinOptions).__name__ != _OPTIONS[kind]:
            raise UserError(f"{what}: inconsistent .tflite (corrupted?): {kind} without its {_OPTIONS[kind]}")
        ops.append(Op(kind, [int(i) for i in op.inputs], [int(o) for o in op.outputs], _options(op)))

    return Graph(tensors, ops, [int(i) for i in g.inputs], [int(o) for o in g.outputs])


_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_SPATIAL = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D")
_OPTIONS = {"CONV_2D": "Conv2DOptionsT", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptionsT",
            "AVERAGE_POOL_2D": "Pool2DOptionsT", "FULLY_CONNECTED": "FullyConnectedOptionsT",
            "SOFTMAX": "SoftmaxOptionsT"}


def _check_structure(graph: Graph, what: str) -> None:
    """What a corrupted file breaks and the lowering relies on: indices, quantization, constant weights."""
    n = len(graph.tensors)
    bad = f"{what}: inconsistent .tflite (corrupted?):"
    if not graph.inputs or not graph.outputs or any(not 0 <= i < n for i in graph.inputs + graph.outputs):
        raise UserError(f"{bad} model inputs/outputs {graph.inputs}/{graph.outputs} out of range")
    for op in graph.ops:
        if any(not -1 <= i < n for i in op.inputs) or any(not 0 <= o < n for o in op.outputs) or not op.outputs:
            raise UserError(f"{bad} {op.kind} refers to tensors outside 0..{n - 1}")
        rank4 = op.inputs[:2] if op.kind in _WEIGHTED[:2] else op.inputs[:1] if op.kind in _SPATIAL else []
        if any(i >= 0 and len(graph.tensors[i].shape) != 4 for i in rank4 + op.outputs[:1] * (op.kind in _SPATIAL)):
            raise UserError(f"{bad} {op.kind} tensors are not 4-D")
        if op.kind in _WEIGHTED:
            if len(op.inputs) < 2 or any(i >= 0 and graph.tensors[i].data is None for i in op.inputs[1:3]):
                raise UserError(f"{bad} {op.kind} has no constant weights")
            w = graph.tensors[op.inputs[1]]
            out_c = w.shape[-1] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0] if w.shape else 0
            if len(op.inputs) > 2 and op.inputs[2] >= 0 and graph.tensors[op.inputs[2]].size != out_c:
                raise UserError(f"{bad} {op.kind} bias does not match its {out_c} output channels")
            out_shape = graph.tensors[op.outputs[0]].shape
            if not out_shape or out_shape[-1] != out_c:
                raise UserError(f"{bad} {op.kind} output shape {out_shape} does not match {out_c} output channels")
    biases = {op.inputs[2] for op in graph.ops if op.kind in _WEIGHTED and len(op.inputs) > 2 and op.inputs[2] >= 0}
    for t in graph.tensors:
        if (t.dtype == "int8" or (t.dtype == "int32" and t.index in biases)) and not (
                len(t.scale) and len(t.scale) == len(t.zero_point)
                and (len(t.scale) == 1 or (0 <= t.quant_dim < len(t.shape) and len(t.scale) == t.shape[t.quant_dim]))
                and np.all(np.isfinite(t.scale)) and np.all(t.scale > 0)):
            raise UserError(f"{bad} tensor '{t.name}' has no valid quantization parameters")


def _check_int8(graph: Graph, what: str) -> None:
    for t in graph.tensors:
        if t.dtype.startswith("float"):
            raise UserError(f"{what}: tensor '{t.name}' is {t.dtype}; the RP2040 compiler needs a full-INT8 model "
                            "(int8 input/output, int8 weights)")
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype != "int8":
            raise UserError(f"{what}: model input/output '{t.name}' is {t.dtype}, expected int8")
