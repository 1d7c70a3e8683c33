"""Model compiler: full-INT8 .tflite -> model.c + model.h (plain C11 over firmware/nn, static arena).

    python -m export.rp2040.compile --tflite model_int8.tflite --out DIR [--class-names a,b,c]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecore.errors import UserError, one_line_errors
from edgecore.io import ensure_dir, write_json_atomic, write_text_atomic
from edgecore.manifest import check_class_names

from edgecore import tflite_graph
from .lower import Step, lower
from .plan import plan

_STRUCT = {"conv2d": "nn_conv_t", "dwconv": "nn_dwconv_t", "pointwise": "nn_pointwise_t", "avgpool": "nn_avgpool_t",
           "mean": "nn_mean_t", "softmax": "nn_softmax_t", "add": "nn_add_t"}
_RQ = ("out_zp", "act_min", "act_max", "fast")
_GEOM = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_top",
         "pad_left", "in_zp")


@dataclass
class Compiled:
    model_c: str
    model_h: str
    summary: dict


def c_string(text: str) -> str:
    """A C11 string literal holding `text` as UTF-8. Printable ASCII stays readable; every other byte, and the
    characters C gives meaning to inside a literal (quote, backslash, '?' of the ??x trigraphs that -std=c11
    honours), is a 3-digit octal escape, which unlike \\x cannot swallow the characters that follow it."""
    return '"' + "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\?' else f"\\{b:03o}"
                         for b in text.encode("utf-8")) + '"'


def _c_value(v) -> str:
    return str(int(v))


# Where the arrays the kernels stream (weights, biases, requantization records, tap offsets) live on the RP2040.
# "sram": copied there at boot (NN_SRAM in nn.h), no XIP cache misses; "flash": read through the XIP cache.
PLACEMENTS = ("sram", "flash")


def _c_array(name: str, ctype: str, data: np.ndarray, placement: str) -> str:
    where = " NN_SRAM" if placement == "sram" else ""
    flat = [str(int(v)) for v in np.asarray(data).reshape(-1)]
    rows = [", ".join(flat[i:i + 24]) for i in range(0, len(flat), 24)]
    return f"static const {ctype} {name}[{len(flat)}]{where} = {{\n  " + ",\n  ".join(rows) + "\n};\n"


def _struct(name: str, step: Step) -> str:
    has_rq = step.kernel in ("conv2d", "dwconv", "pointwise")   # requantization fields live in .rq
    has_g = step.kernel in ("conv2d", "dwconv")          # window geometry lives in .g
    parts, rq, geom = [], [], []
    for k, v in step.fields.items():
        dst = rq if has_rq and k in _RQ else geom if has_g and k in _GEOM else parts
        dst.append(f".{k} = {_c_value(v)}")
    for k in step.arrays:
        (rq if has_rq and k in _RQ else parts).append(f".{k} = {name}_{k}")
    if geom:
        parts.append(".g = {" + ", ".join(geom) + "}")
    if rq:
        parts.append(".rq = {" + ", ".join(rq) + "}")
    return f"static const {_STRUCT[step.kernel]} {name} = {{{', '.join(parts)}}};\n"


def compile_graph(graph: tflite_graph.Graph, class_names: list[str] | None = None, placement: str = "sram") -> Compiled:
    if placement not in PLACEMENTS:
        raise UserError(f"weights placement {placement!r}: use one of {', '.join(PLACEMENTS)}")
    steps, alias = lower(graph)
    if not steps:
        raise UserError("model has no computing op")
    def src(i: int) -> int:
        while i in alias:
            i = alias[i]
        return i

    in_t, out_t = graph.inputs[0], src(graph.outputs[0])
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UserError("the compiled model API has one input and one output")
    if out_t == in_t:
        raise UserError("model output is its input")
    inp, outp = graph.tensors[in_t], graph.tensors[graph.outputs[0]]
    if len(inp.shape) != 4:
        raise UserError(f"model input must be NHWC, got shape {inp.shape}")
    num_classes = outp.size
    names = class_names or [f"class_{i}" for i in range(num_classes)]
    check_class_names(names, "class names")
    if len(names) != num_classes:
        raise UserError(f"{len(names)} class names for a model with {num_classes} outputs")

    sizes, life = {}, {}
    for s_i, st in enumerate(steps):
        for t in st.inputs + [st.output]:
            if t in (in_t, out_t):
                continue
            sizes[t] = graph.tensors[t].size
            a, b = life.get(t, (s_i, s_i))
            life[t] = (min(a, s_i), max(b, s_i))
    offsets, arena = plan(sizes, life)

    def where(t: int) -> str:
        return "input" if t == in_t else "output" if t == out_t else f"(arena + {offsets[t]})"

    consts, calls, flash = [], [], 0
    for i, st in enumerate(steps):
        name = f"L{i}_{st.kernel}"
        for k, (ctype, arr) in st.arrays.items():
            consts.append(_c_array(f"{name}_{k}", ctype, arr, placement))
            flash += arr.nbytes
        consts.append(_struct(name, st))
        args = ", ".join(where(t) for t in st.inputs)
        calls.append(f"    nn_{st.kernel}(&{name}, {args}, {where(st.output)});")
    macs = sum(st.macs for st in steps)
    _, h, w, c = inp.shape

    header = f"""/* Generated by export/rp2040/compile.py: do not edit. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#define MODEL_INPUT_H {h}
#define MODEL_INPUT_W {w}
#define MODEL_INPUT_C {c}
#define MODEL_INPUT_BYTES {h * w * c}
#define MODEL_NUM_CLASSES {num_classes}
#define MODEL_ARENA_BYTES {arena}
#define MODEL_MACS {macs}
#define MODEL_WEIGHT_BYTES {flash}

extern const char *const model_class_names[MODEL_NUM_CLASSES];
/* input: int8 NHWC (standardize(pixel) - 128, docs/CONTRACT.md); output: MODEL_NUM_CLASSES int8 scores. Returns 0. */
int model_run(const int8_t *input, int8_t *output);

