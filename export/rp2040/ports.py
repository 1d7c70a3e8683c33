"""Find the Pico running our firmware among the host's serial ports (`--port auto`).

The firmware enumerates as USB 2e8a:000a (Raspberry Pi's PID for a Pico's CDC-ACM port, see
firmware/rp2040/usb_desc.h) with the product string below; other pico-sdk programs share the VID:PID, so
the product string decides when the OS reports it (Linux and macOS do, Windows usually does not).
"""
from __future__ import annotations

from edgecore.errors import UserError

USB_VID, USB_PID = 0x2E8A, 0x000A
USB_PRODUCT = "pizza-edge RP2040 classifier"


def _describe(p) -> str:
    ids = f" [{p.vid:04x}:{p.pid:04x}]" if p.vid is not None else ""
    return f"{p.device} ({p.description or 'no description'}{ids})"


def find_port(ports=None) -> str:
    """The device path of the one attached board; a UserError naming the candidates otherwise.
    `ports`: pyserial ListPortInfo-like objects (device, vid, pid, product, description); default: all."""
    if ports is None:
        try:
            from serial.tools import list_ports
        except ImportError:
            raise UserError("pyserial is not installed: pip install pyserial") from None
        ports = list_ports.comports()
    ports = sorted(ports, key=lambda p: p.device)
    picos = [p for p in ports if p.vid == USB_VID and p.pid == USB_PID]
    ours = [p for p in picos if p.product == USB_PRODUCT] or [p for p in picos if p.product is None]
    if len(ours) == 1:
        return ours[0].device
    if ours:
        raise UserError(f"{len(ours)} boards look like ours: {', '.join(_describe(p) for p in ours)}; "
                        "choose one with --port")
    if ports:
        raise UserError(f"no pizza-edge Pico on USB ({USB_VID:04x}:{USB_PID:04x}, \"{USB_PRODUCT}\"); "
                        f"serial ports here: {', '.join(_describe(p) for p in ports)}; "
                        "pass one with --port (e.g. a USB-UART adapter wired to GP0/GP1)")
    raise UserError("no serial port found: plug the Pico in by USB, or wire a USB-UART adapter to GP0/GP1 "
                    "and pass its port with --port")


def resolve_port(port: str) -> str:
    """`auto` -> find_port(); anything else is a device path, returned as given."""
    return find_port() if port == "auto" else port
