"""boot2: CRC-32/MPEG-2 (what the RP2040 bootrom checks) and the padded 256-byte image."""
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from compress.errors import UserError
from export.rp2040.boot2 import crc32_mpeg2, pad_boot2, to_asm

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


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_real_boot2_fits_and_carries_its_crc(tmp_path):
    fw = ROOT / "firmware" / "rp2040"
    elf, raw = tmp_path / "boot2.elf", tmp_path / "boot2.bin"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb", "-nostdlib", "-T", str(fw / "boot2.ld"),
                    str(fw / "boot2.S"), "-o", str(elf)], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(raw)], check=True)
    code = raw.read_bytes()
    assert 16 < len(code) <= 252
    image = pad_boot2(code)
    assert image[:len(code)] == code
    assert struct.unpack("<I", image[252:])[0] == crc32_mpeg2(image[:252])
