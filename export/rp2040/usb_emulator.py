"""Run a firmware .uf2 in rp2040js behind our cdc_acm-like USB host (firmware/emulator/usb_host.mjs).

`with usb_emulator(uf2) as (usb, uart, log):` gives two pyserial-like ports for
export.rp2040.serial_client.Client, one on the device's USB CDC-ACM data interface and one on UART0, both
live at once, and `log`: the host's events (enumeration steps, the enumeration summary, malformed-request
results, timed request/reply exchanges) as dicts, appended while the emulator runs.
After the block, `usb.cycles` holds the emulated core cycles.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from edgecore.errors import UserError

from .emulator import EMULATOR_DIR, EmulatorPort, emulator_missing

USB_HOST_MJS = EMULATOR_DIR / "usb_host.mjs"


class UsbLog(list):
    """The host's "usb: {json}" events, in order; `text` keeps every stderr line."""

    def __init__(self):
        super().__init__()
        self.text: list[str] = []

    def find(self, key: str) -> list[dict]:
        return [e for e in self if key in e]


def _collect(stream, log: UsbLog) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        log.text.append(line)
        if line.startswith("usb: "):
            log.append(json.loads(line[5:]))


@contextlib.contextmanager
def usb_emulator(uf2: str | os.PathLike, malformed: bool = False) -> Iterator[tuple[EmulatorPort, EmulatorPort, UsbLog]]:
    """malformed: the host also sends unknown and wrong-length control requests right after
    SET_CONFIGURATION, expecting a STALL for each (results in the log under "malformed")."""
    why = emulator_missing()
    if why:
        raise UserError(f"cannot run the RP2040 emulator: {why}")
    if not Path(uf2).is_file():
        raise UserError(f"firmware not found: {uf2}")
    to_uart, uart_in = os.pipe()     # we write uart_in, the device's RX reads to_uart
    uart_out, from_uart = os.pipe()  # the device's TX writes from_uart, we read uart_out
    cmd = ["node", str(USB_HOST_MJS), str(uf2), "--uart-fds", f"{to_uart},{from_uart}"] + \
        (["--malformed"] if malformed else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=(to_uart, from_uart))
    os.close(to_uart)
    os.close(from_uart)
    log = UsbLog()
    reader = threading.Thread(target=_collect, args=(proc.stderr, log), daemon=True)
    reader.start()
    usb = EmulatorPort(proc)
    uart_pipes = SimpleNamespace(stdin=os.fdopen(uart_in, "wb", buffering=0),
                                 stdout=os.fdopen(uart_out, "rb", buffering=0), poll=proc.poll)
    uart = EmulatorPort(uart_pipes)
    try:
        yield usb, uart, log
    finally:
        for f in (proc.stdin, uart_pipes.stdin):
            with contextlib.suppress(OSError):
                f.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        m = re.search(r"emulator: cycles=(\d+)", "\n".join(log.text))
        usb.cycles = int(m.group(1)) if m else None
        usb.stderr = "\n".join(log.text)
