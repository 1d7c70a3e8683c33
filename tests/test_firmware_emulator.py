"""The built RP2040 firmware running in rp2040js: boot self-test, bit-exact answers over the serial
protocol against the host-compiled model, and error replies (then recovery) for malformed frames."""
import re
import shutil
import struct
import time

import numpy as np
import pytest

from edgecore.preprocess import to_int8
from export.rp2040.emulator import emulator_missing

pytestmark = pytest.mark.emulator

_missing = emulator_missing() or (None if shutil.which("arm-none-eabi-gcc") else "arm-none-eabi-gcc is not installed")
if _missing:
    pytest.skip(f"RP2040 emulator test needs the toolchain and rp2040js: {_missing}", allow_module_level=True)

from _export_fixture import tiny_run  # noqa: E402

from compress.data import load_dataset, load_images  # noqa: E402
from export.rp2040 import build  # noqa: E402
from export.rp2040.emulator import emulator  # noqa: E402
from export.rp2040.host import HostModel  # noqa: E402
from export.rp2040.serial_client import REQ_INFER, REP_ERROR, REP_INFER, Client, encode_frame  # noqa: E402
from export.rp2040.uf2 import read_uf2  # noqa: E402
from export.rp2040.xip import SELFTEST_INPUT, xip_profile  # noqa: E402


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    shutil.copytree(tiny_run(), run)  # the build records a manifest in the run: keep the shared fixture clean
    out = tmp_path_factory.mktemp("rp2040")
    report = build.build_firmware(run, build.FirmwareConfig(fw_out=out, fw_selftest_images=2))
    ds = load_dataset(run)
    host = HostModel(run / "quant" / "model_int8.tflite", ds.classes)
    return run, out, report, ds, host


def test_build_outputs_and_size_report(firmware):
    _, out, report, _, host = firmware
    for ext in ("uf2", "elf", "bin", "map"):
        assert (out / f"pizza.{ext}").stat().st_size > 0
    blocks = read_uf2((out / "pizza.uf2").read_bytes())
    assert len(blocks) * 256 >= report["flash_bytes"] > len(blocks) * 256 - 256
    assert report["arena_bytes"] == host.arena_bytes
    assert report["bss_bytes"] >= report["arena_bytes"] + host.summary["input_shape"][1] ** 2 * 3
    assert report["stack_bytes"] == 8192
    assert "__StackTop" in (out / "pizza.map").read_text()


def test_emulated_firmware_is_bit_exact_and_survives_garbage(firmware):
    run, out, _, ds, host = firmware
    _, h, w, _ = host.summary["input_shape"]
    baked, baked_labels, _ = build._selftest_images(run, h, w, 2)
    test = ds.split("test")[:4]
    x = to_int8(load_images(run, test, (h, w)))
    want = host.run(x)

    with emulator(out / "pizza.uf2") as port:
        boot = port.wait_for(b"READY", 120).decode()
        # Self-test: the device's scores on the baked images equal the host build of the same C.
        lines = re.findall(r"selftest (\d+) label=(\w+) class=(\w+) rc=0 cycles=(\d+) scores=([-\d,]+)", boot)
        assert len(lines) == 2
        for (i, label, cls, cycles, scores), ref in zip(lines, host.run(baked)):
            assert label == ds.classes[baked_labels[int(i)]]
            assert [int(s) for s in scores.split(",")] == ref.tolist()
            assert cls == ds.classes[int(np.argmax(ref))] and int(cycles) > 0

        client = Client(port, timeout=60)
        info = client.info()
        assert (info.height, info.width, info.channels, info.num_classes) == (h, w, 3, len(ds.classes))
        assert info.class_names == ds.classes and info.arena_bytes == host.arena_bytes
        assert 0 < info.stack_used < info.stack_reserved

        cycles = []
        for xi, ref in zip(x, want):
            r = client.infer(xi)
            assert r.scores.tolist() == ref.tolist() and r.class_index == int(np.argmax(ref))
            cycles.append(r.cycles)
        assert min(cycles) > 0

        good = encode_frame(REQ_INFER, x[0].tobytes())
        bad_crc = bytearray(good)
        bad_crc[20] ^= 0x01
        cases = [(b"not a frame at all", 1, 18),                     # bytes before a magic
                 (encode_frame(REQ_INFER, bytes(10)), 3, 10),        # wrong length for the type
                 (encode_frame(0x7F), 2, 0x7F),                      # unknown type
                 (bytes(bad_crc), 4, struct.unpack("<I", good[-4:])[0]),
                 (good[:300], 5, 300)]                               # truncated: the device times out
        for frame, status, detail in cases:
            port.write(frame)
            kind, payload = client.read_reply(timeout=60)
            assert kind == REP_ERROR, frame[:20]
            assert (payload[0], struct.unpack_from("<I", payload, 4)[0]) == (status, detail)
            # ...and the next valid frame is still answered, bit-exact.
            port.write(good)
            kind, payload = client.read_reply(timeout=60)
            assert kind == REP_INFER and np.frombuffer(payload[8:], np.int8).tolist() == want[0].tolist()
    assert port.cycles and port.cycles > sum(cycles)


