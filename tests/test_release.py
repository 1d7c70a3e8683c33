"""Release bundle and download: built from the exporter tests' tiny run (every target exported, the firmware
built when the ARM toolchain is here, rpi4 benchmarked), every checksum verified, then fetched from a real
HTTP server on 127.0.0.1, including tampered, truncated and path-traversal downloads that must be refused."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from compress import fetch, release
from compress.model_card import render

HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
TARGETS = [t for t in release.TARGETS if HAVE_GCC or t != "rp2040"]
VERSION = "9.9.9"
STEM = f"pizza-edge-{VERSION}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_release(run: Path, out: Path, fw: Path | None, *extra: str) -> int:
    args = ["--run", str(run), "--release-out", str(out), "--version", VERSION, *extra]
    return release.main(args + (["--release-fw-dir", str(fw)] if fw else []))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(run, firmware folder or None, release folder) of a full release of the tiny run."""
    from _export_fixture import tiny_run

    from benchmarks.run import main as bench
    from edgecore.manifest import record_stage
    from compress.quantize import c_array
    from export import EXPORTERS

    root = tmp_path_factory.mktemp("release")
    run = root / "run"
    shutil.copytree(tiny_run(), run)
    header, body = c_array((run / "quant" / "model_int8.tflite").read_bytes())  # what quantize writes beside it
    (run / "quant" / "model_data.h").write_text(header)
    (run / "quant" / "model_data.cc").write_text(body)
    record_stage(run, "quant", outputs=sorted((run / "quant").glob("*.*")))
    for target in TARGETS:
        if target != "rp2040":
            EXPORTERS[target](run, run / "export" / target, calib=16, runs=3)
    fw = None
    if HAVE_GCC:
        from export.rp2040 import build

        fw = root / "fw"
        build.build_firmware(run, build.FirmwareConfig(fw_out=fw, fw_selftest_images=1))
    # 0 or 1 (a budget broken, e.g. the tiny model's camera-shift drop): either way a report the release carries
    assert bench(["--target", "rpi4", "--run", str(run), "--limit", "10"]) in (0, 1)
    assert make_release(run, root / "dist", fw, "--release-targets", ",".join(TARGETS)) == 0
    return run, fw, root / "dist" / STEM


def archive_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


# --- the bundle -------------------------------------------------------------------------------------------------

def test_every_checksum_matches(built):
    _, _, dist = built
    manifest = json.loads((dist / "manifest.json").read_text())
    sums = (dist / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums}
    assert set(listed) == {f"{STEM}-{t}.zip" for t in TARGETS} | {"manifest.json", "MODEL_CARD.md"}
    for name, digest in listed.items():
        assert sha((dist / name).read_bytes()) == digest, name
    if shutil.which("sha256sum"):
        r = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.count(": OK") == len(listed)
    assert list(manifest["targets"]) == sorted(TARGETS)
    for target, section in manifest["targets"].items():
        data = (dist / section["archive"]["name"]).read_bytes()
        assert (sha(data), len(data)) == (section["archive"]["sha256"], section["archive"]["bytes"])
        files = archive_files(dist / section["archive"]["name"])
        assert set(files) == set(section["files"]) and files
        for name, body in files.items():
            assert section["files"][name] == {"sha256": sha(body), "bytes": len(body)}, (target, name)


def test_archives_hold_the_run_artifacts(built):
    run, _, dist = built
    rpi4 = archive_files(dist / f"{STEM}-rpi4.zip")
    assert set(rpi4) == {p.name for p in (run / "export" / "rpi4").iterdir() if p.name != "manifest.json"}
    assert rpi4["model_int8_qdq.onnx"] == (run / "quant" / "student_int8_qdq.onnx").read_bytes()
    openvino = archive_files(dist / f"{STEM}-openvino.zip")
    assert openvino["model_int8.xml"] == (run / "export" / "openvino" / "model_int8.xml").read_bytes()


@pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc is not installed: no firmware to release")
def test_rp2040_archive_holds_the_built_firmware(built):
    run, fw, dist = built
    files = archive_files(dist / f"{STEM}-rp2040.zip")
    assert files["firmware/pizza.uf2"] == (fw / "pizza.uf2").read_bytes()  # byte-identical to the build's .uf2
    assert files["tflm/model_int8.tflite"] == (run / "quant" / "model_int8.tflite").read_bytes()
    assert files["tflm/model_data.cc"] == (run / "quant" / "model_data.cc").read_bytes()
    assert files["c_model/model.c"] == (fw / "gen" / "model.c").read_bytes()
    assert "c_model/nn/nn.h" in files and json.loads(files["model.json"])["classes"] == ["basic", "burnt", "mixed"]
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["tools"]["firmware_compiler"].startswith("GNU C11 ")


def test_same_inputs_give_the_same_bytes(built, tmp_path):
    run, fw, dist = built
    assert make_release(run, tmp_path, fw, "--release-targets", ",".join(TARGETS)) == 0
    assert (tmp_path / STEM / "SHA256SUMS").read_bytes() == (dist / "SHA256SUMS").read_bytes()
    with zipfile.ZipFile(dist / f"{STEM}-rpi4.zip") as z:
        assert {i.date_time for i in z.infolist()} == {release.ZIP_DATE}
        assert [i.filename for i in z.infolist()] == sorted(i.filename for i in z.infolist())


def test_manifest_records_model_budgets_and_measurements(built):
    run, _, dist = built
    m = json.loads((dist / "manifest.json").read_text())
    assert (m["name"], m["version"], m["format"]) == ("pizza-edge", VERSION, fetch.FORMAT)
    assert m["model"]["classes"] == ["basic", "burnt", "mixed"]
    q = m["model"]["input"]["int8"]
    assert (q["zero_point"], round(1 / q["scale"])) == (-128, 255)
    assert (m["model"]["input"]["height"], m["model"]["input"]["width"]) == (32, 32)
    assert m["seed"] == 0 and len(m["git"]["commit"]) == 40 and m["tools"]["onnx"]
    report = json.loads((run / "bench" / "rpi4" / "report.json").read_text())
    rpi4 = m["targets"]["rpi4"]
    assert rpi4["budgets"] == report["budgets"] and rpi4["benchmark"]["verdict"] == report["verdict"]
    assert [r["value"] for r in rpi4["benchmark"]["rows"]] == [r["value"] for r in report["rows"]]
    openvino = m["targets"]["openvino"]["benchmark"]
    assert openvino["verdict"] == "not run: no benchmark report" and openvino["rows"] == []
    assert "benchmarks.run --target openvino" in openvino["note"]
    card = (dist / "MODEL_CARD.md").read_text()
    assert f"| rpi4 | {report['verdict'].split()[0]}" in card and "| openvino | not run: no benchmark report" in card
    assert "not recorded as procedural" in card  # the fixture's data set is neither procedural nor a user's


def test_model_card_says_which_data_trained_it(built):
    m = json.loads((built[2] / "manifest.json").read_text())
    m["data"]["source"] = {"kind": "procedural", "seed": 0, "generator_version": 3}
    assert "Trained and tested on procedurally generated images" in render(m)
    m["data"]["source"] = {"kind": "imagefolder", "root": "/photos"}
    assert "user's own photos (ImageFolder `/photos`" in render(m)


