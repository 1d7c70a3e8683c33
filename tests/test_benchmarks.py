"""Benchmark harness: target spec validation, every budget broken on purpose, family aliases, reports.

Runs on the exporter tests' tiny run (a 32x32 CNN with its float ONNX, QDQ ONNX and full-INT8 .tflite),
copied so the harness can write R/bench/ and R/export/ beside it."""
from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from export.rp2040.elfsize import firmware_memory
from benchmarks.run import main
from edgecore.targets import DEFAULT_TARGETS_DIR, host_facts, load_all, load_spec, resolve
from edgecore.errors import UserError

LIMIT = ["--limit", "30"]  # enough images for stable accuracies, few enough to stay fast


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from _export_fixture import tiny_run

    dst = tmp_path_factory.mktemp("bench") / "run"
    shutil.copytree(tiny_run(), dst)
    return dst


@pytest.fixture(scope="module")
def broken_run(run_dir, tmp_path_factory) -> Path:
    """The same run whose INT8 QDQ model was calibrated on nearly black images: a real INT8 accuracy collapse."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from _export_fixture import _record_quant

    from compress.data import load_dataset, load_images
    from edgecore.preprocess import to_float_nchw

    dst = tmp_path_factory.mktemp("broken") / "run"
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("bench", "export"))
    items = load_dataset(dst).split("train")
    dark = to_float_nchw(load_images(dst, items, (32, 32))) * np.float32(0.03)

    class Reader:
        def __init__(self):
            self.it = iter([{"input": dark[i:i + 1]} for i in range(len(dark))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(dst / "quant/student_float.onnx"), str(dst / "quant/student_int8_qdq.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    _record_quant(dst)  # the harness measures only what the quant stage recorded
    return dst


def _dump(d: dict) -> str:
    """Minimal TOML writer for spec dicts (scalars, lists of str, one level of tables)."""
    value = lambda v: json.dumps(v)  # noqa: E731  (JSON strings, numbers, bools and lists are valid TOML)
    lines = [f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def target_file(tmp_path: Path, name: str, **budgets) -> Path:
    """A targets folder holding targets/<name>.toml with some budgets replaced; returns the folder. The fixture
    model tells its classes apart by colour alone, so an exposure shift breaks it: the shift budget is relaxed
    unless a test sets it (test_bench_quality.py breaks it on purpose)."""
    spec = tomllib.loads((DEFAULT_TARGETS_DIR / f"{name}.toml").read_text())
    spec["budgets"].update({"max_shift_drop_pts": 100.0, **budgets})
    folder = tmp_path / "targets"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(_dump(spec))
    return folder


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory) -> Path:
    """Every shipped target with the shift budget relaxed for the colour-coded fixture model (see target_file)."""
    folder = tmp_path_factory.mktemp("relaxed")
    for spec in sorted(DEFAULT_TARGETS_DIR.glob("*.toml")):
        target_file(folder, spec.stem)
    return folder / "targets"


def bench(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def report(run: Path, target: str) -> dict:
    return json.loads((run / "bench" / target / "report.json").read_text())


# ---- target specs ----

def test_shipped_targets_load():
    specs = load_all()
    assert set(specs) >= {"rp2040", "jetson-nano", "jetson-orin-nano", "rpi4", "edgetpu", "openvino", "host"}
    rp = specs["rp2040"]
    assert rp.device["ram_bytes"] == 264 * 1024 and rp.device["flash_bytes"] == 2 * 1024 * 1024
    assert rp.budgets["model_bytes"] == 64 * 1024 and rp.budgets["ram_bytes"] == 128 * 1024
    assert rp.clock_hz == 125_000_000 and rp.device["max_clock_hz"] == 133_000_000
    assert specs["jetson-nano"].precision == "fp16" and specs["jetson-orin-nano"].precision == "int8"


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("[budgets]", "[budgets]\nram_byts = 5"), "unknown key 'budgets.ram_byts'"),
    (lambda s: s.replace("[device]", "[device]\ncolour = \"red\""), "unknown key 'device.colour'"),
    (lambda s: s.replace("latency_ms = 100.0", 'latency_ms = "fast"'), "'budgets.latency_ms' must be a number"),
    (lambda s: s.replace("model_bytes = 65536", "model_bytes = -1"), "budget 'model_bytes' must be positive"),
    (lambda s: s.replace("ram_bytes = 131072", "ram_bytes = 1000000"),
     "budget 'ram_bytes' = 1000000 exceeds device.ram_bytes = 270336"),
    (lambda s: s.replace("min_accuracy_pct = 95.0", "min_accuracy_pct = 120.0"), "within 0..100"),
    (lambda s: s.replace('runtime = "tflm"', 'runtime = "magic"'), "runtime 'magic' is not one of"),
    (lambda s: s.replace('name = "rp2040"', 'name = "pico"'), "must match the file name"),
    (lambda s: s.replace("[device]", "[devices]"), "unknown key 'devices'"),
    (lambda s: s.replace("clock_hz = 125000000 ", "clock_hz = \n"), "invalid TOML"),
])
def test_bad_spec_is_one_line_exit_2(tmp_path, capsys, edit, message):
    folder = tmp_path / "targets"
    folder.mkdir()
    text = (DEFAULT_TARGETS_DIR / "rp2040.toml").read_text()
    assert edit(text) != text
    (folder / "rp2040.toml").write_text(edit(text))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_spec(folder / "rp2040.toml")
    rc, out, err = bench(capsys, "--target", "rp2040", "--run", tmp_path, "--targets-dir", folder)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_unknown_target_and_missing_run(tmp_path, capsys):
    rc, _, err = bench(capsys, "--target", "pdp11", "--run", tmp_path)
    assert rc == 2 and "unknown target 'pdp11'" in err and "jetson" in err and err.count("\n") == 1
    rc, _, err = bench(capsys, "--target", "host", "--run", tmp_path / "nope")
    assert rc == 2 and "run folder not found" in err and err.count("\n") == 1
    rc, _, err = bench(capsys, "--target", "rp2040", "--run", tmp_path)  # a run without the pipeline's outputs
    assert rc == 2 and "model_int8.tflite not found: run `python -m compress all" in err and err.count("\n") == 1
    rc, _, err = bench(capsys, "--target", "rpi4", "--run", tmp_path, "--device", "/dev/null")
    assert rc == 2 and "--device is a serial port for a Pico" in err


def test_family_alias_picks_the_jetson_it_runs_on(tmp_path):
    specs = load_all()
    assert resolve("jetson", specs, host_facts(tmp_path)).name == "jetson-orin-nano"  # not a Jetson: default
    for model, expected in (("NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
                            ("NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano")):
        (tmp_path / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
        assert resolve("jetson", specs, host_facts(tmp_path)).name == expected
    (tmp_path / "proc/device-tree/model").unlink()  # a container on a Jetson: only the L4T release file
    (tmp_path / "etc").mkdir()
    for release, expected in (("# R32 (release), REVISION: 7.4", "jetson-nano"),
                              ("# R36 (release), REVISION: 4.0", "jetson-orin-nano")):
        (tmp_path / "etc/nv_tegra_release").write_text(release)
        assert resolve("jetson", specs, host_facts(tmp_path)).name == expected
    assert resolve("rpi4", specs, {}).name == "rpi4"


# ---- measurements and budgets ----

def test_jetson_nano_here_validates_onnx_and_reports_tensorrt_not_run(run_dir, relaxed, capsys):
    rc, out, err = bench(capsys, "--target", "jetson-nano", "--run", run_dir, *LIMIT, "--targets-dir", relaxed)
    assert rc == 0, err
    rows = {r["label"]: r for r in report(run_dir, "jetson-nano")["rows"]}
    assert rows["TensorRT latency"]["note"] == "not run: TensorRT not installed"
    assert rows["TensorRT latency"]["status"] == "not run"
    fp16 = next(r for r in rows.values() if r["label"].startswith("FP16 accuracy"))
    assert fp16["status"] == "PASS" and fp16["value"] >= 95.0
    assert next(r for r in rows.values() if r["metric"] == "ops")["status"] == "PASS"
    assert "not run: TensorRT not installed" in out
    for name in ("report.json", "report.md", "budgets.png", "accuracy_vs_size.png"):
        assert (run_dir / "bench" / "jetson-nano" / name).stat().st_size > 0
    assert (run_dir / "bench" / "jetson-nano" / "budgets.png").read_bytes()[:4] == b"\x89PNG"


def test_jetson_alias_on_the_command_line(run_dir, relaxed, capsys, tmp_path):
    rc, out, _ = bench(capsys, "--target", "jetson", "--run", run_dir, *LIMIT, "--json", tmp_path / "r.json",
                       "--targets-dir", relaxed)
    assert rc == 0 and "== jetson-orin-nano" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["target"] == "jetson-orin-nano" and doc["passed"]


def test_host_measures_everything_and_passes(run_dir, relaxed, capsys):
    rc, out, err = bench(capsys, "--target", "host", "--run", run_dir, *LIMIT, "--targets-dir", relaxed)
    assert rc == 0, err
    doc = report(run_dir, "host")
    measured = {r["metric"] for r in doc["rows"] if r["status"] == "PASS"}
    assert measured == {"model_bytes", "accuracy_pct", "drop_pts", "latency_ms", "ram_bytes", "shift_drop_pts"}
    size = next(r["value"] for r in doc["rows"] if r["metric"] == "model_bytes")
    assert size == (run_dir / "quant/student_int8_qdq.onnx").stat().st_size
    assert doc["passed"] and "host: PASS" in out


@pytest.mark.parametrize("budgets, metric", [
    ({"model_bytes": 100}, "model_bytes"),
    ({"ram_bytes": 1000}, "ram_bytes"),
    ({"latency_ms": 1e-6}, "latency_ms"),
])
def test_each_host_budget_broken_exits_1_naming_it(run_dir, tmp_path, capsys, budgets, metric):
    folder = target_file(tmp_path, "host", **budgets)
    rc, out, err = bench(capsys, "--target", "host", "--run", run_dir, "--targets-dir", folder, *LIMIT)
    assert rc == 1
    failed = [r["metric"] for r in report(run_dir, "host")["rows"] if r["status"] == "FAIL"]
    assert failed == [metric]
    assert f"FAIL {metric}: " in err and "FAIL" in out


@pytest.mark.parametrize("budgets, metric", [
    ({"min_accuracy_pct": 90.0, "max_drop_pts": 100.0}, "accuracy_pct"),
    ({"min_accuracy_pct": 0.0, "max_drop_pts": 1.0}, "drop_pts"),
])
def test_int8_collapse_breaks_accuracy_and_drop(broken_run, tmp_path, capsys, budgets, metric):
    folder = target_file(tmp_path, "rpi4", **budgets)
    rc, _, err = bench(capsys, "--target", "rpi4", "--run", broken_run, "--targets-dir", folder, *LIMIT)
    rows = report(broken_run, "rpi4")["rows"]
    drop = next(r["value"] for r in rows if r["metric"] == "drop_pts")
    assert drop > 5.0  # the precondition: calibration on dark images really broke INT8
    assert rc == 1 and [r["metric"] for r in rows if r["status"] == "FAIL"] == [metric]
    assert f"FAIL {metric}: " in err


def test_unsupported_op_stops_before_running(run_dir, tmp_path, capsys):
    from edgecore.tflite_graph import SUPPORTED

    spec = tomllib.loads((DEFAULT_TARGETS_DIR / "rp2040.toml").read_text())
    assert "allowed" not in spec["ops"]  # the firmware's ops are the compiler's: one list, no copy to drift
    spec["ops"]["allowed"] = [op for op in SUPPORTED if op != "MEAN"]  # a target may narrow them
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "rp2040.toml").write_text(_dump(spec))
    rc, _, err = bench(capsys, "--target", "rp2040", "--run", run_dir, "--targets-dir", folder,
                       "--build-dir", tmp_path / "fw")
    assert rc == 1 and "FAIL ops: " in err and "unsupported: MEAN" in err
    rows = report(run_dir, "rp2040")["rows"]
    assert not any(r["metric"] == "accuracy_pct" and r["value"] is not None for r in rows)
    assert not (tmp_path / "fw").exists()  # nothing was built or run


@pytest.fixture(scope="module")
def rp2040_firmware(run_dir, tmp_path_factory):
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("node") is None:
        pytest.skip("needs the ARM toolchain and node (make setup installs both)")
    return tmp_path_factory.mktemp("fw")


@pytest.mark.emulator
def test_rp2040_end_to_end_then_flash_and_ram_budgets_broken(run_dir, rp2040_firmware, relaxed, tmp_path, capsys):
    fw = rp2040_firmware
    rc, out, err = bench(capsys, "--target", "rp2040", "--run", run_dir, "--build-dir", fw, "--limit", "10",
                         "--targets-dir", relaxed)
    assert rc == 0, err
    rows = report(run_dir, "rp2040")["rows"]
    by_metric = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    # Flash and RAM read from the ELF agree with binutils' per-section sizes (SysV format: name size addr).
    # Berkeley totals would not do: the kernels' code runs from SRAM, so `.data` holds code and `size -B`
    # counts it as text.
    sysv = subprocess.run(["arm-none-eabi-size", "-A", str(fw / "pizza.elf")], text=True,
                          capture_output=True, check=True).stdout.splitlines()
    in_ram = sum(int(f[1]) for f in (line.split() for line in sysv)  # `.stack`: padding below the stack
                 if len(f) == 3 and f[1].isdigit() and f[2].isdigit() and int(f[2]) >= 0x20000000 and f[0] != ".stack")
    mem = firmware_memory(fw / "pizza.elf")
    assert mem["flash_bytes"] == (fw / "pizza.bin").stat().st_size
    assert mem["static_ram_bytes"] == in_ram and mem["stack_bytes"] == 8192
    built = json.loads((fw / "pizza.size.json").read_text())  # the build's size report: the same sizer
    assert (built["flash_bytes"], built["ram_bytes"]) == (mem["flash_bytes"], mem["ram_bytes"])
    assert by_metric["flash_bytes"][0]["value"] == mem["flash_bytes"]
    assert by_metric["ram_bytes"][0]["value"] == mem["ram_bytes"]
    usb = [r for r in rows if r["label"].startswith("USB CDC-ACM stack")]  # part of the flash row above
    assert len(usb) == 1 and 1000 < usb[0]["value"] < mem["flash_bytes"] and "usb.o" in usb[0]["note"]
    assert all(r["status"] == "PASS" for r in by_metric["accuracy_pct"])  # TFLite-Micro and the C model
    emu = by_metric["latency_ms"][0]
    assert emu["status"] == "PASS" and "cycles" in emu["note"] and 0 < emu["value"] < 100
    assert by_metric["bit_exact"][0]["status"] == "PASS"
    arenas = [r for r in rows if "arena" in r["label"]]
    assert len(arenas) == 2 and all(r["value"] > 0 for r in arenas)

    for budgets, metric in (({"flash_bytes": 1000}, "flash_bytes"), ({"ram_bytes": 1000}, "ram_bytes")):
        folder = target_file(tmp_path / metric, "rp2040", **budgets)
        rc, _, err = bench(capsys, "--target", "rp2040", "--run", run_dir, "--build-dir", fw,
                           "--targets-dir", folder, "--limit", "10")
        assert rc == 1 and f"FAIL {metric}: " in err
        assert [r["metric"] for r in report(run_dir, "rp2040")["rows"] if r["status"] == "FAIL"] == [metric]


@pytest.mark.emulator
def test_rp2040_device_port_runs_on_the_firmware(run_dir, rp2040_firmware, relaxed, monkeypatch, capsys):
    """--device PORT: the emulated Pico's UART stands in for the USB serial port (no hardware here)."""
    import export.rp2040.serial_client as serial_client
    from export.rp2040.emulator import emulator

    def open_emulated(device, baud, timeout):
        cm = emulator(rp2040_firmware / "pizza.uf2")
        port = cm.__enter__()
        port.wait_for(b"READY", 600)
        port.close = lambda: cm.__exit__(None, None, None)
        return port

    monkeypatch.setattr(serial_client, "open_serial", open_emulated)
    rc, _, err = bench(capsys, "--target", "rp2040", "--run", run_dir, "--build-dir", rp2040_firmware,
                       "--device", "/dev/null", "--limit", "10", "--targets-dir", relaxed)
    assert rc == 0, err
    rows = {r["label"]: r for r in report(run_dir, "rp2040")["rows"]}
    pico = rows["latency (Pico over serial) @ 125 MHz"]
    assert pico["status"] == "PASS" and "median of 10" in pico["note"]
    assert rows["Pico outputs bit-exact with the host C model"]["status"] == "PASS"
    assert rows["accuracy on the Pico, test split, 10 of 120 images"]["value"] >= 90.0