def test_both_boot2_variants_boot_in_the_emulator(firmware, tmp_path):
    """boot.mjs checks boot2's CRC like the bootrom, runs it from SRAM and follows it into the vector table.
    rp2040js does not model the flash's serial protocol, so this shows each boot2 completes its SSI set-up and
    hands over, not that a W25Q080 answers EBh."""
    run, out, report, _, host = firmware
    assert report["boot2"] == "w25q080"
    cfg = build.FirmwareConfig(fw_out=tmp_path, fw_selftest_images=1, fw_boot2="generic-03h")
    assert build.build_firmware(run, cfg)["boot2"] == "generic-03h"
    boot2 = {mode: (d / "pizza.bin").read_bytes()[:256] for mode, d in (("w25q080", out), ("generic-03h", tmp_path))}
    assert boot2["w25q080"] != boot2["generic-03h"]
    for mode, d in (("w25q080", out), ("generic-03h", tmp_path)):
        with emulator(d / "pizza.uf2") as port:
            assert b"reset=power-on" in port.wait_for(b"READY", 120), mode


def _edge_case_layers(x):
    """Layers that reach the M0+ assembly paths the fixture model does not."""
    L = pytest.importorskip("tensorflow").keras.layers
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(x)  # 3x3 over RGB: unrolled rows, a 2-channel tail
    x = L.Conv2D(8, 1, activation="relu")(x)                              # pointwise K = 6: the byte loop
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)       # interior 3x3 depthwise, unrolled
    x = L.Conv2D(7, 1)(x)                                                 # K = 8 word loads, a 3-channel tail per pixel
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)                # 7 channels: the C path
    x = L.Conv2D(12, 3, padding="valid", activation="relu")(x)            # offset table, 63 taps (odd)
    x = L.GlobalAveragePooling2D()(x)
    return L.Dense(3)(x)


def test_m0_kernel_paths_bit_exact_in_the_emulator(firmware, tmp_path):
    """A model built to reach every nn_blocks path (unrolled RGB stem rows, pointwise byte and word loops,
    channel tails over runs of pixels, unrolled and table-driven depthwise, the offset table with an odd tap
    count) runs on the emulated M0+ bit-exact with the host build of the same C, which test_nn_kernels.py holds
    to TFLite-Micro."""
    from _tflite_fixture import keras_model, to_int8_tflite

    from edgecore.manifest import record_stage

    run, _, _, ds, _ = firmware
    edge = tmp_path / "run"
    shutil.copytree(run, edge)
    shape = (32, 32, 3)
    tflite = edge / "quant" / "model_int8.tflite"
    tflite.write_bytes(to_int8_tflite(keras_model(shape, _edge_case_layers, seed=3), shape, seed=1))
    record_stage(edge, "quant", outputs=sorted((edge / "quant").glob("*.*")))
    build.build_firmware(edge, build.FirmwareConfig(fw_out=tmp_path / "fw", fw_selftest_images=1))
    host = HostModel(tflite, ds.classes)
    x = to_int8(load_images(edge, ds.split("test")[:6], (32, 32)))
    want = host.run(x)
    assert len({tuple(r) for r in want}) > 2, "reference outputs barely vary: the test would prove little"
    with emulator(tmp_path / "fw" / "pizza.uf2") as port:
        port.wait_for(b"READY", 120)
        client = Client(port, timeout=60)
        got = [client.infer(xi).scores.tolist() for xi in x]
    assert got == want.tolist()


