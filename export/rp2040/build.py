"""Build the RP2040 firmware for a run: compile the INT8 model to C, bake self-test images, make, UF2.

    python -m export.rp2040.build --run artifacts/default --out build/rp2040 [--name pizza]

Writes <out>/<name>.{uf2,elf,bin,map} and <out>/<name>.size.json, prints flash and RAM use against
the RP2040's 2 MB flash and 264 KB SRAM, and fails (exit 2) if the firmware does not fit.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecore import preprocess
from edgecore.config import from_args
from edgecore.errors import UserError, os_error_line
from edgecore.io import ensure_dir, write_bytes_atomic, write_json_atomic
from edgecore.manifest import record_stage, run_lock, verify_inputs
from edgecore.targets import device_limits

from .boot2 import BOOT2_MODES
from .compile import PLACEMENTS
from .elfsize import firmware_memory
from .selftest import write_selftest_sources
from .uf2 import FLASH_BYTES, read_uf2

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware" / "rp2040"
SRAM_BYTES = device_limits("rp2040")["ram_bytes"]  # targets/rp2040.toml, like the flash size
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-objcopy", "arm-none-eabi-size", "arm-none-eabi-nm", "make")


@dataclass(frozen=True)
class FirmwareConfig:
    """Options of the firmware build (`python -m export.rp2040.build --help`)."""
    fw_out: Path = Path("build/rp2040")
    fw_name: str = "pizza"
    fw_selftest_images: int = 2
    fw_stack: int = 8192
    fw_weights: str = "sram"          # one of compile.PLACEMENTS
    fw_boot2: str = "w25q080"         # one of boot2.BOOT2_MODES
    seed: int = 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = FirmwareConfig()
    g = p.add_argument_group("firmware (rp2040)")
    g.add_argument("--fw-out", "--out", dest="fw_out", type=Path, default=d.fw_out,
                   help="output folder for <name>.uf2/.elf/.bin/.map (default build/rp2040)")
    g.add_argument("--fw-name", default=d.fw_name, help="firmware file name stem (default pizza)")
    g.add_argument("--fw-selftest-images", type=int, default=d.fw_selftest_images,
                   help="test images baked into the firmware for its boot self-test (default 2)")
    g.add_argument("--fw-stack", type=int, default=d.fw_stack, help="bytes reserved for the stack (default 8192)")
    g.add_argument("--fw-weights", choices=PLACEMENTS, default=d.fw_weights,
                   help="where the model's weights, biases and requantization records live: sram (copied at boot; "
                        "no XIP cache misses, costs SRAM, the default) or flash (read through the 16 KB XIP cache)")
    g.add_argument("--fw-boot2", choices=BOOT2_MODES, default=d.fw_boot2,
                   help="second-stage boot for the board's flash: w25q080 (quad-SPI EBh at clk/2; Raspberry Pi "
                        "Pico and other W25Q080/W25Q16JV boards, the default) or generic-03h (serial 03h at clk/4; "
                        "any SPI flash, slowest)")


def _check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise UserError(f"missing firmware toolchain: {', '.join(missing)} "
                        "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi make)")


def _selftest_images(run: Path, height: int, width: int, count: int) -> tuple[np.ndarray, list[int], list[dict]]:
    """The first `count` test images, taking one class after another so several classes appear."""
    from compress.data import load_dataset, load_images

    ds = load_dataset(run)
    test = ds.split("test")
    if not test:
        raise UserError(f"the run {run} has no test images to bake into the firmware self-test")
    by_class: dict[str, list[dict]] = {}
    for it in test:
        by_class.setdefault(it["label"], []).append(it)
    picked, depth = [], 0
    while len(picked) < min(count, len(test)):
        for items in by_class.values():
            if depth < len(items) and len(picked) < count:
                picked.append(items[depth])
        depth += 1
    rgb = load_images(run, picked, (height, width))
    labels = [ds.classes.index(it["label"]) for it in picked]
    return preprocess.to_int8(rgb), labels, picked


def size_report(elf: Path, arena_bytes: int) -> dict:
    """Measured from the linked ELF (elfsize.firmware_memory, as the benchmark does): flash image, static RAM
    (.data + .bss, arena included), stack."""
    mem = firmware_memory(elf)
    ram = mem["ram_sections"]
    return {"flash_bytes": mem["flash_bytes"], "flash_limit_bytes": FLASH_BYTES,
            "text_rodata_bytes": mem["flash_sections"].get(".text", 0), "data_bytes": ram.get(".data", 0),
            "bss_bytes": ram.get(".bss", 0), "static_ram_bytes": mem["static_ram_bytes"], "arena_bytes": arena_bytes,
            "stack_bytes": mem["stack_bytes"], "ram_bytes": mem["ram_bytes"], "ram_limit_bytes": SRAM_BYTES}


def _make(gen: Path, work: Path, name: str, stack: int, boot2: str) -> None:
    cmd = ["make", "-C", str(FIRMWARE_DIR), f"GEN_DIR={gen}", f"BUILD_DIR={work}", f"NAME={name}",
           f"PYTHON={sys.executable}", f"STACK_SIZE={stack}", f"BOOT2={boot2}", f"-j{min(2, os.cpu_count() or 1)}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    log = work / "build.log"
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        first = next((ln for ln in lines if "overflow" in ln or "overlaps" in ln), None)
        if first:
            raise UserError(f"firmware does not fit the RP2040: {first.strip()} (log: {log})")
        err = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "unknown")
        raise RuntimeError(f"firmware build failed: {err.strip()} (full log: {log})")


def run(args) -> dict:
    return build_firmware(Path(args.run), from_args(FirmwareConfig, args))


def build_firmware(run_dir: Path, cfg: FirmwareConfig) -> dict:
    """Stage firmware: R/quant/model_int8.tflite -> <cfg.fw_out>/<name>.{uf2,elf,bin,map,size.json}; returns the
    size report."""
    from .compile import compile_file

    _check_tools()
    run_dir = Path(run_dir)
    tflite = run_dir / "quant" / "model_int8.tflite"
    if not tflite.is_file():
        raise UserError(f"INT8 model not found: {tflite} (run the quantize stage first)")
    if cfg.fw_selftest_images < 1:
        raise UserError("--fw-selftest-images must be at least 1")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.fw_name):
        raise UserError(f"--fw-name {cfg.fw_name!r}: use letters, digits, '_', '-' or '.'")
    verify_inputs(run_dir, "quant", [tflite], f"python -m compress quantize --run {run_dir}")
    from compress.data import load_dataset

    out = ensure_dir(cfg.fw_out).resolve()
    gen, work = ensure_dir(out / "gen"), ensure_dir(out / "work")
    placement = cfg.fw_weights
    plan = compile_file(tflite, gen, load_dataset(run_dir).classes, placement)
    _, height, width, _ = plan["input_shape"]
    x, labels, picked = _selftest_images(run_dir, height, width, cfg.fw_selftest_images)
    write_selftest_sources(gen, x, labels)
    boot2 = cfg.fw_boot2
    _make(gen, work, cfg.fw_name, cfg.fw_stack, boot2)

    name = cfg.fw_name
    read_uf2((work / f"{name}.uf2").read_bytes())
    report = size_report(work / f"{name}.elf", plan["arena_bytes"])
    report.update({"macs": plan["macs"], "weight_bytes": plan["weight_bytes"], "selftest_images": len(picked),
                   "boot2": boot2, "weights_in": placement})
    outputs = []
    for ext in ("elf", "bin", "map", "uf2"):
        dst = out / f"{name}.{ext}"
        write_bytes_atomic(dst, (work / f"{name}.{ext}").read_bytes())
        outputs.append(dst)
    write_json_atomic(out / f"{name}.size.json", report)
    _print_report(report, out / f"{name}.uf2")
    if report["flash_bytes"] > FLASH_BYTES or report["ram_bytes"] > SRAM_BYTES:
        raise UserError("the firmware does not fit the RP2040 (see the size report above)")
    # The generated C is recorded too: a release packs it beside the .uf2 and must find the same bytes.
    outputs += [out / f"{name}.size.json", gen / "model.c", gen / "model.h", gen / "model_plan.json"]
    record_stage(run_dir, "firmware", inputs=[tflite], outputs=outputs,
                 params={"name": name, "selftest_images": len(picked), "stack_bytes": cfg.fw_stack,
                         "boot2": boot2, "weights_in": placement},
                 metrics={"fw_flash_bytes": report["flash_bytes"], "fw_ram_bytes": report["ram_bytes"],
                          "fw_arena_bytes": report["arena_bytes"]}, seed=cfg.seed)
    return report


def _print_report(r: dict, uf2: Path) -> None:
    kb = lambda n: f"{n / 1024:8.1f} KB"  # noqa: E731
    print(f"firmware: {uf2}")
    print(f"  flash      {kb(r['flash_bytes'])} of {kb(r['flash_limit_bytes'])} "
          f"({100 * r['flash_bytes'] / r['flash_limit_bytes']:.1f}%)")
    print(f"  static RAM {kb(r['static_ram_bytes'])}  (.data {r['data_bytes']} B, .bss {r['bss_bytes']} B, "
          f"model arena {r['arena_bytes']} B included)")
    print(f"  stack      {kb(r['stack_bytes'])}  reserved")
    print(f"  RAM total  {kb(r['ram_bytes'])} of {kb(r['ram_limit_bytes'])} "
          f"({100 * r['ram_bytes'] / r['ram_limit_bytes']:.1f}%)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.rp2040.build", description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("artifacts/default"), help="run folder (default artifacts/default)")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        with run_lock(args.run, "python -m export.rp2040.build"):
            run(args)
    except (UserError, RuntimeError) as e:  # RuntimeError: a compiler/linker failure, its log path included
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
