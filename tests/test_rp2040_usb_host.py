"""Host-side checks of the USB CDC-ACM port: the descriptors the firmware sends (usb_desc.c compiled for the
host) satisfy what Linux' cdc_acm, macOS and Windows need; `--port auto` finds the board by VID:PID and
product string and otherwise names the candidates; the USB stack's share of the image from the linker map."""
import ctypes
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from export.rp2040.elfsize import object_footprint
from edgecore.errors import UserError
from export.rp2040 import serial_client
from export.rp2040.ports import USB_PID, USB_PRODUCT, USB_VID, find_port

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware" / "rp2040"


@pytest.fixture(scope="module")
def desc(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    so = tmp_path_factory.mktemp("usbdesc") / "libusbdesc.so"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(FW / "usb_desc.c"),
                    "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    device = bytes((ctypes.c_uint8 * 18).in_dll(lib, "usb_device_descriptor"))
    config = bytes((ctypes.c_uint8 * 75).in_dll(lib, "usb_config_descriptor"))
    strings = [s.decode() if s else None for s in (ctypes.c_char_p * 3).in_dll(lib, "usb_strings")]
    return device, config, strings


def _walk(config: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(config):
        n = config[i]
        assert n >= 2 and i + n <= len(config), f"descriptor at {i} overruns"
        out.append(config[i:i + n])
        i += n
    return out


def test_device_descriptor_ids_and_strings(desc):
    device, _, strings = desc
    assert device[:2] == bytes([18, 1]) and device[2:4] == b"\x00\x02"      # USB 2.00
    assert tuple(device[4:7]) == (0xEF, 0x02, 0x01) and device[7] == 64     # IAD device class, EP0 64 B
    assert int.from_bytes(device[8:10], "little") == USB_VID
    assert int.from_bytes(device[10:12], "little") == USB_PID
    assert strings[device[14]] == "pizza-edge" and strings[device[15]] == USB_PRODUCT
    assert device[16] == 0 and device[17] == 1                              # no serial string, one config
    assert all(len(s) <= 31 for s in strings if s)                          # USB_STRING_MAX_CHARS


def test_configuration_has_what_cdc_acm_binds_to(desc):
    _, config, _ = desc
    parts = _walk(config)
    assert parts[0][1] == 2 and int.from_bytes(parts[0][2:4], "little") == len(config) and parts[0][4] == 2
    iad = [p for p in parts if p[1] == 0x0B]
    assert [tuple(p[2:6]) for p in iad] == [(0, 2, 0x02, 0x02)]
    ifaces = [p for p in parts if p[1] == 4]
    assert [(p[2], p[4], p[5], p[6]) for p in ifaces] == [(0, 1, 0x02, 0x02), (1, 2, 0x0A, 0x00)]
    cdc = {p[2]: p for p in parts if p[1] == 0x24}
    assert cdc[0x06][3:] == bytes([0, 1])            # union: control 0, data 1
    assert cdc[0x01][4] == 1 and cdc[0x02][3] == 0x02  # call management -> data 1; ACM line requests
    eps = [(p[2], p[3], int.from_bytes(p[4:6], "little")) for p in parts if p[1] == 5]
    assert eps == [(0x81, 3, 8), (0x02, 2, 64), (0x82, 2, 64)]


def _port(device, vid=None, pid=None, product=None, description="n/a"):
    return SimpleNamespace(device=device, vid=vid, pid=pid, product=product, description=description)


def test_find_port_picks_our_board_and_names_candidates():
    ours = _port("/dev/ttyACM1", USB_VID, USB_PID, USB_PRODUCT)
    other_pico = _port("/dev/ttyACM0", USB_VID, USB_PID, "Pico")
    adapter = _port("/dev/ttyUSB0", 0x0403, 0x6001, "FT232R USB UART", "FT232R USB UART")
    assert find_port([adapter, other_pico, ours]) == "/dev/ttyACM1"
    assert find_port([adapter, _port("COM3", USB_VID, USB_PID)]) == "COM3"  # Windows: no product string
    with pytest.raises(UserError, match=r"2 boards look like ours: /dev/ttyACM1 .*/dev/ttyACM2"):
        find_port([ours, _port("/dev/ttyACM2", USB_VID, USB_PID, USB_PRODUCT)])
    with pytest.raises(UserError, match=r"no pizza-edge Pico on USB .*/dev/ttyACM0 .*/dev/ttyUSB0 \(FT232R USB UART "
                                        r"\[0403:6001\]\).*--port"):
        find_port([adapter, other_pico])
    with pytest.raises(UserError, match="no serial port found: plug the Pico in by USB"):
        find_port([])


def test_serial_client_defaults_to_port_auto(monkeypatch, capsys, tmp_path):
    list_ports = pytest.importorskip("serial.tools.list_ports")
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    assert serial_client.main([str(tmp_path / "photo.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no serial port found")


def test_object_footprint_from_a_linker_map(tmp_path):
    m = tmp_path / "fw.map"
    m.write_text("Discarded input sections\n .text 0x0 0x40 /b/obj/usb.o\n"
                 "Linker script and memory map\n"
                 " .text.usb_init\n                0x10000f58       0xfc /b/obj/usb.o\n"
                 " .rodata        0x10002f28       0x4b /b/obj/usb_desc.o\n"
                 " .text.main     0x10000100       0x80 /b/obj/main.o\n"
                 " .data.line_coding\n                0x20000634        0x7 /b/obj/usb.o\n"
                 " .bss.rx_ring   0x20008300      0x400 /b/obj/usb.o\n"
                 " *fill*         0x20008700        0x4 \n"
                 " .debug_info    0x00000000      0x900 /b/obj/usb.o\n")
    got = object_footprint(m, ("usb.o", "usb_desc.o"))
    assert got == {"flash_bytes": 0xFC + 0x4B + 0x7, "static_ram_bytes": 0x7 + 0x400}


def test_bench_device_auto_without_a_board(monkeypatch, capsys, tmp_path):
    list_ports = pytest.importorskip("serial.tools.list_ports")
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    from benchmarks.run import main

    assert main(["--target", "rp2040", "--device", "auto", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no serial port found")
