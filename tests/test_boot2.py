"""boot2: CRC-32/MPEG-2 (what the RP2040 bootrom checks), the padded 256-byte image, and both boot2 variants
(quad-SPI W25Q080, generic 03h) assembled, padded and carrying their CRC."""
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from edgecore.errors import UserError
from export.rp2040.boot2 import BOOT2_MODES, crc32_mpeg2, pad_boot2, to_asm

ROOT = Path(__file__).resolve().parents[1]


def test_crc32_mpeg2_check_value():
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7
    assert crc32_mpeg2(b"") == 0xFFFFFFFF


def test_padded_boot2_is_256_bytes_with_crc_of_first_252():
    image = pad_boot2(b"\x00\xb5" * 20)
    assert len(image) == 256
    assert struct.unpack("<I", image[252:])[0] == crc32_mpeg2(image[:252])
    assert image[40:252] == bytes(212)
    assert to_asm(image).count("0x") == 256


def test_oversized_boot2_is_a_user_error():
    with pytest.raises(UserError, match="at most 252"):
        pad_boot2(bytes(253))


def _mpeg2_via_zlib(data: bytes) -> int:
    """CRC-32/MPEG-2 from zlib's reflected CRC-32: same polynomial and initial value, so reflect every input
    byte, undo zlib's final xor and reflect the result."""
    rev8 = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))
    crc = ~zlib.crc32(data.translate(rev8)) & 0xFFFFFFFF
    return int(f"{crc:032b}"[::-1], 2)


def test_crc_agrees_with_an_independent_derivation():
    for data in (b"123456789", bytes(range(256)), pad_boot2(b"\x00\xb5" * 20)[:252]):
        assert crc32_mpeg2(data) == _mpeg2_via_zlib(data)


def _assemble(tmp_path, mode: str) -> bytes:
    fw = ROOT / "firmware" / "rp2040"
    src = fw / f"boot2_{mode.replace('-', '_')}.S"
    elf, raw = tmp_path / f"{mode}.elf", tmp_path / f"{mode}.bin"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb", "-nostdlib", "-T", str(fw / "boot2.ld"),
                    str(src), "-o", str(elf)], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(raw)], check=True)
    return raw.read_bytes()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("mode", BOOT2_MODES)
def test_real_boot2_fits_and_carries_its_crc(tmp_path, mode):
    code = _assemble(tmp_path, mode)
    assert 16 < len(code) <= 252
    image = pad_boot2(code)
    assert image[:len(code)] == code
    assert struct.unpack("<I", image[252:])[0] == crc32_mpeg2(image[:252]) == _mpeg2_via_zlib(image[:252])


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_quad_boot2_programs_the_ssi_for_continuous_eb_reads(tmp_path):
    """The SSI words the W25Q080 boot2 writes (RP2040 datasheet 4.10.13): clock divider 2, quad 32-bit EEPROM-read
    frames, the EBh entry (8-bit command, then 24 address + 8 mode bits in quad, 4 wait cycles) and XIP with
    mode bits A0h in place of a command."""
    code = _assemble(tmp_path, "w25q080")
    words = {struct.unpack_from("<I", code, i)[0] for i in range(0, len(code) - 3, 4)}
    ctrlr0_quad = (2 << 21) | (31 << 16) | (3 << 8)
    enter = (8 << 2) | (4 << 11) | (2 << 8) | 1
    xip = (0xA0 << 24) | (8 << 2) | (4 << 11) | 2
    assert {ctrlr0_quad, enter, xip, 0x18000000 + 0xF4, 0x40020000} <= words
    assert xip == 0xA0002022
