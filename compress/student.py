"""The tiny depthwise-separable student CNN, its BN folding, MAC count and INT8 fake-quant (QAT) twin.

Every op maps to one TFLite int8 builtin: CONV_2D / DEPTHWISE_CONV_2D (ReLU6 fused, BN folded),
MEAN (global average pool), FULLY_CONNECTED, SOFTMAX. Stride-2 convs pad like TF 'same'
(extra row/column at the bottom/right), so torch and TFLite compute the same function.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
RELU6_MAX = 6.0


@dataclass(frozen=True)
class StudentConfig:
    input_size: int = 96
    in_channels: int = 3
    num_classes: int = 6
    width: float = 1.0
    stem_channels: int = 8
    # (output channels, stride) of each depthwise-separable block, before the width multiplier
    blocks: tuple[tuple[int, int], ...] = ((16, 2), (32, 2), (32, 1), (64, 2), (64, 1))

    def scaled(self, channels: int) -> int:
        return max(1, int(round(channels * self.width)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["blocks"] = [list(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        d = dict(d)
        d["blocks"] = tuple(tuple(b) for b in d["blocks"])
        return cls(**d)


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "conv" (full), "dw" (depthwise 3x3), "pw" (pointwise 1x1)
    cin: int
    cout: int
    kernel: int
    stride: int
    in_hw: int
    out_hw: int

    @property
    def groups(self) -> int:
        return self.cin if self.kind == "dw" else 1

    @property
    def macs(self) -> int:
        return self.out_hw * self.out_hw * self.cout * self.kernel * self.kernel * (self.cin // self.groups)


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def layer_specs(cfg: StudentConfig) -> list[LayerSpec]:
    specs = []
    hw = cfg.input_size
    c = cfg.scaled(cfg.stem_channels)
    out = -(-hw // 2)
    specs.append(LayerSpec("conv", cfg.in_channels, c, 3, 2, hw, out))
    hw = out
    for ch, stride in cfg.blocks:
        out = -(-hw // stride)
        specs.append(LayerSpec("dw", c, c, 3, stride, hw, out))
        specs.append(LayerSpec("pw", c, cfg.scaled(ch), 1, 1, out, out))
        c, hw = cfg.scaled(ch), out
    return specs


def count_macs(cfg: StudentConfig) -> int:
    """Multiply-accumulates of one inference: convs and the classifier (the pool and softmax add none)."""
    specs = layer_specs(cfg)
    return sum(s.macs for s in specs) + specs[-1].cout * cfg.num_classes


def count_params(cfg: StudentConfig) -> int:
    """Parameters of the deployed (BN-folded) network: conv weights + one bias per output channel."""
    n = 0
    for s in layer_specs(cfg):
        n += s.cout * s.kernel * s.kernel * (s.cin // s.groups) + s.cout
    return n + (layer_specs(cfg)[-1].cout + 1) * cfg.num_classes


def _pad_same(x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Pad from the layer's configured input size (a constant, also when traced for ONNX)."""
    before, after = same_pad(spec.in_hw, spec.kernel, spec.stride)
    return F.pad(x, (before, after, before, after)) if before or after else x


class ConvBNReLU6(nn.Module):
    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.cin, spec.cout, spec.kernel, spec.stride, 0, groups=spec.groups, bias=False)
        self.bn = nn.BatchNorm2d(spec.cout, eps=BN_EPS)

    def forward(self, x):
        return F.relu6(self.bn(self.conv(_pad_same(x, self.spec))))


class Student(nn.Module):
    """Float student: NCHW input in [0, 1], returns logits."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        specs = layer_specs(cfg)
        self.features = nn.Sequential(*[ConvBNReLU6(s) for s in specs])
        self.fc = nn.Linear(specs[-1].cout, cfg.num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def fold_bn(model: Student) -> dict:
    """BN folded into each conv: {"convs": [(spec, weight OIHW, bias)], "fc": (weight, bias)} as float32 numpy."""
    convs = []
    for layer in model.features:
        bn = layer.bn
        gamma = bn.weight.detach().double()
        std = torch.sqrt(bn.running_var.detach().double() + bn.eps)
        mult = gamma / std
        w = layer.conv.weight.detach().double() * mult[:, None, None, None]
        b = bn.bias.detach().double() - bn.running_mean.detach().double() * mult
        convs.append((layer.spec, w.float().numpy(), b.float().numpy()))
    fc = (model.fc.weight.detach().float().numpy().copy(), model.fc.bias.detach().float().numpy().copy())
    return {"convs": convs, "fc": fc}


# ---- INT8 fake quantization matching TFLite's scheme ----

def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel (dim 0) symmetric int8, range [-127, 127], straight-through gradient."""
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
    scale = (amax / 127.0).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def act_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Per-tensor asymmetric int8 (scale, zero point) for a range; zero is kept exactly representable."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zp


