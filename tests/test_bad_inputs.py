"""Bad inputs to every command that reads a user file: each is refused with one `error:` line on stderr
(no traceback), a non-zero exit and nothing half-written -- or, where the input is usable (greyscale,
16-bit, huge-but-sane images), accepted and converted the documented way."""
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([PY, "-m", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_refused(r, match: str, *must_not_exist: Path):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert match.lower() in errors[0].lower(), errors[0]
    for p in must_not_exist:
        assert not p.exists(), f"{p} was written although the command failed"
        leftovers = list(p.parent.glob(f".{p.name}.*")) if p.parent.exists() else []
        assert not leftovers, leftovers


# --- images (the data stage on a user's ImageFolder) ----------------------------------------------------

def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def _rgb(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _huge_png_header(path: Path, side: int = 30000) -> Path:
    """A valid PNG signature and IHDR claiming side x side pixels (a decompression bomb), without the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _bad_image(kind: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated-jpeg":
        Image.fromarray(_rgb(1, 64)).save(path.with_suffix(".jpg"))
        data = path.with_suffix(".jpg").read_bytes()
        path.with_suffix(".jpg").unlink()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif kind == "bomb":
        _huge_png_header(path)
    elif kind == "text-named-png":
        path.write_text("not an image\n")
    return path


BAD_IMAGES = ["zero-byte", "truncated-jpeg", "random-bytes", "bomb", "text-named-png"]


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_class_with_only_unusable_images_is_refused(tmp_path, kind):
    data, run = tmp_path / "photos", tmp_path / "run"
    _png(data / "good" / "a.png", _rgb(0))
    _bad_image(kind, data / "broken" / ("x.jpg" if kind == "truncated-jpeg" else "x.png"))
    r = cli("compress", "data", "--run", run, "--data", data)
    assert_refused(r, "class 'broken'", run / "data" / "dataset.json")


def test_unusable_images_are_skipped_with_a_warning_each(tmp_path):
    data, run = tmp_path / "photos", tmp_path / "run"
    for c in ("a", "b"):
        for i in range(3):
            _png(data / c / f"ok{i}.png", _rgb(i + (10 if c == "b" else 0)))
    bad = [_bad_image(k, data / "a" / f"bad-{k}.{'jpg' if k == 'truncated-jpeg' else 'png'}") for k in BAD_IMAGES]
    r = cli("compress", "data", "--run", run, "--data", data, "--labeled-per-class", "all")
    assert r.returncode == 0, r.stderr[-2000:]
    for p in bad:
        assert f"skipping unreadable image {p.resolve()}" in r.stderr
    d = json.loads((run / "data" / "dataset.json").read_text())
    assert len(d["items"]) == 6 and d["source"]["skipped_unreadable"] == len(bad)


def test_greyscale_16bit_palette_alpha_and_large_images_are_converted(tmp_path):
    from compress.data import load_images

    data, run = tmp_path / "photos", tmp_path / "run"
    ramp16 = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    files = {
        "grey": _png(data / "a" / "grey.png", np.full((16, 16), 77, np.uint8), "L"),
        "16bit": _png(data / "a" / "sixteen.png", ramp16),  # PIL writes a 16-bit greyscale PNG
        "rgba": _png(data / "b" / "rgba.png", np.dstack([_rgb(3), np.full((16, 16), 9, np.uint8)]), "RGBA"),
        "palette": data / "b" / "pal.png",
        "large": data / "b" / "large.jpg",
    }
    Image.fromarray(_rgb(4)).convert("P").save(files["palette"])
    Image.fromarray(np.full((3000, 4000, 3), 200, np.uint8)).save(files["large"], quality=90)
    assert Image.open(files["16bit"]).mode.startswith("I")
    r = cli("compress", "data", "--run", run, "--data", data, "--data-val-frac", "0", "--data-test-frac", "0",
            "--labeled-per-class", "all")
    assert r.returncode == 0, r.stderr[-2000:]
    items = {Path(it["path"]).name: it for it in json.loads((run / "data" / "dataset.json").read_text())["items"]}
    assert len(items) == 5
    x = {k: load_images(run, [items[p.name]], 16)[0] for k, p in files.items()}
    assert (x["grey"] == 77).all()
    # 16-bit is scaled to 8 bits, not clipped: 0 -> 0, 65535 -> 255, monotone in between.
    assert x["16bit"][0, 0].tolist() == [0, 0, 0] and x["16bit"][0, -1].tolist() == [255, 255, 255]
    assert (np.diff(x["16bit"][0, :, 0].astype(int)) >= 0).all()
    assert x["rgba"].shape == (16, 16, 3) and (x["rgba"] == _rgb(3)).all()  # alpha dropped, colour kept
    assert abs(int(x["large"].mean()) - 200) <= 2  # 12 MP decoded and resized


@pytest.mark.parametrize("case", ["missing", "a-file", "empty", "no-class-folders", "classes-mismatch",
                                  "duplicate-classes", "fractions"])
def test_wrong_data_folders_are_refused(tmp_path, case):
    data, run = tmp_path / "photos", tmp_path / "run"
    extra = []
    if case == "missing":
        pass
    elif case == "a-file":
        data.write_bytes(b"x")
    elif case == "empty":
        data.mkdir()
    elif case == "no-class-folders":
        _png(data / "loose.png", _rgb(0))
    else:
        for c in ("cats", "dogs"):
            _png(data / c / "a.png", _rgb(len(c)))
        extra = {"classes-mismatch": ["--classes", "cats,birds"], "duplicate-classes": ["--classes", "cats,cats"],
                 "fractions": ["--data-val-frac", "0.6", "--data-test-frac", "0.5"]}.get(case, [])
    match = {"missing": "not found", "a-file": "must be a folder", "empty": "is empty",
             "no-class-folders": "no class subfolders", "classes-mismatch": "missing ['birds']",
             "duplicate-classes": "distinct", "fractions": "sum to less than 1"}[case]
    r = cli("compress", "data", "--run", run, "--data", data, *extra)
    assert_refused(r, match, run / "data" / "dataset.json")


@pytest.mark.parametrize("stage", ["data", "all"])
def test_unwritable_output_folder_is_refused(tmp_path, stage):
    """Tests run as root, where permission bits do not stop writes: a run folder under a regular file cannot be
    created by anyone."""
    _png(tmp_path / "photos" / "cats" / "a.png", _rgb(1))
    _png(tmp_path / "photos" / "dogs" / "a.png", _rgb(2))
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    r = cli("compress", stage, "--run", blocker / "run", "--data", tmp_path / "photos")
    assert_refused(r, "cannot create output folder")
    assert blocker.read_bytes() == b"x"


# --- corrupted model files --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quant_run(tmp_path_factory):
    from _export_fixture import tiny_run

    run = tmp_path_factory.mktemp("bad") / "run"
    shutil.copytree(tiny_run(), run)
    return run


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "zero-byte":
        return b""
    if how == "truncated":
        return data[:len(data) // 2]
    if how == "header-flip":
        b = bytearray(data)
        if data[4:8] == b"TFL3":
            b[5] ^= 0x20  # the .tflite file identifier
        else:
            b[0] ^= 0x07  # the first protobuf tag of an .onnx: an invalid wire type
        return bytes(b)
    raise ValueError(how)


CORRUPTIONS = ["zero-byte", "truncated", "header-flip"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_rp2040_compiler_refuses_a_corrupted_tflite(quant_run, tmp_path, how):
    bad = tmp_path / "m.tflite"
    bad.write_bytes(_corrupt((quant_run / "quant" / "model_int8.tflite").read_bytes(), how))
    out = tmp_path / "gen"
    r = cli("export.rp2040.compile", "--tflite", bad, "--out", out)
    assert_refused(r, str(bad), out / "model.c", out / "model.h")


def test_every_bit_flip_of_a_tflite_is_compiled_or_refused_cleanly(quant_run, tmp_path):
    """No checksum in a .tflite: flips in weight bytes compile (and change the weights); flips in the structure
    must be refused as a UserError, never crash the compiler or leave half a model behind."""
    from edgecore.errors import UserError
    from export.rp2040 import compile as compiler

    buf = (quant_run / "quant" / "model_int8.tflite").read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for k in range(200):
        b = bytearray(buf)
        b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        (tmp_path / "m.tflite").write_bytes(bytes(b))
        out = tmp_path / f"gen{k}"
        try:
            compiler.compile_file(tmp_path / "m.tflite", out)
            assert (out / "model.c").read_text().rstrip().endswith("}")
        except UserError as e:
            refused += 1
            assert "\n" not in str(e) and not out.exists()
    assert refused > 0
    for n in range(8, len(buf), max(1, len(buf) // 150)):  # every truncation point, ~150 of them
        (tmp_path / "m.tflite").write_bytes(buf[:n])
        with pytest.raises(UserError):
            compiler.compile_file(tmp_path / "m.tflite", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_float_tflite_and_unsupported_op_are_refused_by_name(tmp_path):
    import tensorflow as tf

    from _tflite_fixture import keras_model, to_int8_tflite

    m = keras_model((8, 8, 3), lambda x: tf.keras.layers.Dense(2)(tf.keras.layers.Flatten()(x)))
    (tmp_path / "float.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    r = cli("export.rp2040.compile", "--tflite", tmp_path / "float.tflite", "--out", tmp_path / "g1")
    assert_refused(r, "float32", tmp_path / "g1" / "model.c")
    m = keras_model((8, 8, 3), lambda x: tf.keras.layers.Flatten()(tf.keras.layers.MaxPooling2D(2)(x)))
    (tmp_path / "maxpool.tflite").write_bytes(to_int8_tflite(m, (8, 8, 3)))
    r = cli("export.rp2040.compile", "--tflite", tmp_path / "maxpool.tflite", "--out", tmp_path / "g2")
    assert_refused(r, "unsupported op MAX_POOL_2D", tmp_path / "g2" / "model.c")


@pytest.mark.parametrize("target, file, how", [
    ("rpi4", "student_int8_qdq.onnx", "zero-byte"), ("rpi4", "student_int8_qdq.onnx", "truncated"),
    ("rpi4", "student_int8_qdq.onnx", "header-flip"), ("jetson-nano", "student_float.onnx", "truncated"),
    ("edgetpu", "model_int8.tflite", "truncated"), ("edgetpu", "model_int8.tflite", "header-flip")])
def test_exporters_refuse_a_corrupted_model(quant_run, tmp_path, target, file, how):
    run = tmp_path / "run"
    shutil.copytree(quant_run, run)
    (run / "quant" / file).write_bytes(_corrupt((quant_run / "quant" / file).read_bytes(), how))
    r = cli("export", "--run", run, "--target", target, "--runs", "1")
    assert_refused(r, file, run / "export" / target)


@pytest.mark.parametrize("how", ["zero-byte", "truncated"])
def test_benchmark_refuses_a_corrupted_model(quant_run, tmp_path, how):
    run = tmp_path / "run"
    shutil.copytree(quant_run, run)
    f = run / "quant" / "student_int8_qdq.onnx"
    f.write_bytes(_corrupt(f.read_bytes(), how))
    r = cli("benchmarks.run", "--target", "rpi4", "--run", run, "--limit", "4")
    assert_refused(r, "student_int8_qdq.onnx", run / "bench" / "rpi4" / "report.json")


# --- .uf2 ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uf2_file(tmp_path_factory):
    from export.rp2040.uf2 import write_uf2

    p = tmp_path_factory.mktemp("uf2") / "fw.uf2"
    p.write_bytes(write_uf2(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()))
    return p


@pytest.mark.parametrize("how, offset, match", [
    ("zero-byte", None, "uf2"), ("truncated", None, "uf2"),
    ("flip", 0, "bad magic"), ("flip", 512 + 508, "bad magic"), ("flip", 512 + 28, "family id"),
    ("flip", 512 + 20, "out of sequence"), ("flip", 24, "blocks but the file holds"),
    ("flip", 512 + 12 + 3, "outside the 2 MB flash"), ("flip", 16, "payload of")])
def test_uf2_check_refuses_corruption(uf2_file, tmp_path, how, offset, match):
    data = bytearray(uf2_file.read_bytes())
    if how == "zero-byte":
        data = bytearray()
    elif how == "truncated":
        data = data[:700]
    else:
        data[offset] ^= 0x01 if offset not in (512 + 12 + 3,) else 0x40
    bad = tmp_path / "bad.uf2"
    bad.write_bytes(bytes(data))
    assert_refused(cli("export.rp2040.uf2", "check", bad), match)


def test_uf2_payload_flip_is_not_detectable(uf2_file, tmp_path):
    """UF2 has no checksum: a flipped payload byte passes `check` (the manifest's sha256 is what catches it)."""
    data = bytearray(uf2_file.read_bytes())
    data[32 + 100] ^= 0x01
    (tmp_path / "f.uf2").write_bytes(bytes(data))
    assert cli("export.rp2040.uf2", "check", tmp_path / "f.uf2").returncode == 0


# --- target files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, match", [
    (lambda t: t + "\nflash_typo = 3\n", "unknown key 'budgets.flash_typo'"),
    (lambda t: t.replace("[device]", "colour = \"red\"\n[device]"), "unknown key 'colour'"),
    (lambda t: t.replace("latency_ms = 20.0", "latency_ms = -5.0"), "must be positive"),
    (lambda t: t.replace("min_accuracy_pct = 95.0", "min_accuracy_pct = 120.0"), "within 0..100"),
    (lambda t: t.replace("ram_bytes = 134217728 ", "ram_bytes = 999999999999 "), "exceeds"),
    (lambda t: t.replace("latency_ms = 20.0", "latency_ms = \"fast\""), "must be"),
    (lambda t: t.replace("[budgets]", "[budgets"), "invalid TOML"),
])
def test_bad_target_files_are_refused(tmp_path, edit, match):
    targets = tmp_path / "targets"
    targets.mkdir()
    text = (ROOT / "targets" / "rpi4.toml").read_text()
    assert edit(text) != text
    (targets / "rpi4.toml").write_text(edit(text))
    r = cli("benchmarks.run", "--target", "rpi4", "--targets-dir", targets, "--run", tmp_path / "run",
            "--json", tmp_path / "out.json")
    assert_refused(r, match, tmp_path / "out.json")
