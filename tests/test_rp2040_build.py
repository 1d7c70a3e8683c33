"""The firmware build command's user errors: one line on stderr, exit 2, nothing written."""
import subprocess
import sys


def test_missing_model_is_a_one_line_error(tmp_path):
    out = tmp_path / "fw"
    r = subprocess.run([sys.executable, "-m", "export.rp2040.build", "--run", str(tmp_path / "nope"), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "model_int8.tflite" in r.stderr or "toolchain" in r.stderr
    assert not out.exists()


def test_bad_name_is_rejected(tmp_path):
    (tmp_path / "quant").mkdir()
    (tmp_path / "quant" / "model_int8.tflite").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "export.rp2040.build", "--run", str(tmp_path), "--out",
                        str(tmp_path / "fw"), "--fw-name", "../evil"], capture_output=True, text=True)
    assert r.returncode == 2 and ("--fw-name" in r.stderr or "toolchain" in r.stderr)
