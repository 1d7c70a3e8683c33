"""`python -m export`: one-line errors, nothing half-written, and the registry the main CLI uses."""
import subprocess
import sys

from _export_fixture import tiny_run
from edgecore.manifest import record_stage
from export import EXPORTERS


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], capture_output=True, text=True, timeout=300)


def test_registry_has_every_target():
    assert sorted(EXPORTERS) == ["edgetpu", "jetson-nano", "jetson-orin-nano", "openvino", "rpi4"]


def test_missing_run_is_one_line_error(tmp_path):
    res = _cli("--run", str(tmp_path / "nope"), "--target", "rpi4")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope' / 'quant' / 'student_float.onnx'} not found: "
        f"run `python -m compress quantize --run {tmp_path / 'nope'}` first"]
    assert not (tmp_path / "nope").exists()


def test_corrupt_model_keeps_the_previous_export(tmp_path):
    run = tmp_path / "run"
    (run / "quant").mkdir(parents=True)
    (run / "data").symlink_to(tiny_run() / "data")
    for f in ("student_float.onnx", "student_int8_qdq.onnx"):
        (run / "quant" / f).write_bytes((tiny_run() / "quant" / f).read_bytes())
    record_stage(run, "quant", outputs=sorted((run / "quant").glob("*.onnx")))
    assert _cli("--run", str(run), "--target", "rpi4").returncode == 0
    before = sorted(p.name for p in (run / "export" / "rpi4").iterdir())
    (run / "quant" / "student_int8_qdq.onnx").write_bytes(b"not a model")
    record_stage(run, "quant", outputs=sorted((run / "quant").glob("*.onnx")))  # a quantize that wrote a broken model
    res = _cli("--run", str(run), "--target", "rpi4")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: {run / 'quant' / 'student_int8_qdq.onnx'} is not a valid ONNX model")
    assert sorted(p.name for p in (run / "export" / "rpi4").iterdir()) == before
    assert [p.name for p in (run / "export").iterdir()] == ["rpi4"]


def test_unknown_target_is_rejected():
    res = _cli("--target", "pdp11")
    assert res.returncode == 2 and res.stderr.startswith("error: unknown export target 'pdp11'; choose one of: edgetpu,")
