"""Short libFuzzer smoke run of the firmware's protocol parser (firmware/fuzz/; the long run is
`make fuzz`), the inputs fuzzing once broke replayed as regressions, and their fixes pinned."""
import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "firmware" / "fuzz"
# A fixed number of runs from a fixed seed: the same inputs on every machine, however loaded. Edge coverage stops
# growing (113 edges) after about 65,000 runs; 200,000 take about 6 s on 2 shared cores (was 15 s by the clock).
SMOKE_RUNS = 200_000


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (Debian: apt-get install clang libclang-rt-14-dev)")
    out = tmp_path_factory.mktemp("fuzz")
    probe = subprocess.run([clang, "-fsanitize=fuzzer", "-x", "c", "-", "-o", str(out / "probe")],
                           input=b"#include <stdint.h>\n#include <stddef.h>\n"
                                 b"int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n",
                           capture_output=True)
    if probe.returncode:
        pytest.skip(f"clang lacks libFuzzer (Debian: libclang-rt-<version>-dev): {probe.stderr.decode()[-200:]}")
    subprocess.run(["make", "-s", "-C", str(FUZZ), "build", f"BUILD_DIR={out}", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return out


def test_fuzz_regressions_replay_clean(fuzzer):
    inputs = sorted(str(p) for p in (FUZZ / "regressions").iterdir())
    assert inputs
    r = subprocess.run([str(fuzzer / "fuzz_protocol"), *inputs], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_fuzz_smoke(fuzzer):
    corpus = fuzzer / "corpus"
    corpus.mkdir(exist_ok=True)
    r = subprocess.run([str(fuzzer / "fuzz_protocol"), f"-runs={SMOKE_RUNS}", "-seed=1",
                        "-print_final_stats=1", f"-dict={FUZZ / 'protocol.dict'}",
                        f"-artifact_prefix={fuzzer}/crash-", str(corpus), str(fuzzer / "seeds")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    execs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", r.stderr).group(1))
    assert execs >= SMOKE_RUNS, r.stderr[-1000:]


def test_timeout_right_after_magic_reports_two_bytes(tmp_path):
    """Found by the fuzzer: a frame cut off after 'PZ' was reported as 3 bytes received."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    so = tmp_path / "libproto.so"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{ROOT / 'firmware/rp2040'}", str(ROOT / "firmware/rp2040/protocol.c"),
                    str(ROOT / "tests/fixtures/rp2040_proto_host.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.shim_reset(192)
    codes, details = (ctypes.c_int32 * 8)(), (ctypes.c_uint32 * 8)()
    got = []
    for data in (b"PZ", b"PZ\x01", b"PZ\x01\xc0\x00"):
        n = lib.shim_feed(data, ctypes.c_size_t(len(data)), 1, codes, details, ctypes.c_size_t(8))
        got.append([(codes[i], details[i]) for i in range(n)])
    assert got == [[(5, 2)], [(5, 3)], [(5, 5)]]  # PROTO_ERR_TIMEOUT, bytes of the frame received