def _one_line_error(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_missing_and_stale_inputs_name_the_command(built, tmp_path, capsys):
    run, fw, _ = built
    bare = tmp_path / "run"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("export", "bench"))
    rc = make_release(bare, tmp_path / "dist", fw, "--release-targets", "openvino")
    _one_line_error(capsys, rc, f"python -m compress export --run {bare} --target openvino")
    rc = make_release(tmp_path / "nope", tmp_path / "dist", fw)
    _one_line_error(capsys, rc, "python -m compress all")
    (bare / "firmware" / "manifest.json").unlink(missing_ok=True)
    rc = make_release(bare, tmp_path / "dist", None, "--release-targets", "rp2040")
    _one_line_error(capsys, rc, "python -m export.rp2040.build")
    assert not (tmp_path / "dist").exists()

    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    (stale / "quant" / "student_float.onnx").write_bytes(b"another model")
    rc = make_release(stale, tmp_path / "dist", fw, "--release-targets", "jetson-nano")
    _one_line_error(capsys, rc, "was built from another quant/student_float.onnx", "--target jetson-nano")


def test_a_report_older_than_the_artifacts_is_not_used(built, tmp_path):
    from edgecore.manifest import record_stage
    from export import EXPORTERS

    run, fw, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    EXPORTERS["rpi4"](copy, copy / "export" / "rpi4", runs=3)  # newer than R/bench/rpi4/report.json
    stages = json.loads((copy / "manifest.json").read_text())["stages"]
    report = json.loads((copy / "bench" / "rpi4" / "report.json").read_text())
    if report["created"] >= stages["export/rpi4"]["finished"]:
        report["created"] = "2000-01-01T00:00:00+00:00"  # same second: make the report visibly older
        (copy / "bench" / "rpi4" / "report.json").write_text(json.dumps(report))
        record_stage(copy, "bench/rpi4", outputs=sorted((copy / "bench" / "rpi4").glob("*.*")))
    assert make_release(copy, tmp_path / "dist", fw, "--release-targets", "rpi4") == 0
    m = json.loads((tmp_path / "dist" / STEM / "manifest.json").read_text())
    assert m["targets"]["rpi4"]["benchmark"]["verdict"] == "not run: the benchmark report predates the artifacts"


# --- downloads --------------------------------------------------------------------------------------------------

class Server:
    """http.server on 127.0.0.1 (port 0) serving a folder; `bodies` overrides a path with (body, Content-Length)."""

    def __init__(self, folder: Path):
        self.bodies: dict[str, tuple[bytes, int]] = {}
        bodies = self.bodies

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def do_GET(self):
                if self.path in bodies:
                    body, length = bodies[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(built, tmp_path):
    """A private copy of the release (tests tamper with it) behind a real HTTP server."""
    folder = tmp_path / "served"
    shutil.copytree(built[2], folder)
    server = Server(folder)
    yield server, folder
    server.close()


def fetch_cli(*args) -> int:
    return fetch.main([str(a) for a in args])


def nothing_left(dest: Path) -> bool:
    return not dest.exists() and list(dest.parent.iterdir()) == []


def test_download_over_http_verifies_and_unpacks(built, served, tmp_path, capsys):
    server, folder = served
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    assert fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest) == 0
    assert "verified 5 files" in capsys.readouterr().out  # model, model.json, README, runner, preprocessing
    m = json.loads((folder / "manifest.json").read_text())
    got = {p.relative_to(dest).as_posix(): sha(p.read_bytes()) for p in dest.rglob("*")
           if p.is_file() and p.name != fetch.MARKER}
    assert got == {n: f["sha256"] for n, f in m["targets"]["rpi4"]["files"].items()}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rpi4"]  # no temp files beside it
    rc = fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest)
    _one_line_error(capsys, rc, "already exists")
    assert fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest, "--force") == 0
    if HAVE_GCC:
        fw_dest = tmp_path / "get" / "rp2040"
        assert fetch_cli("--from", server.url, "--target", "rp2040", "--dest", fw_dest) == 0
        assert (fw_dest / "firmware" / "pizza.uf2").read_bytes() == (built[1] / "pizza.uf2").read_bytes()


def test_download_from_a_local_folder_and_list(served, tmp_path, capsys):
    _, folder = served
    dest = tmp_path / "get" / "ov"
    assert fetch_cli("--from", folder, "--target", "openvino", "--dest", dest) == 0
    assert (dest / "model_int8.xml").read_bytes() == archive_files(folder / f"{STEM}-openvino.zip")["model_int8.xml"]
    assert fetch_cli("--from", folder, "--list") == 0
    assert "rpi4" in capsys.readouterr().out