def test_all_writes_one_summary(run_dir, relaxed, tmp_path, capsys):
    folder = tmp_path / "targets"
    folder.mkdir()
    for name in ("host", "rpi4"):
        shutil.copy(relaxed / f"{name}.toml", folder)
    rc, out, err = bench(capsys, "--all", "--run", run_dir, "--targets-dir", folder, *LIMIT,
                         "--json", tmp_path / "s.json")
    assert rc == 0, err
    summary = (run_dir / "bench" / "summary.md").read_text()
    # rpi4: latency and RAM (not a Pi 4 here), the teacher gap (the fixture has no teacher)
    assert "| host | PASS" in summary and "| rpi4 | PASS (3 not run)" in summary
    assert [t["target"] for t in json.loads((tmp_path / "s.json").read_text())["targets"]] == ["host", "rpi4"]


def test_a_crashing_tool_exits_3_not_1(run_dir, monkeypatch, capsys):
    import benchmarks.run as bench_run

    def crash(ctx, result):
        raise RuntimeError("simulated compiler crash")

    monkeypatch.setattr(bench_run, "_measure", lambda runtime: crash)
    rc, _, err = bench(capsys, "--target", "host", "--run", run_dir)
    assert rc == 3 and "RuntimeError: simulated compiler crash" in err
