"""The tiny depthwise-separable student CNN, its BN folding and MAC count.

Every op maps to one TFLite int8 builtin: CONV_2D / DEPTHWISE_CONV_2D (ReLU6 fused, BN folded),
MEAN (global average pool), FULLY_CONNECTED, SOFTMAX. Stride-2 convs pad like TF 'same'
(extra row/column at the bottom/right), so torch and TFLite compute the same function.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5


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
    def __init__(self, spec: LayerSpec, batchnorm: bool = True):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.cin, spec.cout, spec.kernel, spec.stride, 0, groups=spec.groups,
                              bias=not batchnorm)
        self.bn = nn.BatchNorm2d(spec.cout, eps=BN_EPS) if batchnorm else nn.Identity()

    def forward(self, x):
        return F.relu6(self.bn(self.conv(_pad_same(x, self.spec))))


class Student(nn.Module):
    """The one definition of the network: NCHW input in [0, 1], returns logits. `batchnorm=False` is the folded
    form (conv biases instead of BatchNorm) that quantization starts from."""

    def __init__(self, cfg: StudentConfig, batchnorm: bool = True):
        super().__init__()
        self.cfg = cfg
        specs = layer_specs(cfg)
        self.features = nn.Sequential(*[ConvBNReLU6(s, batchnorm) for s in specs])
        self.fc = nn.Linear(specs[-1].cout, cfg.num_classes)

    def forward(self, x):
        # keepdim + flatten: exported as one MEAN over H, W in NHWC (a plain mean(dim=(2, 3)) adds a TRANSPOSE)
        return self.fc(self.features(x).mean(dim=(2, 3), keepdim=True).flatten(1))


def fold_bn(model: Student) -> Student:
    """The same function with every BatchNorm folded into its conv (as a conv bias): what the int8 model stores
    and what quantization-aware training fine-tunes. Computed in float64, stored as float32."""
    folded = Student(model.cfg, batchnorm=False)
    with torch.no_grad():
        for src, dst in zip(model.features, folded.features):
            bn = src.bn
            mult = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            dst.conv.weight.copy_((src.conv.weight.double() * mult[:, None, None, None]).float())
            dst.conv.bias.copy_((bn.bias.double() - bn.running_mean.double() * mult).float())
        folded.fc.load_state_dict(model.fc.state_dict())
    return folded.eval()


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