def test_xip_model_replays_one_warm_inference(firmware, tmp_path):
    """xip.mjs counts the XIP reads of the second self-test inference. With the default placement the model's
    code, weights and the baked input image (an INFER input is in SRAM) never go through the XIP cache; with
    --fw-weights flash the weights do (this model's 7 KB of them fit the 16 KB cache, so they hit when warm)."""
    run, out, _, _, _ = firmware
    prof = xip_profile(out / "pizza.elf", out / "pizza.uf2")
    names = {name for name, _, _ in prof["by_symbol"]}
    assert prof["call"] == 2 and prof["cycles"] > 0 and 0 <= prof["misses"] <= prof["reads"]
    assert not {"model_run", "nn_blocks", "nn_conv2d", SELFTEST_INPUT} & names
    assert not [n for n in names if n.endswith("_weights")]
    assert (prof["line_bytes"], prof["ways"], prof["cache_bytes"]) == (8, 2, 16384)

    cfg = build.FirmwareConfig(fw_out=tmp_path, fw_selftest_images=2, fw_weights="flash")
    assert build.build_firmware(run, cfg)["weights_in"] == "flash"
    flash = xip_profile(tmp_path / "pizza.elf", tmp_path / "pizza.uf2")
    weight_reads = sum(r for name, r, _ in flash["by_symbol"] if name.endswith("_weights"))
    assert weight_reads > 0 and flash["reads"] > prof["reads"]


def test_two_infer_frames_back_to_back_on_a_paced_line_are_both_answered(firmware):
    """Two INFER frames sent in one go at 115200 baud: the second arrives while the first is being inferred and
    is held in the interrupt-fed RX ring (polling the 32-byte FIFO lost its bytes), so both get bit-exact
    answers; the paced line loses nothing."""
    run, out, _, ds, host = firmware
    _, h, w, _ = host.summary["input_shape"]
    x = to_int8(load_images(run, ds.split("test")[:2], (h, w)))
    want = host.run(x)
    with emulator(out / "pizza.uf2", baud=115200) as port:
        port.wait_for(b"READY", 120)
        client = Client(port, timeout=120)
        port.write(encode_frame(REQ_INFER, x[0].tobytes()) + encode_frame(REQ_INFER, x[1].tobytes()))
        for ref in want:
            kind, payload = client.read_reply(timeout=120)
            assert kind == REP_INFER, payload[:8]
            assert np.frombuffer(payload[8:], np.int8).tolist() == ref.tolist()
        assert client.info().reset_reason == "power-on"
    assert port.rx_lost == 0


def test_hardfault_reboots_through_the_watchdog_and_reports_where(firmware):
    """A HardFault in the main loop: the handler prints its PC, resets through the watchdog, and the next boot
    reports reset=hardfault with the same PC, in the banner and in INFO; the device then answers again."""
    run, out, _, ds, host = firmware
    _, h, w, _ = host.summary["input_shape"]
    x = to_int8(load_images(run, ds.split("test")[:1], (h, w)))
    with emulator(out / "pizza.uf2", on_ready="hardfault") as port:
        seen, deadline = b"", time.monotonic() + 240
        while seen.count(b"READY") < 2 and time.monotonic() < deadline:
            seen += port.read(4096)
        text = seen.decode(errors="replace")
        assert text.count("READY") == 2 and text.index("reset=power-on") < text.index("HARDFAULT")
        pc = re.search(r"HARDFAULT pc=(0x[0-9a-f]{8})", text).group(1)
        assert int(pc, 16) >= 0x10000000
        assert f"reset=hardfault pc={pc}" in text
        client = Client(port, timeout=60)
        assert client.info().reset_reason == "hardfault"
        assert client.infer(x[0]).scores.tolist() == host.run(x)[0].tolist()


