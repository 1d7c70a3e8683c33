"""UF2 writer and validator for the RP2040 (the format the Pico's BOOTSEL drive accepts).

Hand-written: the format is 32 bytes of header per 512-byte block, and the maintained tools
(Microsoft's uf2conv.py, picotool) are not packaged on PyPI.
Usage: python -m export.rp2040.uf2 write firmware.bin firmware.uf2
       python -m export.rp2040.uf2 check firmware.uf2
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from edgecore.errors import UserError, one_line_errors
from edgecore.io import read_bytes, write_bytes_atomic
from edgecore.targets import device_limits

MAGIC_START0 = 0x0A324655  # "UF2\n"
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_NOT_MAIN_FLASH = 0x00000001
FLAG_FAMILY_ID_PRESENT = 0x00002000
RP2040_FAMILY_ID = 0xE48BFF56
FLASH_BASE = 0x10000000
FLASH_BYTES = device_limits("rp2040")["flash_bytes"]  # targets/rp2040.toml
BLOCK_BYTES = 512
PAYLOAD_BYTES = 256  # the RP2040 bootrom only accepts 256-byte payloads
DATA_FIELD_BYTES = 476
_HEADER = struct.Struct("<8I")


def write_uf2(image: bytes, base: int = FLASH_BASE) -> bytes:
    """Split a flash image into 256-byte UF2 blocks for the RP2040 (last block zero-padded)."""
    if not image:
        raise UserError("cannot write an empty UF2: the firmware image has no bytes")
    if base % PAYLOAD_BYTES or not FLASH_BASE <= base or base + len(image) > FLASH_BASE + FLASH_BYTES:
        raise UserError(f"image of {len(image)} bytes at 0x{base:08x} does not fit the 2 MB flash at 0x{FLASH_BASE:08x}")
    chunks = [image[i:i + PAYLOAD_BYTES] for i in range(0, len(image), PAYLOAD_BYTES)]
    out = bytearray()
    for n, chunk in enumerate(chunks):
        out += _HEADER.pack(MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID_PRESENT, base + n * PAYLOAD_BYTES,
                            PAYLOAD_BYTES, n, len(chunks), RP2040_FAMILY_ID)
        out += chunk.ljust(DATA_FIELD_BYTES, b"\0")
        out += struct.pack("<I", MAGIC_END)
    return bytes(out)


def read_uf2(data: bytes) -> dict[int, bytes]:
    """Validate a UF2 for the RP2040 and return {flash address: 256-byte payload}.

    Raises UserError (one line) on: truncation, bad magic numbers, missing or wrong family id,
    payload size other than 256, addresses outside the 2 MB flash or not 256-aligned, block numbers
    out of sequence, an inconsistent block count, or two blocks writing the same address.
    """
    if not data:
        raise UserError("UF2 file is empty")
    if len(data) % BLOCK_BYTES:
        raise UserError(f"UF2 file is truncated: {len(data)} bytes is not a multiple of {BLOCK_BYTES}")
    count = len(data) // BLOCK_BYTES
    blocks: dict[int, bytes] = {}
    for i in range(count):
        block = data[i * BLOCK_BYTES:(i + 1) * BLOCK_BYTES]
        m0, m1, flags, addr, size, number, total, family = _HEADER.unpack_from(block)
        (m_end,) = struct.unpack_from("<I", block, BLOCK_BYTES - 4)
        where = f"UF2 block {i}"
        if m0 != MAGIC_START0 or m1 != MAGIC_START1 or m_end != MAGIC_END:
            raise UserError(f"{where}: bad magic numbers (not a UF2 file, or corrupted)")
        if flags & FLAG_NOT_MAIN_FLASH:
            raise UserError(f"{where}: flagged 'not main flash'; the RP2040 would ignore it")
        if not flags & FLAG_FAMILY_ID_PRESENT or family != RP2040_FAMILY_ID:
            raise UserError(f"{where}: family id 0x{family:08x} is not the RP2040's 0x{RP2040_FAMILY_ID:08x}")
        if size != PAYLOAD_BYTES:
            raise UserError(f"{where}: payload of {size} bytes; the RP2040 bootrom needs {PAYLOAD_BYTES}")
        if addr % PAYLOAD_BYTES or not FLASH_BASE <= addr <= FLASH_BASE + FLASH_BYTES - PAYLOAD_BYTES:
            raise UserError(f"{where}: address 0x{addr:08x} is outside the 2 MB flash at 0x{FLASH_BASE:08x} or not 256-aligned")
        if number != i:
            raise UserError(f"{where}: block number {number} out of sequence (expected {i})")
        if total != count:
            raise UserError(f"{where}: says {total} blocks but the file holds {count}")
        if addr in blocks:
            raise UserError(f"{where}: address 0x{addr:08x} is written twice")
        blocks[addr] = block[32:32 + PAYLOAD_BYTES]
    return blocks


def uf2_to_image(data: bytes, base: int = FLASH_BASE) -> bytes:
    """Validate and flatten a UF2 into a contiguous flash image starting at `base` (gaps 0xFF)."""
    blocks = read_uf2(data)
    end = max(blocks) + PAYLOAD_BYTES
    image = bytearray(b"\xff" * (end - base))
    for addr, payload in blocks.items():
        if addr < base:
            raise UserError(f"UF2 writes 0x{addr:08x}, below the image base 0x{base:08x}")
        image[addr - base:addr - base + PAYLOAD_BYTES] = payload
    return bytes(image)


def _read(path: Path) -> bytes:
    return read_bytes(path)


@one_line_errors()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.rp2040.uf2", description="RP2040 UF2 writer and validator")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="convert a raw flash image (.bin at 0x10000000) into a .uf2")
    w.add_argument("bin", type=Path)
    w.add_argument("uf2", type=Path)
    c = sub.add_parser("check", help="validate a .uf2 for the RP2040")
    c.add_argument("uf2", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "write":
        data = write_uf2(_read(args.bin))
        read_uf2(data)
        write_bytes_atomic(args.uf2, data)
        print(f"wrote {args.uf2} ({len(data) // BLOCK_BYTES} blocks)")
    else:
        blocks = read_uf2(_read(args.uf2))
        lo, hi = min(blocks), max(blocks) + PAYLOAD_BYTES
        print(f"ok: {args.uf2}: {len(blocks)} blocks, 0x{lo:08x}-0x{hi:08x}, family 0x{RP2040_FAMILY_ID:08x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
