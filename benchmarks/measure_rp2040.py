"""RP2040 target: op support, accuracy on TFLite-Micro and on our compiled C model, flash/RAM from the
firmware ELF, latency from the firmware's own cycle counter in the rp2040js emulator (and on a real Pico)."""
from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgecore import preprocess, tflite_graph
from edgecore.errors import UserError
from edgecore.interpreters import tflm_arena_bytes, tflm_invoke
from edgecore.io import read_json, sha256_file
from edgecore.tflite_graph import describe_model
from export.rp2040.boot2 import BOOT2_MODES
from export.rp2040.elfsize import firmware_memory, object_footprint
from export.rp2040.emulator import emulator, emulator_missing
from export.rp2040.uf2 import read_uf2
from export.rp2040.xip import describe, estimate, xip_profile

from . import opcheck
from .artifacts import REPO_ROOT
from .context import INT8_TFLITE, Context, Deployed, drop_row
from .results import Point, Result, check, info, measured, not_run

EMULATED_IMAGES = 3      # emulated inferences: latency median + bit-exactness against the host C model
DEVICE_IMAGES = 20       # real-Pico inferences (each sends the whole int8 image over a UART)
BOOT_TIMEOUT_S = 600.0   # the firmware runs its self-test images before printing READY


def _ops_gate(ctx: Context, result: Result, model: Path) -> bool:
    ops, _ = opcheck.tflite_inventory(model)
    allowed = set(ctx.spec.ops.get("allowed", ops)) & set(tflite_graph.SUPPORTED)
    bad = opcheck.unsupported(ops, allowed)
    note = (f"unsupported: {', '.join(bad)}" if bad else f"all {sum(ops.values())} ops have RP2040 kernels") + \
        f" ({opcheck.describe(ops)})"
    result.rows.append(check(f"TFLite ops vs firmware/nn kernels and targets/{ctx.spec.name}.toml", not bad, note))
    if bad:
        return False
    try:  # the compiler's own checks: full INT8 I/O and weights, one subgraph
        tflite_graph.parse(model.read_bytes(), str(model))
    except UserError as e:
        result.rows.append(check("model compiler accepts the graph", False, str(e)))
        return False
    return True


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(pred == y))


def _tflm(ctx: Context, result: Result, data: bytes, xq: np.ndarray, y, float_acc: float, size: int) -> np.ndarray:
    out = tflm_invoke(data, xq, progress=sys.stderr.isatty())
    ctx.deployed = Deployed("TFLite-Micro", xq.shape[1:3],
                            lambda imgs: tflm_invoke(data, preprocess.to_int8(imgs)).argmax(1), out.argmax(1))
    acc = _accuracy(out.argmax(1), y)
    result.rows += [measured("accuracy_pct", f"INT8 accuracy (TFLite-Micro interpreter), {ctx.test_name(len(y))}",
                             round(acc, 4), "%"),
                    drop_row("INT8 drop vs float (TFLite-Micro)", float_acc, acc),
                    info("TFLite-Micro arena (RecordingMicroAllocator)", tflm_arena_bytes(data), "B",
                         "what the interpreter would need; the firmware runs our compiled model instead")]
    result.points.append(Point("int8", "TFLite-Micro", size, acc))
    return out


def _c_model(ctx: Context, result: Result, model: Path, xq, y, float_acc: float, tflm_out: np.ndarray, size: int):
    """Our compiled C model on the host (same C as the firmware); None when the compiler is not there."""
    try:
        from export.rp2040.host import HostModel
    except ImportError as e:
        result.rows.append(not_run("accuracy_pct", "INT8 accuracy (compiled C model)",
                                   f"export.rp2040.host unavailable ({e})"))
        return None
    host = HostModel(model)
    out = np.stack([np.asarray(host.run(x[None])).reshape(-1) for x in xq]).astype(np.int8)
    acc = _accuracy(out.argmax(1), y)
    same = int(np.sum(np.all(out == tflm_out, axis=1)))
    max_diff = int(np.max(np.abs(out.astype(np.int16) - tflm_out.astype(np.int16))))
    result.rows += [measured("accuracy_pct", f"INT8 accuracy (compiled C model, host build), "
                                             f"{ctx.test_name(len(y))}", round(acc, 4), "%"),
                    drop_row("INT8 drop vs float (compiled C model)", float_acc, acc),
                    info("C model outputs equal to TFLite-Micro", same, f"of {len(y)} images",
                         f"max difference {max_diff} LSB"),
                    info("C model arena (ours)", int(host.arena_bytes), "B", "activation buffers, planned offline")]
    result.points.append(Point("int8", "compiled C model", size, acc))
    return out


FIRMWARE_SOURCES = ("firmware/rp2040", "firmware/nn", "export/rp2040")
USB_OBJECTS = ("usb.o", "usb_desc.o", "link.o")


