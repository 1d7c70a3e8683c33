"""Adding a device of an existing runtime is adding one TOML file: a Jetson AGX Orin written into a copy of
targets/ is exported (TensorRT INT8 from its `precision`), benchmarked and listed, with no code change."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _export_fixture import tiny_run
from edgecore.errors import UserError
from edgecore.targets import DEFAULT_TARGETS_DIR, device_limits
from export import ExportConfig, export_target, exportable

AGX_ORIN = """\
name = "jetson-agx-orin"
description = "NVIDIA Jetson AGX Orin (64 GB, 2048-core Ampere): TensorRT INT8 engine from Q/DQ ONNX"
family = "jetson"
runtime = "tensorrt"
precision = "int8"
artifacts = ["onnx_float", "onnx_int8_qdq", "trt_engine"]

[device]
cpu = "12x Cortex-A78AE + 2048-core Ampere GPU"
ram_bytes = 68719476736
clock_hz = 1300000000

[detect]
device_tree_model = "Jetson AGX Orin"

[budgets]
model_bytes = 8388608
latency_ms = 1.0
"""


@pytest.fixture()
def targets(tmp_path) -> Path:
    folder = tmp_path / "targets"
    shutil.copytree(DEFAULT_TARGETS_DIR, folder, ignore=shutil.ignore_patterns("*.md"))
    return folder


@pytest.fixture()
def run(tmp_path) -> Path:
    """The shared exporter fixture's files, in a run folder of this test's own (exports are written into it)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run, ignore=shutil.ignore_patterns("export", "bench", ".lock"))
    return run


def test_a_new_tensorrt_device_is_one_toml_file(targets, run):
    assert "jetson-agx-orin" not in exportable(targets)
    (targets / "jetson-agx-orin.toml").write_text(AGX_ORIN)
    assert "jetson-agx-orin" in exportable(targets)

    # The harness finds no export and builds it from the file's own folder (python -m export --targets-dir).
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--target", "jetson-agx-orin", "--run", str(run),
                          "--targets-dir", str(targets)], capture_output=True, text=True, timeout=600)
    assert res.returncode in (0, 1), res.stderr  # 1: a budget broken (the tiny model), never a usage error
    report = json.loads((run / "bench" / "jetson-agx-orin" / "report.json").read_text())
    assert report["target"] == "jetson-agx-orin"
    out = run / "export" / "jetson-agx-orin"
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["precision"] == "int8" and sidecar["model"] == "model_int8_qdq_b1.onnx"
    assert (out / "trt_engine.py").is_file()
    assert "export/jetson-agx-orin" in json.loads((run / "manifest.json").read_text())["stages"]


def test_the_precision_comes_from_the_file(targets, run):
    (targets / "jetson-agx-orin.toml").write_text(AGX_ORIN.replace('precision = "int8"', 'precision = "fp16"'))
    metrics = export_target(run, ExportConfig(target="jetson-agx-orin", targets_dir=targets, runs=3))
    sidecar = json.loads((run / "export" / "jetson-agx-orin" / "model.json").read_text())
    assert sidecar["precision"] == "fp16" and sidecar["model"] == "model_fp32_b1.onnx"
    assert any(k.startswith("jetson_agx_orin_fp16_onnxruntime_") for k in metrics)


def test_a_precision_the_runtime_cannot_build_is_one_line(targets, run):
    (targets / "pi5.toml").write_text(
        (targets / "rpi4.toml").read_text().replace('name = "rpi4"', 'name = "pi5"').replace(
            'precision = "int8"', 'precision = "fp16"'))
    with pytest.raises(UserError, match=r"pi5.toml: the onnxruntime exporter builds int8, not precision 'fp16'"):
        export_target(run, ExportConfig(target="pi5", targets_dir=targets))


def test_host_and_firmware_targets_are_not_exported():
    assert {"host", "rp2040"}.isdisjoint(exportable())
    with pytest.raises(UserError, match="unknown export target 'host'"):
        export_target(Path("unused"), ExportConfig(target="host"))


def test_rp2040_memory_limits_come_from_its_target_file():
    from export.rp2040 import build, uf2

    assert uf2.FLASH_BYTES == device_limits("rp2040")["flash_bytes"] == 2 * 1024 * 1024
    assert build.SRAM_BYTES == device_limits("rp2040")["ram_bytes"] == 264 * 1024
