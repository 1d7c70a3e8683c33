"""Run a firmware .uf2 in the rp2040js emulator (firmware/emulator/run.mjs) with UART0 on pipes.

`with emulator(uf2) as port:` gives a pyserial-like port (read/write/in_waiting) for
export.rp2040.serial_client.Client; after the block, `port.cycles` holds the emulated core cycles and
`port.rx_lost` the RX bytes the line lost to a full RX FIFO.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

from edgecore.errors import UserError

EMULATOR_DIR = Path(__file__).resolve().parents[2] / "firmware" / "emulator"
RUN_MJS = EMULATOR_DIR / "run.mjs"


def emulator_missing() -> str | None:
    """Why the emulator cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (EMULATOR_DIR / "node_modules" / "rp2040js" / "package.json").is_file():
        return f"rp2040js is not installed: run `npm ci --prefix {EMULATOR_DIR}`"
    return None


class EmulatorPort:
    """UART0 of the emulated RP2040: bytes written go to RX, TX bytes are read back."""

    def __init__(self, proc: subprocess.Popen, timeout: float = 0.05):
        self.proc = proc
        self.timeout = timeout
        self.cycles: int | None = None
        self.rx_lost: int | None = None
        self.stderr = ""
        self._buf = bytearray()
        self._cv = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cv:
                if not chunk:
                    self._eof = True
                else:
                    self._buf += chunk
                self._cv.notify_all()
            if not chunk:
                return

    @property
    def in_waiting(self) -> int:
        with self._cv:
            return len(self._buf)

    def read(self, n: int = 1) -> bytes:
        with self._cv:
            self._cv.wait_for(lambda: self._buf or self._eof, self.timeout)
            if not self._buf and self._eof:
                raise UserError(f"the emulator exited (code {self.proc.poll()})")
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out

    def write(self, data: bytes) -> int:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise UserError(f"the emulator exited (code {self.proc.poll()})") from None
        return len(data)

    def wait_for(self, marker: bytes, timeout: float) -> bytes:
        """Read until `marker` appears (e.g. b"READY" after the self-test); returns all text read."""
        deadline = time.monotonic() + timeout
        seen = bytearray()
        while marker not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"emulator did not print {marker!r} within {timeout:.0f} s; got {bytes(seen[-200:])!r}")
            seen += self.read(4096)
        return bytes(seen)


@contextlib.contextmanager
def emulator(uf2: str | os.PathLike, baud: int | None = None, on_ready: str | None = None) -> Iterator[EmulatorPort]:
    """RX arrives at the wire rate in emulated time, the firmware's own baud rate unless `baud` is given, and a
    byte that finds the RX FIFO full is lost (as on silicon); on_ready 'hardfault' raises a HardFault once the
    firmware says READY, 'hang' leaves the core spinning with interrupts masked (for the watchdog)."""
    why = emulator_missing()
    if why:
        raise UserError(f"cannot run the RP2040 emulator: {why}")
    if not Path(uf2).is_file():
        raise UserError(f"firmware not found: {uf2}")
    cmd = ["node", str(RUN_MJS), str(uf2)] + (["--baud", str(baud)] if baud else []) + \
        (["--on-ready", on_ready] if on_ready else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    port = EmulatorPort(proc)
    try:
        yield port
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        m = re.search(r"emulator: cycles=(\d+)", err)
        port.cycles = int(m.group(1)) if m else None
        m = re.search(r"emulator: rx_lost=(\d+)", err)
        port.rx_lost = int(m.group(1)) if m else None
        port.stderr = err
