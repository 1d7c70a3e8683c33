"""Host side of the firmware's serial inference protocol (firmware/rp2040/protocol.h).

Works with any port object that has write(bytes) and read(n) with a timeout: a pyserial port for a
real Pico (its own USB port, CDC-ACM, or a USB-UART adapter on GPIO0/1), or export.rp2040.emulator's port
for rp2040js.
Usage: python -m export.rp2040.serial_client image.jpg                       # the Pico on USB, found by VID:PID
       python -m export.rp2040.serial_client --port /dev/ttyUSB0 image.jpg
       python -m export.rp2040.serial_client --emulator build/rp2040/pizza.uf2 image.jpg
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecore import preprocess
from edgecore.errors import UserError, os_error_line

from .ports import resolve_port

MAGIC = b"PZ"
REQ_INFER, REQ_INFO = 0x01, 0x02
REP_INFER, REP_INFO, REP_ERROR = 0x81, 0x82, 0xEE
MAX_REPLY_BYTES = 4096
STATUS = {0: "ok", 1: "bad magic (bytes skipped)", 2: "unknown request type", 3: "bad length",
          4: "bad CRC", 5: "timeout (truncated frame)", 6: "model error"}
_HEADER = struct.Struct("<2sBI")


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """magic | type u8 | length u32 | payload | crc32 (zlib CRC-32 over type, length, payload)."""
    body = struct.pack("<BI", kind, len(payload)) + payload
    return MAGIC + body + struct.pack("<I", zlib.crc32(body))


class DeviceError(Exception):
    """The device answered with an error reply."""

    def __init__(self, status: int, detail: int):
        self.status, self.detail = status, detail
        super().__init__(f"device error {status} ({STATUS.get(status, 'unknown')}), detail {detail}")


@dataclass
class InferResult:
    class_index: int
    scores: np.ndarray  # int8 [num_classes]
    cycles: int


# firmware/rp2040/hw.h enum hw_reset_reason, in order
RESET_REASONS = ("unknown", "power-on", "run-pin", "watchdog", "software", "hardfault")


@dataclass
class DeviceInfo:
    height: int
    width: int
    channels: int
    num_classes: int
    input_bytes: int
    arena_bytes: int
    clock_hz: int
    stack_used: int
    stack_reserved: int
    class_names: list[str]
    reset_reason: str = "unknown"   # why the device last reset (INFO version 2 and later)


class Client:
    def __init__(self, port, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self._buf = bytearray()
        self.text = bytearray()  # non-frame bytes the device printed (boot messages)

    def _fill(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("no complete reply from the device before the timeout")
        waiting = getattr(self.port, "in_waiting", 0) or 1
        self._buf += self.port.read(waiting)

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._fill(deadline)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_reply(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next valid reply frame (type, payload); skips text and frames with a bad CRC."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            start = self._buf.find(MAGIC)
            while start < 0:
                keep = 1 if self._buf.endswith(MAGIC[:1]) else 0
                self.text += self._buf[:len(self._buf) - keep]
                del self._buf[:len(self._buf) - keep]
                self._fill(deadline)
                start = self._buf.find(MAGIC)
            self.text += self._buf[:start]
            del self._buf[:start]
            while len(self._buf) < _HEADER.size:
                self._fill(deadline)
            _, kind, length = _HEADER.unpack_from(self._buf)
            if kind not in (REP_INFER, REP_INFO, REP_ERROR) or length > MAX_REPLY_BYTES:
                self.text += self._buf[:1]
                del self._buf[:1]
                continue
            frame = self._take(_HEADER.size + length + 4, deadline)
            (crc,) = struct.unpack_from("<I", frame, len(frame) - 4)
            if zlib.crc32(frame[2:-4]) != crc:
                self._buf[:0] = frame[1:]  # not a real frame: resync after this magic byte
                self.text += frame[:1]
                continue
            return kind, frame[_HEADER.size:-4]

    def request(self, kind: int, payload: bytes = b"", timeout: float | None = None) -> tuple[int, bytes]:
        self.port.write(encode_frame(kind, payload))
        return self.read_reply(timeout)

    @staticmethod
    def _check(kind: int, payload: bytes, want: int) -> None:
        if kind == REP_ERROR:
            status, detail = payload[0], struct.unpack_from("<I", payload, 4)[0]
            raise DeviceError(status, detail)
        if kind != want or not payload or payload[0] != 0:
            raise DeviceError(payload[0] if payload else -1, kind)

    def info(self) -> DeviceInfo:
        kind, p = self.request(REQ_INFO)
        self._check(kind, p, REP_INFO)
        _, version, n, reset, h, w, c, _, inb, arena, clk, used, reserved = struct.unpack_from("<4B4H5I", p)
        names = p[32:].decode("utf-8", "replace").split("\n")
        reason = RESET_REASONS[reset] if version >= 2 and reset < len(RESET_REASONS) else "unknown"
        return DeviceInfo(h, w, c, n, inb, arena, clk, used, reserved, names, reason)

    def infer(self, x_int8: np.ndarray, timeout: float | None = None) -> InferResult:
        """x_int8: the model input, int8 NHWC (standardize(pixel) - 128)."""
        kind, p = self.request(REQ_INFER, np.ascontiguousarray(x_int8, np.int8).tobytes(), timeout)
        self._check(kind, p, REP_INFER)
        _, cls, n, _, cycles = struct.unpack_from("<4BI", p)
        return InferResult(cls, np.frombuffer(p[8:8 + n], np.int8).copy(), cycles)


def image_to_input(path: Path, height: int, width: int) -> np.ndarray:
    """The shared preprocessing (CONTRACT.md): RGB, PIL bilinear resize, int8 = standardize(pixel) - 128."""
    from compress.data import load_images

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    rgb = load_images(Path("."), [{"path": str(path.resolve())}], (height, width))[0]
    return preprocess.to_int8(rgb[None])[0]


def open_serial(device: str, baud: int, timeout: float):
    try:
        import serial
    except ImportError:
        raise UserError("pyserial is not installed: pip install pyserial") from None
    try:
        return serial.Serial(device, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=0.05)
    except (serial.SerialException, OSError) as e:
        raise UserError(f"cannot open serial port {device}: {e}") from None


def classify(client: Client, image: Path, info: DeviceInfo) -> dict:
    res = client.infer(image_to_input(image, info.height, info.width))
    return {"class": info.class_names[res.class_index], "class_index": res.class_index,
            "scores": [int(s) for s in res.scores], "cycles": res.cycles,
            "ms": 1000.0 * res.cycles / info.clock_hz, "clock_hz": info.clock_hz}


def _print(result: dict, names: list[str]) -> None:
    print(f"class: {result['class']} (index {result['class_index']})")
    for name, s in zip(names, result["scores"]):
        print(f"  {name:>12s} {s:5d}  p={(s + 128) / 256:.3f}")
    print(f"cycles: {result['cycles']}  ({result['ms']:.1f} ms at {result['clock_hz'] / 1e6:.0f} MHz)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.rp2040.serial_client",
                                 description="classify an image on an RP2040 running the pizza-edge firmware")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--port", "--device", dest="port", default="auto",
                     help="serial device, e.g. /dev/ttyACM0, /dev/ttyUSB0 or COM3; default 'auto': the Pico on USB "
                          "(found by its VID:PID and product string)")
    src.add_argument("--emulator", type=Path, metavar="UF2", help="run this .uf2 in rp2040js instead")
    ap.add_argument("--emulator-link", choices=("uart", "usb"), default="uart",
                    help="with --emulator: talk over UART0 (default) or over the USB CDC-ACM port, behind a host "
                         "that enumerates it like Linux' cdc_acm")
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each reply (default 60)")
    ap.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.emulator and args.emulator_link == "usb":
            from .usb_emulator import usb_emulator

            with usb_emulator(args.emulator) as (port, uart, _):
                uart.wait_for(b"READY", args.timeout)  # the boot self-test still talks on UART0 only
                _run(Client(port, args.timeout), args.images)
        elif args.emulator:
            from .emulator import emulator

            with emulator(args.emulator) as port:
                port.wait_for(b"READY", args.timeout)
                _run(Client(port, args.timeout), args.images)
        else:
            port = open_serial(resolve_port(args.port), args.baud, args.timeout)
            try:
                _run(Client(port, args.timeout), args.images)
            finally:
                port.close()
    except (UserError, DeviceError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port vanished (board unplugged) or a file could not be read
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    return 0


def _run(client: Client, images: list[Path]) -> None:
    info = client.info()
    for image in images:
        print(f"{image}:")
        _print(classify(client, image, info), info.class_names)


if __name__ == "__main__":
    sys.exit(main())
