"""The firmware's USB CDC-ACM port in rp2040js behind our cdc_acm-like host (firmware/emulator/usb_host.mjs):
Linux-style enumeration, STALLs for malformed control requests, INFO and INFER over USB byte-identical to
UART0 (both links live in one session) and bit-exact against the host build of the model, the emulated
time of one 27,648-byte INFER round trip, and protocol error replies for garbage on the bulk endpoint."""
import shutil
import struct

import numpy as np
import pytest

from edgecore.preprocess import to_int8
from export.rp2040.emulator import emulator_missing

pytestmark = pytest.mark.emulator

_missing = emulator_missing() or (None if shutil.which("arm-none-eabi-gcc") else "arm-none-eabi-gcc is not installed")
if _missing:
    pytest.skip(f"RP2040 USB emulator test needs the toolchain and rp2040js: {_missing}", allow_module_level=True)

import _export_fixture as fx  # noqa: E402

from compress.data import load_dataset, load_images  # noqa: E402
from export.rp2040 import build  # noqa: E402
from export.rp2040.host import HostModel  # noqa: E402
from export.rp2040.ports import USB_PID, USB_PRODUCT, USB_VID  # noqa: E402
from export.rp2040.serial_client import (REP_ERROR, REP_INFER, REP_INFO, REQ_INFER, REQ_INFO, Client,  # noqa: E402
                                         encode_frame)
from export.rp2040.usb_emulator import usb_emulator  # noqa: E402

SIZE = 96  # the default student's input: a 27,648-byte INFER payload
ENUMERATION = [
    "device connected (D+ pull-up)", "GET_DESCRIPTOR device (64) at address 0", "SET_ADDRESS 5",
    "GET_DESCRIPTOR device (18)", "GET_DESCRIPTOR configuration (9)", "GET_DESCRIPTOR configuration (75)",
    "GET_DESCRIPTOR string 0 (languages)", "GET_DESCRIPTOR string 1 (manufacturer)",
    "GET_DESCRIPTOR string 2 (product)", "SET_CONFIGURATION 1", "SET_LINE_CODING 9600 8N1 (cdc_acm probe)",
    "GET_LINE_CODING"]
OPEN = ["SET_LINE_CODING 115200 8N1 (open)", "SET_CONTROL_LINE_STATE DTR|RTS (open)", "port open"]


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """The export fixture's tiny CNN at 96x96 input (fixture internals read the module's SIZE at call time)."""
    run = tmp_path_factory.mktemp("run96") / "r"
    saved = fx.SIZE
    fx.SIZE = SIZE
    try:
        (run / "quant").mkdir(parents=True)
        fx._write_dataset(run)
        model, x = fx._train(fx._torch_model(), run, steps=60)
        (run / "quant" / "model_int8.tflite").write_bytes(fx._keras_int8(model, x))
        fx._record_quant(run)
    finally:
        fx.SIZE = saved
    out = tmp_path_factory.mktemp("rp2040usb")
    build.build_firmware(run, build.FirmwareConfig(fw_out=out, fw_selftest_images=1))
    ds = load_dataset(run)
    host = HostModel(run / "quant" / "model_int8.tflite", ds.classes)
    x = to_int8(load_images(run, ds.split("test")[:3], (SIZE, SIZE)))
    return out / "pizza.uf2", ds, host, x, host.run(x)


def _steps(log) -> list[str]:
    return [e["step"] for e in log.find("step")]


def _error(kind: int, payload: bytes) -> tuple[int, int]:
    assert kind == REP_ERROR
    return payload[0], struct.unpack_from("<I", payload, 4)[0]


def test_enumeration_like_linux_and_stall_for_malformed_control_requests(firmware):
    uf2, ds, _, x, want = firmware
    with usb_emulator(uf2, malformed=True) as (usb, uart, log):
        uart.wait_for(b"READY", 300)
        client = Client(usb, timeout=60)
        assert client.info().class_names == ds.classes  # the device still serves the protocol afterwards
        r = client.infer(x[0])
        assert r.scores.tolist() == want[0].tolist()
    assert not log.find("error"), log.find("error")
    steps = _steps(log)
    malformed = log.find("malformed")[0]
    cases = [c["name"] for c in malformed["malformed"]]
    probes = [s for c in cases for s in (c, f'GET_DESCRIPTOR device after "{c}"')]
    assert steps == ENUMERATION + probes + ["GET_LINE_CODING after the malformed requests"] + OPEN
    assert len(cases) == 10 and all(c["result"] == "stall" and c["ep0_ok"] for c in malformed["malformed"])
    assert malformed["line_coding_unchanged"]

    e = log.find("enumerated")[0]
    assert (e["vid"], e["pid"], e["class"], e["address"]) == (USB_VID, USB_PID, [0xEF, 2, 1], 5)
    assert e["strings"] == {"manufacturer": "pizza-edge", "product": USB_PRODUCT} and e["language"] == 0x0409
    cfg = e["config"]
    assert cfg["cdc"]["union"] == {"control": 0, "subordinate": [1]} and cfg["cdc"]["acm"] == 0x02
    assert [(i["class"], i["subclass"], i["endpoints"]) for i in cfg["interfaces"]] == [(2, 2, 1), (0x0A, 0, 2)]
    assert (cfg["notify"], cfg["bulk_in"], cfg["bulk_out"]) == (0x81, 0x82, 0x02)
    # RP2040-E5: after each of the two bus resets the device routed the forced J through the digital pad
    # (TO_DIGITAL_PAD | SOFTCON) and handed the line back to the PHY (TO_PHY | SOFTCON).
    assert e["e5_muxing"] == [0x9, 0xC, 0x9, 0xC, 0x9]


