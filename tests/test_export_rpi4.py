"""Raspberry Pi 4 export: INT8 QDQ ONNX in onnxruntime, and the one-file runner with only three deps."""
import ast
import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from _export_fixture import tiny_run
from export import EXPORTERS
from export.targets_common import ort_session
from edgecore.preprocess import to_float_nchw

RUNNER_DEPS = {"onnxruntime", "numpy", "PIL"}


@pytest.fixture(scope="module")
def rpi4(tmp_path_factory):
    out = tmp_path_factory.mktemp("rpi4")
    return out, EXPORTERS["rpi4"](tiny_run(), out)


def test_int8_model_agrees_with_float_student(rpi4):
    out, m = rpi4
    assert m["rpi4_qdq_per_channel"] is True and m["rpi4_qdq_compute_nodes"] == 3
    assert m["rpi4_int8_agreement"] >= 0.98
    assert m["rpi4_host_latency_ms"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.json", "model_int8_qdq.onnx",
                                                     "pizza_preprocess.py", "run_rpi4.py"]


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return mods - set(sys.stdlib_module_names)


def test_runner_imports_only_its_three_deps(rpi4):
    assert _third_party_imports(rpi4[0] / "run_rpi4.py") == RUNNER_DEPS | {"pizza_preprocess"}
    assert _third_party_imports(rpi4[0] / "pizza_preprocess.py") == {"numpy"}


def _check_runner(python, out: Path):
    from PIL import Image

    img_path = tiny_run() / "data" / "images" / "burnt" / "test_000.png"
    res = subprocess.run([python, str(out / "run_rpi4.py"), str(img_path), "--runs", "5", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(res.stdout)
    x = to_float_nchw(np.asarray(Image.open(img_path).convert("RGB"))[None])
    sess = ort_session(out / "model_int8_qdq.onnx")
    expected = ["basic", "burnt", "mixed"][int(sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax())]
    assert result["class"] == expected == "burnt"
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4 and result["latency_ms_median"] > 0
    bad = subprocess.run([python, str(out / "run_rpi4.py"), str(out / "model.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read image") and "Traceback" not in bad.stderr


def test_runner_classifies_an_image(rpi4):
    _check_runner(sys.executable, rpi4[0])


@pytest.mark.e2e
def test_runner_in_clean_venv_with_only_its_deps(rpi4):
    """pip needs ~40 s here, so this is an e2e test; the venv is reused if it holds nothing else."""
    env = Path("/tmp/rpi4venv")
    py = env / "bin" / "python"
    if not py.exists():
        venv.create(env, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"], check=True,
                       timeout=600)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    # onnxruntime's own requirements are allowed; nothing from the project (torch, tensorflow, onnx...).
    assert {"onnxruntime", "numpy", "pillow"} <= names
    assert not names & {"torch", "tensorflow-cpu", "onnx", "openvino", "pizza-edge"}
    _check_runner(str(py), rpi4[0])