def _built_from(run_dir: Path, uf2: Path, model: Path) -> bool:
    """True when the firmware stage's manifest says this .uf2 was built from this very model, and no
    firmware or compiler source changed since (make's rule)."""
    manifest = run_dir / "firmware" / "manifest.json"
    sources = [p for d in FIRMWARE_SOURCES for p in (REPO_ROOT / d).iterdir() if p.is_file()]
    if not manifest.is_file() or max(p.stat().st_mtime for p in sources) > uf2.stat().st_mtime:
        return False
    try:
        doc = read_json(manifest, "firmware manifest")
    except UserError:  # an unreadable record: rebuild rather than measure a firmware nobody vouches for
        return False
    records = [doc.get("inputs"), doc.get("outputs")]
    if not all(isinstance(r, dict) and all(isinstance(v, dict) for v in r.values()) for r in records):
        return False
    inputs, outputs = ({v.get("sha256") for v in r.values()} for r in records)
    # The .elf is measured too (sizes): both must be the bytes the build recorded.
    return sha256_file(model) in inputs and {sha256_file(uf2), sha256_file(uf2.with_suffix(".elf"))} <= outputs


def firmware_files(ctx: Context, model: Path) -> tuple[Path, Path] | str:
    """(uf2, elf) built from this run's model, building them when missing or built from another model;
    a 'not run' reason when the firmware cannot be built here."""
    build = ctx.build_dir
    command = [sys.executable, "-m", "export.rp2040.build", "--run", str(ctx.run_dir), "--out", str(build)]
    uf2s = sorted(build.glob("*.uf2"), key=lambda p: p.stat().st_mtime)
    if uf2s and uf2s[-1].with_suffix(".elf").is_file() and _built_from(ctx.run_dir, uf2s[-1], model):
        return uf2s[-1], uf2s[-1].with_suffix(".elf")
    if importlib.util.find_spec("export.rp2040.build") is None:
        return f"no firmware in {build} built from this model, and export.rp2040.build is unavailable"
    print(f"[bench] building the firmware: python {' '.join(command[1:])}", flush=True)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"firmware build failed (python {' '.join(command[1:])}): {tail}")
    uf2s = sorted(build.glob("*.uf2"), key=lambda p: p.stat().st_mtime)
    if not uf2s:
        raise UserError(f"the firmware build wrote no .uf2 into {build}")
    return uf2s[-1], uf2s[-1].with_suffix(".elf")


def _memory(result: Result, uf2: Path, elf: Path) -> None:
    mem = firmware_memory(elf)
    blocks = read_uf2(uf2.read_bytes())
    sections = ", ".join(f"{k} {v:,}" for k, v in mem["flash_sections"].items())
    ram_sections = ", ".join(f"{k} {v:,}" for k, v in mem["ram_sections"].items())
    result.rows += [measured("flash_bytes", "firmware flash image (ELF, stored sections)", mem["flash_bytes"], "B",
                             sections),
                    info("UF2 payload", sum(len(b) for b in blocks.values()), "B", f"{len(blocks)} blocks of 256 B"),
                    measured("ram_bytes", "static RAM: data + bss + reserved stack (ELF)", mem["ram_bytes"], "B",
                             f"{ram_sections} (arena in .bss) + stack {mem['stack_bytes']:,}")]
    link_map = elf.with_suffix(".map")
    if link_map.is_file():
        usb = object_footprint(link_map, USB_OBJECTS)
        result.rows.append(info("USB CDC-ACM stack, included above (flash)", usb["flash_bytes"], "B",
                                f"{' + '.join(USB_OBJECTS)} from the linker map; static RAM "
                                f"{usb['static_ram_bytes']:,} B"))


def _run_firmware(ctx: Context, result: Result, client, xq: np.ndarray, where: str, host_out) -> tuple[list, list]:
    """Inferences on the firmware; rows for its stack use and its agreement with the host C model."""
    dev = client.info()
    result.rows.append(info(f"stack used ({where}, painted-stack watermark)", dev.stack_used, "B",
                            f"of {dev.stack_reserved:,} reserved"))
    outs, cycles = [], []
    for x in xq:
        r = client.infer(x)
        outs.append(r.scores)
        cycles.append(r.cycles)
    if host_out is not None:
        same = sum(bool(np.array_equal(o, h)) for o, h in zip(outs, host_out))
        result.rows.append(check(f"{where} outputs bit-exact with the host C model", same == len(outs),
                                 f"{same}/{len(outs)} images identical", metric="bit_exact"))
    return cycles, outs


def _latency(ctx: Context, result: Result, cycles: list[int], label: str, note: str) -> None:
    c = statistics.median(cycles)
    ms = 1e3 * c / ctx.spec.clock_hz
    result.rows.append(measured("latency_ms", f"{label} @ {ctx.spec.clock_hz / 1e6:.0f} MHz", round(ms, 3), "ms",
                                f"median of {len(cycles)}: {int(c):,} cycles; {note}"))
    if ctx.spec.device.get("max_clock_hz"):
        top = ctx.spec.device["max_clock_hz"]
        result.rows.append(info(f"{label} @ {top / 1e6:.0f} MHz", round(1e3 * c / top, 3), "ms", "same cycles"))


