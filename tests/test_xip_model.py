"""The XIP cache model (firmware/emulator/xipcache.mjs) on synthetic address streams, and the per-boot2 estimate
built on it (export/rp2040/xip.py)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from export.rp2040.xip import MISS_CYCLES, MISS_CYCLES_SPLIT, estimate

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "firmware" / "emulator" / "xipcache.mjs"

# Each stream: a list of addresses; the script returns how many of them missed.
SCRIPT = """
import { XipCache } from %s;
const streams = JSON.parse(process.argv[1]);
console.log(JSON.stringify(streams.map((s) => { const c = new XipCache(); return s.map((a) => c.access(a)); })));
"""


def _misses(*streams):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = subprocess.run(["node", "--input-type=module", "-e", SCRIPT % json.dumps(str(CACHE)), json.dumps(streams)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_16kb_fits_and_8_byte_lines():
    words = [0x10000000 + 4 * i for i in range(4096)]            # 16 KB, read twice
    (hits,) = _misses(words + words)
    assert sum(hits[:4096]) == 2048                               # one miss per 8-byte line
    assert sum(hits[4096:]) == 0                                  # the whole 16 KB stays cached


def test_two_ways_with_lru_replacement():
    a, b, c = 0x10000000, 0x10002000, 0x10004000                 # 8 KB apart: the same set
    (seq,) = _misses([a, b, a, c, a, b])
    assert seq == [True, True, False, True, False, True]           # c evicts b (least recently used), not a


def test_aliases():
    base = 0x000100
    bypass, noalloc, alloc_only, cached = (0x13000000 | base, 0x11000000 | base, 0x12000000 | base,
                                           0x10000000 | base)
    s1, s2, s3 = _misses([bypass, bypass, cached], [noalloc, cached, noalloc], [alloc_only, alloc_only, cached])
    assert s1 == [True, True, True]        # 0x13: never looks up, never allocates
    assert s2 == [True, True, False]       # 0x11: looks up but does not allocate
    assert s3 == [True, True, False]       # 0x12: always goes to flash but fills the line


def test_estimate_adds_misses_times_the_boot2_cost():
    prof = {"cycles": 1_000_000, "misses": 1000}
    quad, slow = estimate(prof, "w25q080", 125e6), estimate(prof, "generic-03h", 125e6)
    assert quad["cycles"] == 1_000_000 + 1000 * MISS_CYCLES["w25q080"]
    assert slow["upper_cycles"] == 1_000_000 + 1000 * MISS_CYCLES_SPLIT["generic-03h"]
    assert quad["ms"] < quad["upper_ms"] < slow["ms"] < slow["upper_ms"]
    assert quad["ms"] == pytest.approx(1e3 * quad["cycles"] / 125e6)