#endif
"""
    name_list = ", ".join(c_string(n) for n in names)
    body = f"""/* Generated by export/rp2040/compile.py: do not edit. */
#include "model.h"
#include "nn.h"

const char *const model_class_names[MODEL_NUM_CLASSES] = {{{name_list}}};

{"_Alignas(4) static int8_t arena[MODEL_ARENA_BYTES];" if arena else "/* no intermediate tensors: no arena */"}

{"".join(consts)}
int model_run(const int8_t *input, int8_t *output) {{
{chr(10).join(calls)}
    return 0;
}}
"""
    summary = {"arena_bytes": arena, "weight_bytes": flash, "weights_in": placement, "macs": macs,
               "input_shape": list(inp.shape),
               "num_classes": num_classes,
               "steps": [{"kernel": st.kernel, "macs": st.macs, "output_bytes": graph.tensors[st.output].size,
                          "output": where(st.output)} for st in steps]}
    return Compiled(body, header, summary)


def compile_file(tflite: str | Path, out_dir: str | Path, class_names: list[str] | None = None,
                 placement: str = "sram") -> dict:
    compiled = compile_graph(tflite_graph.load(tflite), class_names, placement)
    out = ensure_dir(out_dir)
    write_text_atomic(out / "model.h", compiled.model_h)
    write_text_atomic(out / "model.c", compiled.model_c)
    write_json_atomic(out / "model_plan.json", compiled.summary)
    return compiled.summary


@one_line_errors()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.rp2040.compile",
                                 description="Compile a full-INT8 .tflite into model.c/model.h for firmware/nn.")
    ap.add_argument("--tflite", required=True, help="full-INT8 .tflite (int8 input and output)")
    ap.add_argument("--out", required=True, help="output folder for model.c, model.h, model_plan.json")
    ap.add_argument("--class-names", default=None, help="comma-separated class names (default class_0..)")
    args = ap.parse_args(argv)
    names = args.class_names.split(",") if args.class_names else None
    s = compile_file(args.tflite, args.out, names)
    print(f"wrote {args.out}/model.c, model.h: {len(s['steps'])} kernel calls, {s['macs']:,} MACs, "
          f"arena {s['arena_bytes']:,} B, weights+constants {s['weight_bytes']:,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
