"""Estimated silicon latency from an XIP cache model: a model, never a measurement.

rp2040js charges no flash wait states. firmware/emulator/xip.mjs replays every read the firmware makes in the
XIP window during one inference through a model of the RP2040's XIP cache (16 KB, two-way, 8-byte lines,
LRU assumed) and counts the misses; each miss is a flash transfer whose length follows from the SSI frame
format each boot2 sets up. Estimated cycles = the emulated cycles of that inference + misses x miss cost.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .boot2 import BOOT2_MODES
from .emulator import EMULATOR_DIR

# clk_sys cycles to fill one 8-byte line, if the XIP block fetches it as one 64-bit transfer. SCK cycles come
# from the frame formats in firmware/rp2040/boot2_*.S and the flash datasheets; the +4 for chip-select and the
# SSI hand-off is an assumption.
MISS_CYCLES = {
    "w25q080": 2 * (8 + 4 + 16) + 4,       # EBh continuous read, SCK = clk/2: address + mode 8, wait 4, data 16
    "generic-03h": 4 * (8 + 24 + 64) + 4,  # 03h, SCK = clk/4: command 8, address 24, data 64, one bit per SCK
}
# The same if a line fill is two 32-bit transfers (the SSI is set up for 32-bit frames): the upper bound.
MISS_CYCLES_SPLIT = {
    "w25q080": 2 * (2 * (8 + 4 + 8) + 4),
    "generic-03h": 2 * (4 * (8 + 24 + 32) + 4),
}
assert set(MISS_CYCLES) == set(MISS_CYCLES_SPLIT) == set(BOOT2_MODES)
# Misses on the baked self-test image are left out: an INFER request's input sits in SRAM.
SELFTEST_INPUT = "selftest_images"


def xip_profile(elf: Path, uf2: Path) -> dict:
    """Run firmware/emulator/xip.mjs: reads, misses (by symbol) and cycles of one self-test inference."""
    r = subprocess.run(["node", str(EMULATOR_DIR / "xip.mjs"), str(elf), str(uf2)], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"XIP model run failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    prof = json.loads(r.stdout)
    model = [row for row in prof["by_symbol"] if row[0] != SELFTEST_INPUT]
    prof["reads"], prof["misses"] = sum(r[1] for r in model), sum(r[2] for r in model)
    prof["by_symbol"] = model
    return prof


def estimate(prof: dict, boot2: str, clock_hz: float) -> dict:
    """Estimated cycles and ms of one inference on silicon with `boot2`, and the upper bound."""
    cycles = prof["cycles"] + prof["misses"] * MISS_CYCLES[boot2]
    upper = prof["cycles"] + prof["misses"] * MISS_CYCLES_SPLIT[boot2]
    return {"cycles": cycles, "ms": 1e3 * cycles / clock_hz, "upper_cycles": upper, "upper_ms": 1e3 * upper / clock_hz}


def describe(prof: dict) -> str:
    """The assumptions, for a report row's note."""
    top = ", ".join(f"{name} {m:,}" for name, _, m in prof["by_symbol"][:3] if m)
    return (f"MODEL, not a measurement: {prof['misses']:,} misses in {prof['reads']:,} XIP reads of one inference "
            f"(self-test image {prof['call']}, warm cache) replayed through a 16 KB two-way cache with 8-byte lines "
            f"(RP2040 datasheet 2.6.3.2) and LRU replacement (assumed; not documented); a miss costs "
            + ", ".join(f"{m} {MISS_CYCLES[m]} cycles" for m in BOOT2_MODES)
            + " (one 64-bit transfer per line; two 32-bit transfers would cost "
            + ", ".join(f"{MISS_CYCLES_SPLIT[m]}" for m in BOOT2_MODES)
            + "); most misses: " + (top or "none"))