def test_usb_answers_equal_uart_answers_bit_for_bit_and_infer_round_trip_time(firmware):
    uf2, ds, host, x, want = firmware
    with usb_emulator(uf2) as (usb, uart, log):
        uart.wait_for(b"READY", 300)
        over_usb, over_uart = Client(usb, timeout=60), Client(uart, timeout=60)
        replies = {name: [client.request(REQ_INFO)] + [client.request(REQ_INFER, xi.tobytes()) for xi in x]
                   for name, client in (("usb", over_usb), ("uart", over_uart))}
        # Both links at once: the parser serves the link that started a frame; the other one waits its turn.
        usb.write(encode_frame(REQ_INFER, x[1].tobytes()))
        uart.write(encode_frame(REQ_INFO))
        both = over_usb.read_reply(), over_uart.read_reply()
    assert not log.find("error"), log.find("error")
    # INFO byte for byte, but for the painted-stack high-water mark (bytes 24-27): an interrupt landing at the
    # deepest point of an inference raises it whichever link asked.
    (k_usb, info_usb), (k_uart, info_uart) = replies["usb"][0], replies["uart"][0]
    assert (k_usb, info_usb[:24], info_usb[28:]) == (k_uart, info_uart[:24], info_uart[28:])
    for (k_usb, p_usb), (k_uart, p_uart) in zip(replies["usb"][1:], replies["uart"][1:]):
        # INFER: status, class and scores byte for byte; the cycle count may differ by a SysTick wrap
        # interrupt (about 10 cycles every 2^24) falling inside one inference and not the other.
        assert (k_usb, p_usb[:4], p_usb[8:]) == (k_uart, p_uart[:4], p_uart[8:])
        cycles_usb, cycles_uart = struct.unpack_from("<I", p_usb, 4)[0], struct.unpack_from("<I", p_uart, 4)[0]
        assert abs(cycles_usb - cycles_uart) < 100
    kind, info = replies["usb"][0]
    assert kind == REP_INFO and info[32:].decode().split("\n") == ds.classes
    clock_hz = struct.unpack_from("<I", info, 20)[0]
    for (kind, p), ref in zip(replies["usb"][1:], want):
        assert kind == REP_INFER and np.frombuffer(p[8:], np.int8).tolist() == ref.tolist()
    assert both[0][1][8:] == replies["usb"][2][1][8:] and both[1][0] == REP_INFO

    payload = SIZE * SIZE * 3
    assert payload == 27648
    rounds = [e for e in log.find("exchange") if e["type"] == REP_INFER and e["out_bytes"] == payload + 11]
    assert len(rounds) == len(x) + 1
    for e, (_, p) in zip(rounds, replies["usb"][1:]):
        inference_ns = 1e9 * struct.unpack_from("<I", p, 4)[0] / clock_hz
        transfer_ms = (e["end_ns"] - e["start_ns"] - inference_ns) / 1e6
        print(f"USB INFER round trip: {(e['end_ns'] - e['start_ns']) / 1e6:.2f} ms emulated, "
              f"{transfer_ms:.2f} ms without the inference ({inference_ns / 1e6:.2f} ms)")
        # Bulk OUT is paced at full speed's 19 packets per 1 ms frame: 433 packets need >= 22.8 ms.
        assert 22.7 < transfer_ms < 100


def test_garbage_on_bulk_out_gets_protocol_errors_and_never_hangs(firmware):
    uf2, _, _, x, want = firmware
    rng = np.random.default_rng(14)
    noise = rng.integers(0, 256, 5000, dtype=np.uint8)
    noise = noise[noise != 0x50].tobytes()  # no 'P': no magic inside
    good = encode_frame(REQ_INFER, x[0].tobytes())
    bad_crc = bytearray(good)
    bad_crc[100] ^= 0x40
    cases = [(noise, 1, len(noise)),                                  # garbage: skipped bytes reported
             (encode_frame(REQ_INFER, bytes(64)), 3, 64),             # wrong length for the type
             (encode_frame(0x33), 2, 0x33),                           # unknown type
             (bytes(bad_crc), 4, struct.unpack("<I", good[-4:])[0]),  # bad CRC
             (good[:1000], 5, 1000)]                                  # truncated: the idle timeout ends it
    with usb_emulator(uf2) as (usb, uart, log):
        uart.wait_for(b"READY", 300)
        client = Client(usb, timeout=60)
        for frame, status, detail in cases:
            usb.write(frame)
            assert _error(*client.read_reply()) == (status, detail), frame[:16]
            r = client.infer(x[0])
            assert r.scores.tolist() == want[0].tolist()
        # A flood far larger than the 1 KB bulk ring: the endpoint NAKs while the parser catches up.
        usb.write(noise * 8)
        assert _error(*client.read_reply()) == (1, 8 * len(noise))
        assert Client(uart, timeout=60).info().num_classes == len(want[0])
        assert client.infer(x[1]).scores.tolist() == want[1].tolist()
    assert not log.find("error"), log.find("error")


def test_client_cli_over_the_emulated_usb_port(firmware, tmp_path, capsys):
    from PIL import Image

    from export.rp2040 import serial_client

    uf2, ds, host, x, _ = firmware
    photo = tmp_path / "photo.png"
    img = (x[:1].astype(np.int16) + 128).astype(np.uint8)
    Image.fromarray(img[0]).save(photo)
    want = host.run(to_int8(img))  # the client standardises the photo it reads, like any other
    rc = serial_client.main(["--emulator", str(uf2), "--emulator-link", "usb", "--timeout", "300", str(photo)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"class: {ds.classes[int(np.argmax(want[0]))]} " in out
    assert [int(line.split()[1]) for line in out.splitlines() if "p=" in line] == want[0].tolist()
