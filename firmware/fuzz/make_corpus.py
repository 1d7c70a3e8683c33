"""Seed corpus for fuzz_protocol.c: valid and malformed request frames from the Python client's own
encoder (export.rp2040.serial_client.encode_frame), each behind the harness's 3-byte config header.
Usage: python firmware/fuzz/make_corpus.py OUT_DIR   (run from the repository root)"""
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from export.rp2040.serial_client import REQ_INFER, REQ_INFO, encode_frame  # noqa: E402


def seed(infer_bytes: int, timeout_every: int, stream: bytes) -> bytes:
    return struct.pack("<HB", infer_bytes, timeout_every) + stream


def seeds() -> dict[str, bytes]:
    x = bytes((i * 37) & 0xFF for i in range(192))
    good = encode_frame(REQ_INFER, x)
    bad_crc = bytearray(good)
    bad_crc[30] ^= 0x04
    return {
        "info": seed(192, 0, encode_frame(REQ_INFO)),
        "infer": seed(192, 0, good),
        "info_infer": seed(192, 0, encode_frame(REQ_INFO) + good + encode_frame(REQ_INFO)),
        "garbage_then_frame": seed(48, 0, b"hello PPZ" + encode_frame(REQ_INFER, x[:48])),
        "bad_crc": seed(192, 0, bytes(bad_crc) + good),
        "bad_length": seed(192, 0, encode_frame(REQ_INFER, x[:10]) + good),
        "bad_type": seed(192, 0, encode_frame(0x7F) + encode_frame(REQ_INFO)),
        "truncated": seed(192, 100, good[:100] + good),
        "over_capacity": seed(600, 0, encode_frame(REQ_INFER, bytes(600)) + encode_frame(REQ_INFO)),
        "huge_length": seed(192, 0, b"PZ\x01" + struct.pack("<I", 0xFFFFFFFF) + good),
    }


def main(out: str) -> int:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (d / name).write_bytes(data)
    print(f"{len(seeds())} seeds in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
