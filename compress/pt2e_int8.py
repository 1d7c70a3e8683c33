"""The student's int8 contract as a torchao PT2E quantizer, and the route QAT graph -> .tflite through litert-torch.

Written here because no stock quantizer matches our contract on torch 2.13 / torchao 0.18 / litert-torch 0.10
(remove this module's workarounds when one does; docs/quantization.md says how to tell):
- litert-torch's PT2EQuantizer leaves `aten.relu6.default` and `aten.softmax.int` unannotated (float ReLU6 and a
  float output), and its conv-bn QAT annotator hands torchao a function where a module is now required.
- Quantizing every ReLU6 output or the padded tensors makes the converter keep PAD / TRANSPOSE / QUANTIZE ops.
The annotation below puts exactly one observer on each tensor the int8 model stores (conv inputs after their
padding, the pooled features, the logits), fixes the input to the contract's 1/255, -128 and the softmax output to
1/256, -128, and leaves ReLU6 and padding to be fused into the convs. So the ranges QAT trains under are the ranges
the .tflite ships with (checked by `scale_mismatch`). BatchNorm is folded before QAT (compress.student.fold_bn).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging

import torch
import torch.nn.functional as F

from edgecore.io import quiet_fd

logging.getLogger("torchao").setLevel(logging.ERROR)  # optional CUDA kernels it cannot load on a CPU machine

INPUT_SCALE, INPUT_ZERO_POINT = 1.0 / 255.0, -128  # docs/CONTRACT.md: int8 input = standardize(pixel) - 128
OUTPUT_SCALE, OUTPUT_ZERO_POINT = 1.0 / 256.0, -128  # int8 softmax


class Probabilities(torch.nn.Module):
    """The deployed function: student logits -> softmax."""

    def __init__(self, student: torch.nn.Module):
        super().__init__()
        self.student = student

    def forward(self, x):
        return F.softmax(self.student(x), dim=1)


def _specs(qat: bool):
    from torchao.quantization.pt2e.fake_quantize import FusedMovingAvgObsFakeQuantize
    from torchao.quantization.pt2e.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                                     MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationSpec

    fq = FusedMovingAvgObsFakeQuantize
    act = QuantizationSpec(
        dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
        observer_or_fake_quant_ctr=(fq.with_args(observer=MovingAverageMinMaxObserver) if qat
                                    else MinMaxObserver.with_args()))
    weight = QuantizationSpec(
        dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric, ch_axis=0,
        observer_or_fake_quant_ctr=(fq.with_args(observer=MovingAveragePerChannelMinMaxObserver) if qat
                                    else PerChannelMinMaxObserver.with_args()))

    def fixed(scale, zero_point):
        return FixedQParamsQuantizationSpec(dtype=torch.int8, scale=scale, zero_point=zero_point, quant_min=-128,
                                            quant_max=127, qscheme=torch.per_tensor_affine)

    return act, weight, fixed(INPUT_SCALE, INPUT_ZERO_POINT), fixed(OUTPUT_SCALE, OUTPUT_ZERO_POINT)


def _quantizer_class():
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    aten = torch.ops.aten

    class StudentInt8Quantizer(PT2EQuantizer):
        """litert-torch's quantizer (so its converter runs in static-int8 mode) with our own annotation."""

        def __init__(self, qat: bool):
            super().__init__()
            self.set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
            self.act, self.weight, self.input, self.output = _specs(qat)

        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            def mark(node, inputs, output):
                node.meta["quantization_annotation"] = QuantizationAnnotation(inputs, output, _annotated=True)

            for n in gm.graph.nodes:
                if n.op != "call_function":
                    continue
                src = n.args[0]
                if n.target in (aten.conv2d.default, aten.linear.default):
                    producer = src.args[0] if src.op == "call_function" and src.target == aten.pad.default else src
                    qin = self.input if producer.op == "placeholder" else self.act
                    if n.target == aten.linear.default:
                        qin = SharedQuantizationSpec(src)
                    mark(n, {src: qin, n.args[1]: self.weight}, self.act if n.target == aten.linear.default else None)
                elif n.target == aten.relu6.default and any(u.target == aten.mean.dim for u in n.users):
                    mark(n, {}, self.act)  # the pool's input: its own tensor, no conv reads it
                elif n.target == aten.mean.dim:
                    mark(n, {src: SharedQuantizationSpec(src)}, self.act)
                elif n.target == aten.flatten.using_ints:
                    mark(n, {src: SharedQuantizationSpec(src)}, SharedQuantizationSpec(src))
                elif n.target == aten.softmax.int:
                    mark(n, {src: SharedQuantizationSpec(src)}, self.output)
                elif n.target not in (aten.pad.default, aten.relu6.default):
                    raise RuntimeError(f"the int8 quantizer has no rule for {n.target}; add one before using it")
            return gm

        def validate(self, gm: torch.fx.GraphModule) -> None:
            pass

    return StudentInt8Quantizer


def export_graph(folded: torch.nn.Module, input_size: int, in_channels: int = 3) -> torch.fx.GraphModule:
    """torch.export of softmax(folded student) with a dynamic batch dimension (batch 2 as example: 1 specialises)."""
    example = (torch.zeros(2, in_channels, input_size, input_size),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(Probabilities(folded.eval()), example, dynamic_shapes=({0: batch},)).module()


def prepare(folded: torch.nn.Module, input_size: int, qat: bool = True) -> torch.fx.GraphModule:
    """The graph with fake-quant (QAT) or observers (post-training calibration) at every stored tensor."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    gm = export_graph(folded, input_size, folded.cfg.in_channels)
    quantizer = _quantizer_class()(qat)
    return prepare_qat_pt2e(gm, quantizer) if qat else prepare_pt2e(gm, quantizer)


def freeze_observers(prepared: torch.fx.GraphModule) -> None:
    """Stop range tracking: fine-tuning then adapts the weights to fixed activation grids."""
    from torchao.quantization.pt2e.fake_quantize import disable_observer

    prepared.apply(disable_observer)


def activation_scales(prepared: torch.fx.GraphModule) -> list[float]:
    """The per-tensor activation scales the prepared graph quantizes with, in graph order (a shared observer,
    e.g. on both sides of the flatten, counts once: it is one stored tensor)."""
    out, seen = [], set()
    for n in prepared.graph.nodes:
        if n.op == "call_module":
            mod = getattr(prepared, n.target)
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            if getattr(mod, "qscheme", None) == torch.per_tensor_affine and hasattr(mod, "calculate_qparams"):
                scale, _ = mod.calculate_qparams()
                out.append(float(scale.reshape(-1)[0]))
    return out


def to_tflite(prepared: torch.fx.GraphModule, input_size: int, in_channels: int = 3) -> bytes:
    """convert_pt2e, then litert-torch with NHWC int8 I/O: the full-int8 flatbuffer. `prepared` is left as it was."""
    import litert_torch
    from litert_torch import _config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    _config.config.show_progress = False
    converted = convert_pt2e(copy.deepcopy(prepared), fold_quantize=False)  # convert_pt2e rewrites in place
    nhwc = litert_torch.to_channel_last_io(converted, args=[0])
    # litert prints MLIR notes to fd 2 and progress to stdout; keep the stage's output readable
    with quiet_fd(2), contextlib.redirect_stdout(io.StringIO()):
        model = litert_torch.convert(nhwc, (torch.zeros(1, input_size, input_size, in_channels),),
                                     quant_config=QuantConfig(pt2e_quantizer=_quantizer_class()(False)))
    return bytes(model.model_content())