class ActQuant(nn.Module):
    """Per-tensor asymmetric int8 activation fake-quant; min/max tracked by EMA until frozen."""

    def __init__(self, fixed: tuple[float, float] | None = None, momentum: float = 0.05):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(fixed[0] if fixed else 0.0))
        self.register_buffer("hi", torch.tensor(fixed[1] if fixed else 0.0))
        self.register_buffer("seen", torch.tensor(fixed is not None))
        self.fixed = fixed is not None
        self.frozen = False

    def forward(self, x):
        if self.training and not (self.fixed or self.frozen):
            lo, hi = x.detach().min(), x.detach().max()
            if not bool(self.seen):
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.seen.fill_(True)
            else:
                self.lo.lerp_(lo, self.momentum)
                self.hi.lerp_(hi, self.momentum)
        if not bool(self.seen):
            return x
        scale, zp = act_qparams(float(self.lo), float(self.hi))
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)


class QATStudent(nn.Module):
    """BN-folded student with TFLite-style fake quantization at every tensor the int8 model stores."""

    def __init__(self, cfg: StudentConfig, folded: dict):
        super().__init__()
        self.cfg = cfg
        self.specs = [spec for spec, _, _ in folded["convs"]]
        self.weights = nn.ParameterList([nn.Parameter(torch.from_numpy(w.copy())) for _, w, _ in folded["convs"]])
        self.biases = nn.ParameterList([nn.Parameter(torch.from_numpy(b.copy())) for _, _, b in folded["convs"]])
        self.fc = nn.Linear(self.specs[-1].cout, cfg.num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(folded["fc"][0]))
            self.fc.bias.copy_(torch.from_numpy(folded["fc"][1]))
        self.q_in = ActQuant(fixed=(0.0, 1.0))  # the contract's input quantization: scale 1/255, zp -128
        self.q_convs = nn.ModuleList([ActQuant() for _ in self.specs])
        self.q_pool = ActQuant()
        self.q_logits = ActQuant()

    def freeze_observers(self) -> None:
        for m in self.modules():
            if isinstance(m, ActQuant):
                m.frozen = True

    def forward(self, x):
        x = self.q_in(x)
        for spec, w, b, q in zip(self.specs, self.weights, self.biases, self.q_convs):
            x = F.conv2d(_pad_same(x, spec), fake_quant_weight(w), b, spec.stride, 0, 1, spec.groups)
            x = q(F.relu6(x))
        x = self.q_pool(x.mean(dim=(2, 3)))
        return self.q_logits(F.linear(x, fake_quant_weight(self.fc.weight), self.fc.bias))

    def export_folded(self) -> dict:
        """Fake-quantized weights (so the converter's own quantization reproduces them exactly) and biases."""
        with torch.no_grad():
            convs = [(s, fake_quant_weight(w).numpy().copy(), b.numpy().copy())
                     for s, w, b in zip(self.specs, self.weights, self.biases)]
            fc = (fake_quant_weight(self.fc.weight).numpy().copy(), self.fc.bias.numpy().copy())
        return {"convs": convs, "fc": fc}


def describe(cfg: StudentConfig) -> str:
    """One line per layer plus totals, for the stage's printout."""
    lines = [f"{'layer':<6}{'in':>10}{'out':>10}{'k/s':>6}{'MACs':>11}"]
    for s in layer_specs(cfg):
        lines.append(f"{s.kind:<6}{f'{s.in_hw}x{s.in_hw}x{s.cin}':>10}{f'{s.out_hw}x{s.out_hw}x{s.cout}':>10}"
                     f"{f'{s.kernel}/{s.stride}':>6}{s.macs:>11,}")
    c = layer_specs(cfg)[-1].cout
    lines.append(f"{'fc':<6}{c:>10}{cfg.num_classes:>10}{'':>6}{c * cfg.num_classes:>11,}")
    lines.append(f"total MACs {count_macs(cfg):,}, parameters {count_params(cfg):,}")
    return "\n".join(lines)