def test_watchdog_resets_a_hung_firmware_and_says_so(firmware):
    """The core spins with interrupts masked after READY: the watchdog (2 s) resets the chip, and the next boot
    reports reset=watchdog in the banner and in INFO, then answers again."""
    run, out, _, ds, host = firmware
    _, h, w, _ = host.summary["input_shape"]
    x = to_int8(load_images(run, ds.split("test")[:1], (h, w)))
    with emulator(out / "pizza.uf2", on_ready="hang") as port:
        seen, deadline = b"", time.monotonic() + 300
        while seen.count(b"READY") < 2 and time.monotonic() < deadline:
            seen += port.read(4096)
        text = seen.decode(errors="replace")
        assert text.count("READY") == 2 and "reset=watchdog" in text.split("READY")[1]
        client = Client(port, timeout=60)
        assert client.info().reset_reason == "watchdog"
        assert client.infer(x[0]).scores.tolist() == host.run(x)[0].tolist()


def _host_parser_events(junk: bytes, infer_bytes: int, tmp_path) -> list[tuple[int, int]]:
    """What firmware/rp2040/protocol.c reports for `junk` then an idle line, compiled for the host."""
    import ctypes
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    so = tmp_path / "libproto.so"
    subprocess.run([shutil.which("gcc") or "cc", "-std=c11", "-shared", "-fPIC", f"-I{root / 'firmware/rp2040'}",
                    str(root / "firmware/rp2040/protocol.c"), str(root / "tests/fixtures/rp2040_proto_host.c"),
                    "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.shim_reset(infer_bytes)
    codes, details = (ctypes.c_int32 * 4096)(), (ctypes.c_uint32 * 4096)()
    n = lib.shim_feed(junk, ctypes.c_size_t(len(junk)), 1, codes, details, ctypes.c_size_t(4096))
    return [(codes[i], details[i]) for i in range(n)]


def test_random_byte_stream_then_valid_frame_is_answered_bit_exact(firmware, tmp_path):
    """Random bytes (with magics, headers and one valid INFO frame spliced in) get exactly the replies the
    host build of the parser predicts, the idle line flushes the parser, and the next INFER is bit-exact."""
    run, out, _, ds, host = firmware
    _, h, w, _ = host.summary["input_shape"]
    x = to_int8(load_images(run, ds.split("test")[:1], (h, w)))
    want = host.run(x)[0].tolist()
    rng = np.random.default_rng(8)
    pieces = []
    for _ in range(40):
        pieces.append(rng.integers(0, 256, int(rng.integers(0, 60)), dtype=np.uint8).tobytes())
        pieces.append([b"PZ", b"PZ\x01", b"PZ\x02\x00\x00\x00\x00", b"PZ\x01\xc0\x00\x00\x00",
                       b"P", encode_frame(0x02)][int(rng.integers(0, 6))])
    junk = b"".join(pieces) + rng.integers(0, 256, 30, dtype=np.uint8).tobytes()
    # After an idle line the host parser has reported everything; so must the device.
    expected = _host_parser_events(junk, h * w * 3, tmp_path)
    assert {1, 2, 3, 4, 0x102} <= {c for c, _ in expected}
    cut = encode_frame(REQ_INFER, x[0].tobytes())[:100]  # then a frame only the idle timeout can end

    with emulator(out / "pizza.uf2") as port:
        port.wait_for(b"READY", 120)
        client = Client(port, timeout=60)
        port.write(junk)
        got = []
        for code, _ in expected:
            kind, payload = client.read_reply(timeout=60)
            if kind == REP_ERROR:
                got.append((payload[0], struct.unpack_from("<I", payload, 4)[0]))
            else:
                got.append((0x100 | (kind & 0x7F), 0))  # a reply to the spliced INFO frame
        assert got == [(c, 0 if c & 0x100 else d) for c, d in expected]
        port.write(cut)
        kind, payload = client.read_reply(timeout=60)
        assert kind == REP_ERROR and (payload[0], struct.unpack_from("<I", payload, 4)[0]) == (5, 100)
        r = client.infer(x[0])
        assert r.scores.tolist() == want and r.class_index == int(np.argmax(want))