def test_tampered_archive_is_refused_and_removed(served, tmp_path, capsys):
    server, folder = served
    archive = folder / f"{STEM}-rpi4.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest), "sha256 mismatch")
    assert nothing_left(dest)


def test_truncated_download_is_refused_and_removed(served, tmp_path, capsys):
    server, folder = served
    name = f"{STEM}-rpi4.zip"
    data = (folder / name).read_bytes()
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    server.bodies[f"/{name}"] = (data[: len(data) // 2], len(data))  # the connection drops mid-body
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest), "truncated")
    assert nothing_left(dest)
    server.bodies[f"/{name}"] = (data[:100], 100)  # a short body that is honest about its length
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest),
                    f"is 100 bytes, the manifest says {len(data):,}")
    assert nothing_left(dest)


def _repack(folder: Path, target: str, files: dict[str, bytes], manifest_files: dict | None = None) -> None:
    """Replace a target's archive and make the manifest agree with the archive (but, unless given, not with
    the files in it): what an attacker who can edit both the zip and its checksum would serve."""
    name = f"{STEM}-{target}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, body in files.items():
            z.writestr(n, body)
    (folder / name).write_bytes(buf.getvalue())
    m = json.loads((folder / "manifest.json").read_text())
    m["targets"][target]["archive"].update(sha256=sha(buf.getvalue()), bytes=len(buf.getvalue()))
    if manifest_files is not None:
        m["targets"][target]["files"] = manifest_files
    (folder / "manifest.json").write_text(json.dumps(m))


def test_tampered_file_inside_the_archive_is_refused(served, tmp_path, capsys):
    server, folder = served
    files = archive_files(folder / f"{STEM}-rpi4.zip")
    files["model.json"] = files["model.json"].replace(b"basic", b"BASIC")
    _repack(folder, "rpi4", files)
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest),
                    "sha256 mismatch for model.json in the archive")
    assert nothing_left(dest)


def test_zip_path_traversal_is_refused(served, tmp_path, capsys):
    server, folder = served
    evil = b"owned"
    entry = {"sha256": sha(evil), "bytes": len(evil)}
    dest = tmp_path / "get" / "rpi4"
    dest.parent.mkdir()
    _repack(folder, "rpi4", {"../evil.txt": evil}, {"ok.txt": entry})  # the manifest looks harmless
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest), "unsafe path")
    _repack(folder, "rpi4", {"../evil.txt": evil}, {"../evil.txt": entry})  # both name the escape
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest), "unsafe path")
    assert nothing_left(dest) and not (tmp_path / "evil.txt").exists()


def test_bad_sources_are_one_line_errors(served, tmp_path, capsys):
    server, folder = served
    dest = tmp_path / "get" / "x"
    _one_line_error(capsys, fetch_cli("--from", server.url + "/nowhere", "--target", "rpi4", "--dest", dest),
                    "HTTP 404")
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "nano", "--dest", dest),
                    "not in this release")
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "rpi4", "--dest", dest,
                                      "--manifest-sha256", "0" * 64), "--manifest-sha256")
    (folder / f"{STEM}-edgetpu.zip").unlink()
    _one_line_error(capsys, fetch_cli("--from", server.url, "--target", "edgetpu", "--dest", dest), "HTTP 404")
    _one_line_error(capsys, fetch_cli("--from", "ftp://example.org/x", "--target", "rpi4", "--dest", dest),
                    "unsupported source")
    assert not dest.exists()


def test_cli_help_and_exit_status(served, tmp_path):
    server, _ = served
    for module in ("compress.release", "compress.fetch"):
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "compress.fetch", "--from", server.url + "/missing", "--target",
                        "rpi4", "--dest", str(tmp_path / "d")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "HTTP 404" in r.stderr
