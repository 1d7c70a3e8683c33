"""UF2 writer/validator for the RP2040: round trip, and one-line errors for every kind of bad file."""
import struct
import subprocess
import sys

import pytest

from edgecore.errors import UserError
from export.rp2040 import uf2


def image(n=1000):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_round_trip_and_block_layout():
    img = image(1000)
    data = uf2.write_uf2(img)
    assert len(data) == 4 * 512  # ceil(1000 / 256) blocks
    m0, m1, flags, addr, size, no, total, family = struct.unpack_from("<8I", data, 512)
    assert (m0, m1, flags, addr, size, no, total, family) == (
        0x0A324655, 0x9E5D5157, 0x2000, 0x10000100, 256, 1, 4, 0xE48BFF56)
    assert struct.unpack_from("<I", data, 1020)[0] == 0x0AB16F30
    flat = uf2.uf2_to_image(data)
    assert flat[:1000] == img and flat[1000:] == bytes(24)


def _patch(data: bytes, block: int, offset: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, block * 512 + offset, value)
    return bytes(out)


@pytest.mark.parametrize("offset,value,message", [
    (0, 0x12345678, "bad magic"),
    (4, 0, "bad magic"),
    (508, 0, "bad magic"),
    (28, 0xADA52840, "family id"),
    (8, 0, "family id"),  # family flag missing
    (8, 0x2001, "not main flash"),
    (16, 128, "payload of 128"),
    (12, 0x20000000, "outside the 2 MB flash"),
    (12, 0x10200000, "outside the 2 MB flash"),
    (12, 0x10000080, "not 256-aligned"),
    (20, 5, "out of sequence"),
    (24, 9, "says 9 blocks"),
    (12, 0x10000000, "written twice"),
])
def test_validator_rejects(offset, value, message):
    data = _patch(uf2.write_uf2(image(1000)), 2, offset, value)
    with pytest.raises(UserError, match=message):
        uf2.read_uf2(data)


def test_truncated_and_empty():
    data = uf2.write_uf2(image(600))
    with pytest.raises(UserError, match="truncated"):
        uf2.read_uf2(data[:-100])
    with pytest.raises(UserError, match="empty"):
        uf2.read_uf2(b"")
    with pytest.raises(UserError, match="does not fit"):
        uf2.write_uf2(bytes(2 * 1024 * 1024 + 1))


def test_cli_one_line_error(tmp_path):
    bad = tmp_path / "bad.uf2"
    bad.write_bytes(b"\0" * 512)
    r = subprocess.run([sys.executable, "-m", "export.rp2040.uf2", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: UF2 block 0: bad magic") and r.stderr.count("\n") == 1
    binf, out = tmp_path / "fw.bin", tmp_path / "fw.uf2"
    binf.write_bytes(image(300))
    r = subprocess.run([sys.executable, "-m", "export.rp2040.uf2", "write", str(binf), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and uf2.uf2_to_image(out.read_bytes())[:300] == image(300)
