"""IR -> kernel calls: folds PAD and RESHAPE away, computes every per-channel constant TFLite-Micro would
compute at Prepare time, and re-lays weights out for the kernels in firmware/nn."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecore.errors import UserError

from .quant import activation_range, channel_requant, is_generic, mean_multiplier, quantize_multiplier, softmax_params
from edgecore.tflite_graph import Graph, Tensor


@dataclass
class Step:
    kernel: str                  # conv2d | pointwise | dwconv | avgpool | mean | softmax | add
    inputs: list                 # tensor indices (after alias resolution)
    output: int
    fields: dict                 # scalar struct fields
    arrays: dict = field(default_factory=dict)  # name -> (ctype, np.ndarray)
    macs: int = 0


# A convolution window of 3 rows of 9 bytes (3x3 over 3 channels, an RGB stem) takes its taps in this order (nn_conv.c's
# win9_order): rows 0 and 1's bytes 0-7, their bytes 8 as one pair, row 1's bytes 0-7, row 2's, its byte 8 alone, so
# that nn_blocks' unrolled loop reads every pair with one LDRH. The weights and the offset table follow it.
WIN9_ORDER = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 17, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26])


def _one(t: Tensor, what: str) -> tuple[float, int]:
    if t.scale.size != 1 or t.zero_point.size != 1:
        raise UserError(f"{what}: tensor '{t.name}' must be per-tensor quantized")
    return float(t.scale[0]), int(t.zero_point[0])


def _per_channel(arr: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(arr, (n,)) if arr.size == 1 else arr


def _requant(g: Graph, op, w: Tensor, bias_idx: int | None, n_out: int, in_zp: int,
             w_sum: np.ndarray) -> tuple[dict, np.ndarray]:
    """The layer's requantization fields and its channels' nn_rqc_t records, the folded biases inside them."""
    s_in, _ = _one(g.tensors[op.inputs[0]], op.kind)
    out = g.tensors[op.outputs[0]]
    s_out, z_out = _one(out, op.kind)
    if np.any(w.zero_point != 0):
        raise UserError(f"{op.kind}: weights '{w.name}' have a non-zero zero point")
    scales = _per_channel(w.scale.astype(np.float32), n_out)
    mults, shifts = zip(*(quantize_multiplier(float(s_in) * float(s) / float(s_out)) for s in scales))
    bias = np.zeros(n_out, np.int64)
    if bias_idx is not None and bias_idx >= 0 and g.tensors[bias_idx].data is not None:
        bias = g.tensors[bias_idx].data.astype(np.int64).reshape(n_out)
    folded = bias - in_zp * w_sum.astype(np.int64)
    if np.any(np.abs(folded) >= 2**31):
        raise UserError(f"{op.kind}: folded bias overflows int32")
    lo, hi = activation_range(op.options.get("fusedActivationFunction", 0), s_out, z_out)
    fields = {"out_zp": z_out, "act_min": lo, "act_max": hi}
    records = np.array([channel_requant(m, sh, z_out, lo, hi, int(b)) for m, sh, b in zip(mults, shifts, folded)],
                       np.int64)
    fields["fast"] = int(not any(is_generic(tuple(r)) for r in records.tolist()))
    return fields, records


def _same_pad(in_size: int, out_size: int, k: int, stride: int, padding: int) -> int:
    if padding != 0:   # VALID
        return 0
    return max((out_size - 1) * stride + k - in_size, 0) // 2


def _check_dilation(op) -> None:
    if op.options.get("dilationHFactor", 1) != 1 or op.options.get("dilationWFactor", 1) != 1:
        raise UserError(f"{op.kind}: dilation is not supported")


def lower(g: Graph) -> tuple[list[Step], dict]:
    """Returns the kernel steps and an alias map (tensor -> tensor holding its bytes)."""
    alias: dict[int, int] = {}
    pads: dict[int, tuple[int, int, int]] = {}   # PAD output -> (its input, pad_top, pad_left)
    consumers: dict[int, int] = {}
    for op in g.ops:
        for i in op.inputs:
            consumers[i] = consumers.get(i, 0) + 1

    def src(i: int) -> int:
        while i in alias:
            i = alias[i]
        return i

    steps: list[Step] = []
    for op in g.ops:
        ins = [g.tensors[i] for i in op.inputs if i >= 0]
        out = g.tensors[op.outputs[0]]
        if op.kind == "RESHAPE":
            alias[op.outputs[0]] = src(op.inputs[0])
            continue
        if op.kind == "PAD":
            p = ins[1].data.reshape(-1, 2) if ins[1].data is not None else None
            if p is None or len(p) != 4 or p[0].any() or p[3].any() or consumers.get(op.outputs[0], 0) != 1 \
                    or op.outputs[0] in g.outputs:
                raise UserError("unsupported op PAD (only a spatial PAD feeding one convolution can be folded)")
            pads[op.outputs[0]] = (op.inputs[0], int(p[1][0]), int(p[2][0]))
            continue
        pad_top = pad_left = 0
        x_idx = op.inputs[0]
        if x_idx in pads:
            if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                raise UserError(f"unsupported op PAD (followed by {op.kind}, only convolutions absorb it)")
            x_idx, pad_top, pad_left = pads[x_idx]
        x = g.tensors[x_idx]
        s_in, z_in = _one(x, op.kind)
        step_in = [src(x_idx)]
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            _check_dilation(op)
            w = ins[1]
            _, in_h, in_w, in_c = x.shape
            _, out_h, out_w, out_c = out.shape
            kh, kw = w.shape[1], w.shape[2]
            sh, sw = op.options["strideH"], op.options["strideW"]
            # SAME padding is computed on the conv's own input (the PAD output when a PAD was folded in)
            pad_top += _same_pad(g.tensors[op.inputs[0]].shape[1], out_h, kh, sh, op.options["padding"])
            pad_left += _same_pad(g.tensors[op.inputs[0]].shape[2], out_w, kw, sw, op.options["padding"])
            geom = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=kh, k_w=kw,
                        stride_h=sh, stride_w=sw, pad_top=pad_top, pad_left=pad_left, in_zp=z_in)
            if op.kind == "DEPTHWISE_CONV_2D":
                if out_c != in_c or op.options.get("depthMultiplier", 1) not in (0, 1):
                    raise UserError("DEPTHWISE_CONV_2D: only depth multiplier 1 is supported")
                if kh * kw > 49:
                    raise UserError(f"DEPTHWISE_CONV_2D: kernel {kh}x{kw} is larger than the supported 7x7")
                wt = w.data.reshape(kh * kw, in_c).T.copy()                      # [C][KH*KW]
                rq_fields, records = _requant(g, op, w, op.inputs[2] if len(op.inputs) > 2 else None,
                                              out_c, z_in, wt.astype(np.int64).sum(1))
                offsets = (np.arange(kh)[:, None] * in_w * in_c + np.arange(kw)[None, :] * in_c).reshape(-1)
                steps.append(Step("dwconv", step_in, op.outputs[0], {**geom, **rq_fields},
                                  {"weights": ("int32_t", _blocks4(wt, records, False)),
                                   "offsets": ("int32_t", offsets.astype(np.int32))},
                                  out_h * out_w * out_c * kh * kw))
                continue
            w2 = w.data.reshape(out_c, -1)
            rq_fields, records = _requant(g, op, w, op.inputs[2] if len(op.inputs) > 2 else None,
                                          out_c, z_in, w2.astype(np.int64).sum(1))
            macs = out_h * out_w * out_c * kh * kw * in_c
            if kh == kw == 1 and sh == sw == 1 and pad_top == pad_left == 0 and (in_h, in_w) == (out_h, out_w):
                steps.append(_pointwise(step_in, op.outputs[0], out_h * out_w, in_c, out_c, w2, records, rq_fields,
                                        macs))
            else:
                # byte offset of every (ky, kx, c) tap from the window origin, in weight order
                offsets = (np.arange(kh)[:, None, None] * in_w * in_c + np.arange(kw)[None, :, None] * in_c
                           + np.arange(in_c)[None, None, :]).reshape(-1).astype(np.int32)
                if kh == 3 and kw * in_c == 9:   # rows of 9 bytes: the taps in the order nn_blocks' loop pairs them
                    w2, offsets = w2[:, WIN9_ORDER], offsets[WIN9_ORDER]
                rq_fields["fast"] &= int(_pairs_fit(w2))
                steps.append(Step("conv2d", step_in, op.outputs[0], {**geom, **rq_fields},
                                  {"weights": ("int32_t", _blocks4(w2, records, True)),
                                   "offsets": ("int32_t", offsets)}, macs))
        elif op.kind == "FULLY_CONNECTED":
            w = ins[1]
            if op.options.get("weightsFormat", 0) != 0:
                raise UserError("FULLY_CONNECTED: only the default weights format is supported")
            out_c, in_c = w.shape
            rows = x.size // in_c
            w2 = w.data.reshape(out_c, in_c)
            rq_fields, records = _requant(g, op, w, op.inputs[2] if len(op.inputs) > 2 else None,
                                          out_c, z_in, w2.astype(np.int64).sum(1))
            steps.append(_pointwise(step_in, op.outputs[0], rows, in_c, out_c, w2, records, rq_fields,
                                    rows * in_c * out_c))
        elif op.kind == "AVERAGE_POOL_2D":
            if _one(out, op.kind) != (s_in, z_in):
                raise UserError("AVERAGE_POOL_2D: input and output quantization differ")
            _, in_h, in_w, c = x.shape
            _, out_h, out_w, _ = out.shape
            kh, kw = op.options["filterHeight"], op.options["filterWidth"]
            sh, sw = op.options["strideH"], op.options["strideW"]
            lo, hi = activation_range(op.options.get("fusedActivationFunction", 0), s_in, z_in)
            steps.append(Step("avgpool", step_in, op.outputs[0], dict(
                in_h=in_h, in_w=in_w, c=c, out_h=out_h, out_w=out_w, k_h=kh, k_w=kw, stride_h=sh, stride_w=sw,
                pad_top=_same_pad(in_h, out_h, kh, sh, op.options["padding"]),
                pad_left=_same_pad(in_w, out_w, kw, sw, op.options["padding"]), act_min=lo, act_max=hi)))
        elif op.kind == "MEAN":
            axes = sorted(int(a) % 4 for a in np.asarray(ins[1].data).reshape(-1)) if ins[1].data is not None else []
            if len(x.shape) != 4 or axes != [1, 2]:
                raise UserError(f"MEAN: only the mean over height and width of an NHWC tensor is supported (axes {axes})")
            s_out, z_out = _one(out, op.kind)
            n = x.shape[1] * x.shape[2]
            mult, shift = mean_multiplier(float(s_in) / float(s_out), n)
            steps.append(Step("mean", step_in, op.outputs[0], dict(
                hw=n, c=x.shape[3], in_zp_sum=z_in * n, mult=mult, shift=shift, out_zp=z_out)))
        elif op.kind == "SOFTMAX":
            s_out, z_out = _one(out, op.kind)
            if z_out != -128 or abs(s_out - 1 / 256) > 1e-9:
                raise UserError("SOFTMAX: int8 output must have scale 1/256 and zero point -128")
            mult, shift, diff_min = softmax_params(op.options.get("beta", 1.0), s_in)
            depth = x.shape[-1]
            steps.append(Step("softmax", step_in, op.outputs[0], dict(
                rows=x.size // depth, depth=depth, input_multiplier=mult, input_left_shift=shift, diff_min=diff_min)))
        elif op.kind == "ADD":
            y = ins[1]
            if y.shape != x.shape or y.data is not None:
                raise UserError("ADD: only the sum of two equally shaped activation tensors is supported (no broadcast)")
            s2, z2 = _one(y, op.kind)
            s_out, z_out = _one(out, op.kind)
            twice_max = 2 * max(float(np.float32(s_in)), float(np.float32(s2)))
            m1, sh1 = quantize_multiplier(float(s_in) / twice_max)
            m2, sh2 = quantize_multiplier(float(s2) / twice_max)
            mo, sho = quantize_multiplier(twice_max / ((1 << 20) * float(s_out)))
            lo, hi = activation_range(op.options.get("fusedActivationFunction", 0), s_out, z_out)
            steps.append(Step("add", step_in + [src(op.inputs[1])], op.outputs[0], dict(
                n=x.size, in1_offset=-z_in, in2_offset=-z2, out_zp=z_out, left_shift=20, in1_mult=m1, in1_shift=sh1,
                in2_mult=m2, in2_shift=sh2, out_mult=mo, out_shift=sho, act_min=lo, act_max=hi)))
        else:  # parse() already refused anything else
            raise UserError(f"unsupported op {op.kind}")
    return steps, alias


def _blocks4(w2: np.ndarray, records: np.ndarray, packed: bool) -> np.ndarray:
    """[out_c][n] int8 weights and [out_c][8] nn_rqc_t records -> the int32 stream nn_blocks reads, in blocks of 4
    channels (zero-padded, firmware/nn/nn.h): the block's weights, then its 4 records. Depthwise (not packed): the 4
    weights of each tap. Packed: taps 2k and 2k+1 in 4 words, w_a + 2^16 w_b of channels a, b = 0, 1 for each tap,
    then of channels 2, 3; an odd last tap in 4 plain words."""
    out_c, n = w2.shape
    blocks = -(-out_c // 4)
    w = np.zeros((blocks * 4, n), np.int64)
    w[:out_c] = w2
    rec = np.zeros((blocks * 4, 8), np.int64)
    rec[:out_c] = records
    taps = w.reshape(blocks, 4, n).transpose(0, 2, 1)                     # [block][tap][channel]
    body = taps.reshape(blocks, 4 * n)
    if packed:
        pairs = taps[:, :n - n % 2].reshape(blocks, n // 2, 2, 4)          # [block][pair][tap of the pair][channel]
        words = pairs[..., 0::2] + 65536 * pairs[..., 1::2]                # [block][pair][tap][channels 01, 23]
        odd = taps[:, n - n % 2:].reshape(blocks, -1)                     # an odd last tap, plain
        body = np.concatenate([words.transpose(0, 1, 3, 2).reshape(blocks, -1), odd], axis=1)
    stream = np.concatenate([body, rec.reshape(blocks, 32)], axis=1).reshape(-1)
    return ((stream + 2**31) % 2**32 - 2**31).astype(np.int32)   # the records' uint32 words as int32


def _pairs_fit(w2: np.ndarray) -> bool:
    """nn_blocks sums a packed tap pair's two products per channel in a 16-bit half: with |x| <= 128,
    |w(2k)| + |w(2k+1)| <= 255 keeps x0*w(2k) + x1*w(2k+1) within (-2^15, 2^15). TFLite's int8 weights are
    [-127, 127], which always fit; a pair of -128s would not."""
    a = np.abs(w2.astype(np.int64))
    n = a.shape[1] - a.shape[1] % 2
    return bool(np.all(a[:, 0:n:2] + a[:, 1:n:2] <= 255))


def _pointwise(step_in, out_idx, pixels, in_c, out_c, w2, records, rq_fields, macs) -> Step:
    rq_fields["fast"] &= int(_pairs_fit(w2))
    return Step("pointwise", step_in, out_idx, dict(pixels=pixels, in_c=in_c, out_c=out_c, **rq_fields),
                {"weights": ("int32_t", _blocks4(w2, records, True))}, macs)
