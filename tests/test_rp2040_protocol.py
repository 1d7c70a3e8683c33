"""The firmware's protocol parser (firmware/rp2040/protocol.c), compiled for the host and driven by
the Python client's encoder: valid frames, every error kind, resync, and random garbage."""
import ctypes
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from export.rp2040.serial_client import REQ_INFER, REQ_INFO, encode_frame

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware" / "rp2040"
INFER_BYTES = 192
FRAME, MAGIC, TYPE, LENGTH, CRC, TIMEOUT = 0x100, 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    so = tmp_path_factory.mktemp("proto") / "libproto.so"
    subprocess.run([cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{FW}",
                    str(FW / "protocol.c"), str(ROOT / "tests/fixtures/rp2040_proto_host.c"), "-o", str(so)],
                   check=True)
    return ctypes.CDLL(str(so))


def feed(lib, data: bytes, idle_after=False):
    codes = (ctypes.c_int32 * 64)()
    details = (ctypes.c_uint32 * 64)()
    n = lib.shim_feed(data, ctypes.c_size_t(len(data)), int(idle_after), codes, details, ctypes.c_size_t(64))
    return [(codes[i], details[i]) for i in range(n)]


def test_crc_matches_zlib(lib):
    lib.shim_crc32.restype = ctypes.c_uint32
    for data in (b"123456789", b"", bytes(range(256)) * 3):
        assert lib.shim_crc32(data, ctypes.c_size_t(len(data))) == zlib.crc32(data)


def test_encoder_matches_python_client(lib):
    lib.shim_encode.restype = ctypes.c_size_t
    payload = bytes(range(40))
    out = ctypes.create_string_buffer(128)
    n = lib.shim_encode(out, ctypes.c_size_t(128), 0x81, payload, 40)
    assert out.raw[:n] == encode_frame(0x81, payload)
    assert lib.shim_encode(out, ctypes.c_size_t(50), 0x81, payload, 40) == 0  # does not fit


def test_valid_frames_and_payload(lib):
    lib.shim_reset(INFER_BYTES)
    x = np.random.default_rng(0).integers(0, 256, INFER_BYTES, dtype=np.uint8).tobytes()
    assert feed(lib, encode_frame(REQ_INFER, x)) == [(FRAME | REQ_INFER, INFER_BYTES)]
    lib.shim_payload.restype = ctypes.POINTER(ctypes.c_uint8 * INFER_BYTES)
    assert bytes(lib.shim_payload().contents) == x
    assert feed(lib, encode_frame(REQ_INFO)) == [(FRAME | REQ_INFO, 0)]


def test_each_malformed_frame_gets_one_error_then_resyncs(lib):
    lib.shim_reset(INFER_BYTES)
    good = encode_frame(REQ_INFER, bytes(INFER_BYTES))
    assert feed(lib, b"hello" + good) == [(MAGIC, 5), (FRAME | REQ_INFER, INFER_BYTES)]
    assert feed(lib, encode_frame(REQ_INFER, bytes(10)) + good) == [(LENGTH, 10), (FRAME | REQ_INFER, INFER_BYTES)]
    assert feed(lib, encode_frame(0x33) + good) == [(TYPE, 0x33), (FRAME | REQ_INFER, INFER_BYTES)]
    bad = bytearray(good)
    bad[40] ^= 0x10
    assert feed(lib, bytes(bad) + good) == [(CRC, int.from_bytes(good[-4:], "little")),
                                            (FRAME | REQ_INFER, INFER_BYTES)]
    assert feed(lib, good[:100], idle_after=True) == [(TIMEOUT, 100)]
    assert feed(lib, b"xyz", idle_after=True) == [(MAGIC, 3)]
    assert feed(lib, b"", idle_after=True) == []
    assert feed(lib, good) == [(FRAME | REQ_INFER, INFER_BYTES)]


def test_random_garbage_never_breaks_the_parser(lib):
    lib.shim_reset(INFER_BYTES)
    rng = np.random.default_rng(1)
    good = encode_frame(REQ_INFER, bytes(INFER_BYTES))
    for _ in range(300):
        junk = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        if rng.random() < 0.3:  # splice magic bytes in, so headers get parsed too
            junk = junk[:5] + b"PZ" + junk[5:]
        events = feed(lib, junk, idle_after=True)
        assert all(code in (MAGIC, TYPE, LENGTH, CRC, TIMEOUT) or code & FRAME for code, _ in events)
        assert feed(lib, good) == [(FRAME | REQ_INFER, INFER_BYTES)]