def _emulate(ctx: Context, result: Result, uf2: Path, xq, host_out) -> None:
    from export.rp2040.serial_client import Client

    why = emulator_missing()
    if why:
        result.rows.append(not_run("latency_ms", "latency (rp2040js emulator)", why))
        return
    print(f"[bench] running {uf2.name} in the rp2040js emulator ({len(xq)} inferences)", flush=True)
    port = None
    try:
        with emulator(uf2) as port:
            port.wait_for(b"READY", BOOT_TIMEOUT_S)
            cycles, _ = _run_firmware(ctx, result, Client(port, BOOT_TIMEOUT_S), xq, "emulator",
                                      host_out[:len(xq)] if host_out is not None else None)
    except (UserError, TimeoutError) as e:  # the firmware crashed or hung: a bug, not a user mistake
        said = (port.stderr if port else "").splitlines()
        why = next((ln for ln in reversed(said) if "Error" in ln), said[-1] if said else "no output")
        raise RuntimeError(f"{uf2} failed in the emulator: {e}; emulator: {why.strip()}") from None
    _latency(ctx, result, cycles, "latency (rp2040js emulator)",
             "firmware SysTick count; the emulator models no flash wait states: see the XIP-model estimate")
    plan = uf2.parent / "gen" / "model_plan.json"
    if plan.is_file():
        macs = json.loads(plan.read_text())["macs"]
        result.rows.append(info("emulated cycles per MAC", round(statistics.median(cycles) / macs, 3), "cycles/MAC",
                                f"{int(statistics.median(cycles)):,} cycles / {macs:,} MACs"))


def _xip_model(ctx, result: Result, uf2: Path, elf: Path) -> None:
    """Estimated silicon latency for each boot2: emulated cycles plus modelled XIP cache misses (a model)."""
    why = emulator_missing()
    if why:
        result.rows.append(not_run("xip_model", "estimated silicon latency (XIP model)", why))
        return
    print(f"[bench] replaying {uf2.name}'s flash reads through the XIP cache model", flush=True)
    prof = xip_profile(elf, uf2)
    result.rows.append(info("XIP cache misses per inference (model)", prof["misses"], "", describe(prof)))
    mhz = ctx.spec.clock_hz / 1e6
    for mode in BOOT2_MODES:
        e = estimate(prof, mode, ctx.spec.clock_hz)
        result.rows.append(info(f"estimated silicon latency (XIP model, {mode} boot2) @ {mhz:.0f} MHz",
                                round(e["ms"], 3), "ms",
                                f"model: {prof['cycles']:,} emulated + {prof['misses']:,} misses = {e['cycles']:,} "
                                f"cycles; up to {e['upper_ms']:.2f} ms if a line fill is two 32-bit transfers"))


def _on_pico(ctx: Context, result: Result, xq, y, host_out) -> None:
    from export.rp2040.serial_client import Client, open_serial

    n = min(DEVICE_IMAGES, len(xq))
    print(f"[bench] {n} inferences on the Pico at {ctx.device_port}", flush=True)
    port = open_serial(ctx.device_port, 115200, 60.0)
    try:
        cycles, outs = _run_firmware(ctx, result, Client(port, 60.0), xq[:n], "Pico",
                                     host_out[:n] if host_out is not None else None)
    finally:
        port.close()
    _latency(ctx, result, cycles, "latency (Pico over serial)", "firmware SysTick count on the real chip")
    acc = _accuracy(np.stack(outs).argmax(1), y[:n])
    result.rows.append(info(f"accuracy on the Pico, {ctx.test_name(n)}", round(acc, 4), "%", f"the first {n}"))


def measure_rp2040(ctx: Context, result: Result) -> None:

    model = ctx.quant_file(INT8_TFLITE)
    if not _ops_gate(ctx, result, model):
        return
    data = model.read_bytes()
    size = len(data)
    result.rows.append(measured("model_bytes", "INT8 .tflite flatbuffer", size, "B", str(model)))
    float_acc = ctx.float_baseline(result)
    _, h, w, _ = describe_model(data)["inputs"][0]["shape"]
    x, y, _ = ctx.test_set((h, w))
    xq = preprocess.to_int8(x)
    tflm_out = _tflm(ctx, result, data, xq, y, float_acc, size)
    host_out = _c_model(ctx, result, model, xq, y, float_acc, tflm_out, size)
    files = firmware_files(ctx, model)
    if isinstance(files, str):
        result.rows += [not_run("flash_bytes", "firmware flash image", files),
                        not_run("ram_bytes", "firmware static RAM", files),
                        not_run("latency_ms", "latency (rp2040js emulator)", files)]
        return
    uf2, elf = files
    _memory(result, uf2, elf)
    _emulate(ctx, result, uf2, xq[:EMULATED_IMAGES], host_out)
    _xip_model(ctx, result, uf2, elf)
    if ctx.device_port:
        _on_pico(ctx, result, xq, y, host_out)
    else:
        result.rows.append(not_run("latency_ms", "latency on a real Pico", "no --device PORT given"))
