"""`python -m compress.release`: pack one run's per-target artifacts into dist/<name>-<version>/.

Writes one deterministic zip per target (fixed timestamps, permissions and order, so the same inputs give
the same bytes), manifest.json (model, input spec, per-target files with sha256, budgets, measured results),
MODEL_CARD.md and SHA256SUMS (`sha256sum -c SHA256SUMS`). Nothing is rebuilt here: a missing or stale input
is a one-line error naming the command that builds it."""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edgecore import preprocess
from edgecore.config import from_args
from edgecore.errors import UserError, one_line_errors
from .fetch import FORMAT, NAME_RE, safe_name
from edgecore.io import (read_bytes, read_json, sha256_bytes, sha256_file, write_bytes_atomic, write_json_atomic,
                 write_text_atomic)
from edgecore.manifest import run_lock, run_stages, verify_inputs
from edgecore.targets import DEFAULT_TARGETS_DIR, load_all
from edgecore.tflite_graph import describe_model
from export import exportable
from export.targets_common import model_json, staging

from .data import load_dataset
from .model_card import render

DIST = "pizza-edge"
# The RP2040 firmware, then every target file `export` writes artifacts for (a new device's TOML joins here).
TARGETS = ("rp2040", *exportable())
REPO_ROOT = Path(__file__).resolve().parent.parent
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold: no build time leaks into the bytes


@dataclass(frozen=True)
class ReleaseConfig:
    """Options of the release (`python -m compress.release --help`)."""
    release_out: Path = Path("dist")
    release_name: str = DIST
    release_version: str | None = None      # default: the installed package's version
    release_targets: str = ",".join(TARGETS)
    release_fw_dir: Path | None = None      # default: where R/firmware/manifest.json says the .uf2 was built


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ReleaseConfig()
    g = p.add_argument_group("release")
    g.add_argument("--release-out", type=Path, default=d.release_out,
                   help="folder that receives <name>-<version>/ (default: dist)")
    g.add_argument("--release-name", default=d.release_name, help=f"release name (default: {DIST})")
    g.add_argument("--release-version", "--version", dest="release_version",
                   help=f"release version (default: the installed {DIST} package's version from pyproject.toml)")
    g.add_argument("--release-targets", default=d.release_targets,
                   help=f"comma-separated targets to pack (default: {','.join(TARGETS)})")
    g.add_argument("--release-fw-dir", type=Path,
                   help="rp2040 firmware folder (default: where R/firmware/manifest.json says the .uf2 was built)")


# --- collecting each target's files ---------------------------------------------------------------------------

def _need(path: Path, command: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path} not found: run `{command}` first")
    return path


def _stage_fresh(run: Path, stage_dir: Path, command: str) -> dict:
    """A stage's manifest, checked to have been built from the files that are in the run folder now."""
    doc = read_json(_need(stage_dir / "manifest.json", command), "stage manifest")
    records = (doc.get("inputs"), doc.get("outputs"))
    if not all(isinstance(r, dict) and all(isinstance(m, dict) for m in r.values()) for r in records):
        raise UserError(f"{stage_dir / 'manifest.json'} is malformed: run `{command}` again")
    for rel, meta in doc["inputs"].items():
        src = run / rel
        if not src.is_file() or sha256_file(src) != meta.get("sha256"):
            raise UserError(f"{stage_dir} was built from another {rel}: run `{command}` again")
    return doc


def _packed(path: Path, meta: dict | None, stage: str, command: str) -> bytes:
    """The bytes of a file the release will vouch for: exactly what `stage` recorded writing, nothing else."""
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not among the files the {stage} stage recorded: run `{command}` again")
    if not path.exists():
        raise UserError(f"{path} not found: run `{command}` again")
    data = read_bytes(path)
    if sha256_bytes(data) != meta.get("sha256"):
        raise UserError(f"{path} changed after the {stage} stage wrote it (sha256 differs from its manifest): "
                        f"run `{command}` again")
    return data


def _fw_files(run: Path, fw_dir: Path | None) -> tuple[Path, dict[str, bytes]]:
    """(uf2, {path relative to the firmware folder: bytes}) of the firmware built from this run's model, each
    file checked against the firmware manifest; `fw_dir` stands in for the folder the build recorded."""
    command = f"python -m export.rp2040.build --run {run} --out {fw_dir or 'build/rp2040'}"
    doc = _stage_fresh(run, run / "firmware", command)
    outputs = doc.get("outputs", {})
    uf2s = [rel for rel in outputs if rel.endswith(".uf2")]
    if not uf2s:
        raise UserError(f"{run / 'firmware' / 'manifest.json'} lists no .uf2: run `{command}` again")
    built = (run / uf2s[0]).parent
    folder = fw_dir or built
    recorded = {Path(os.path.relpath(run / rel, built)).as_posix(): meta for rel, meta in outputs.items()}
    uf2 = folder / Path(uf2s[0]).name
    names = [uf2.name, uf2.with_suffix(".size.json").name, "gen/model.c", "gen/model.h", "gen/model_plan.json"]
    return uf2, {n: _packed(folder / n, recorded.get(n), "firmware", command) for n in names}


def _rp2040_files(run: Path, fw_dir: Path | None, classes: list, input_spec: dict) -> dict[str, bytes]:
    quantize = f"python -m compress quantize --run {run}"
    uf2, built = _fw_files(run, fw_dir)
    files = {f"firmware/{name}": data for name, data in built.items() if not name.startswith("gen/")}
    files.update({f"c_model/{name[4:]}": data for name, data in built.items() if name.startswith("gen/")})
    tflm = [_need(run / "quant" / name, quantize) for name in ("model_int8.tflite", "model_data.h", "model_data.cc")]
    verify_inputs(run, "quant", tflm, quantize)
    files.update({f"tflm/{p.name}": read_bytes(p) for p in tflm})
    rebuild = f"python -m export.rp2040.build --run {run} --out {uf2.parent}"
    # The kernels are repository sources, not run outputs: a kernel edited after the build is caught by time.
    kernels = sorted((REPO_ROOT / "firmware" / "nn").glob("*.[ch]"))
    newer = [p.name for p in kernels if p.stat().st_mtime > uf2.stat().st_mtime]
    if newer:
        raise UserError(f"{', '.join(newer)} changed after {uf2} was built: run `{rebuild}` again")
    for src in kernels:
        files[f"c_model/nn/{src.name}"] = src.read_bytes()
    files["README.md"] = (REPO_ROOT / "firmware" / "rp2040" / "README.md").read_bytes()
    sidecar = model_json(classes, (input_spec["height"], input_spec["width"]), layout="NHWC", input_dtype="int8",
                         output="int8 softmax scores (scale 1/256, zero point -128); argmax = class",
                         extra={"model": "c_model/model.c", "firmware": f"firmware/{uf2.name}"})
    files["model.json"] = (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode()
    return files


def _export_files(run: Path, target: str) -> dict[str, bytes]:
    """Exactly the files the exporter recorded writing, each with the bytes it recorded: a file edited, added or
    removed since is refused."""
    folder = run / "export" / target
    command = f"python -m compress export --run {run} --target {target}"
    recorded = {Path(os.path.relpath(run / rel, folder)).as_posix(): meta
                for rel, meta in _stage_fresh(run, folder, command).get("outputs", {}).items()}
    unsafe = sorted(name for name in recorded if not safe_name(name))
    if unsafe:
        raise UserError(f"{folder / 'manifest.json'} lists {unsafe[0]!r}, outside the export folder: run `{command}`")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.name != "manifest.json" and not p.is_dir()}
    extra = sorted(present - set(recorded))
    if extra:
        raise UserError(f"{folder / extra[0]} was not written by the {target} export: remove it or run `{command}`")
    return {name: _packed(folder / name, meta, f"export/{target}", command) for name, meta in sorted(recorded.items())}


# --- facts about the model and the run ------------------------------------------------------------------------

def _io_tensors(tflite: Path) -> tuple[dict, dict]:
    """Input and output tensor facts read from the .tflite itself (shape, dtype, quantization)."""
    d = describe_model(read_bytes(tflite, "int8 model"), str(tflite))

    def facts(t):
        return {"shape": t["shape"], "dtype": t["type"].lower(),
                "scale": t["scales"][0] if t["scales"] else None,
                "zero_point": t["zero_points"][0] if t["zero_points"] else None}

    return facts(d["inputs"][0]), facts(d["outputs"][0])


def _model_section(run: Path, classes: list, tflite: Path, name: str) -> dict:
    inp, out = _io_tensors(tflite)
    _, h, w, c = inp["shape"]
    student = run / "student" / "config.json"
    verify_inputs(run, "student", [student], f"python -m compress distill --run {run}")
    return {
        "name": f"{name} student",
        "architecture": json.loads(student.read_text())["student"] if student.is_file()
        else f"not recorded: {student} missing",
        "classes": classes,
        "input": {"height": h, "width": w, "channels": c, "layout": "NHWC (TFLite, firmware); NCHW for ONNX/OpenVINO",
                  "color": "RGB", "resize": "PIL Image.convert('RGB').resize((width, height), Image.BILINEAR)",
                  "standardize": {"name": preprocess.NAME, "definition": preprocess.DESCRIPTION,
                                  "code": "pizza_preprocess.py in each target's zip"},
                  "float_normalisation": preprocess.FLOAT_FORMULA,
                  "int8": {"dtype": inp["dtype"], "scale": inp["scale"], "zero_point": inp["zero_point"],
                           "formula": preprocess.INT8_FORMULA}},
        "output": {"dtype": out["dtype"], "scale": out["scale"], "zero_point": out["zero_point"],
                   "meaning": "softmax scores, argmax = class index into classes"},
    }


def _git() -> dict:
    def git(*a):
        r = subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown: not a git checkout"}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _elf_compiler(elf: Path) -> str | None:
    """The DWARF producer string of our C11 sources (version and flags): what really built the firmware.
    The linker script discards .comment, but -g keeps the producer in .debug_str."""
    if not elf.is_file():
        return None
    m = re.search(rb"GNU C11 [^\x00]+", elf.read_bytes())
    return m.group(0).decode(errors="replace") if m else None


def _provenance(stages: dict) -> tuple[object, dict]:
    """(seed, tool versions) as the stages recorded them; one value when every stage agrees."""
    seeds = {name: s["seed"] for name, s in sorted(stages.items()) if s.get("seed") is not None}
    seed = next(iter(seeds.values())) if len(set(seeds.values())) == 1 else (seeds or "not recorded")
    versions = {name: s["versions"] for name, s in sorted(stages.items()) if s.get("versions")}
    distinct = {json.dumps(v, sort_keys=True) for v in versions.values()}
    tools = json.loads(distinct.pop()) if len(distinct) == 1 else versions
    return seed, tools


def _benchmark(run: Path, target: str, built: str | None) -> dict:
    """The target's benchmark report, or why there is none; a report older than the artifacts is not used."""
    path = run / "bench" / target / "report.json"
    command = f"python -m benchmarks.run --target {target} --run {run}"
    if not path.is_file():
        return {"verdict": "not run: no benchmark report", "note": f"{path} not found; run `{command}`", "rows": []}
    verify_inputs(run, f"bench/{target}", [path], command)  # the release repeats its verdict: it must be genuine
    doc = read_json(path, "benchmark report")
    if built and doc.get("created", "") < built:
        return {"verdict": "not run: the benchmark report predates the artifacts",
                "note": f"{path} is older than this target's artifacts; run `{command}` again", "rows": []}
    keep = ("metric", "label", "value", "unit", "budget", "status", "note")
    return {"verdict": doc["verdict"], "passed": doc["passed"], "measured_at": doc.get("created"),
            "rows": [{k: r.get(k) for k in keep} for r in doc["rows"]]}


# --- writing -------------------------------------------------------------------------------------------------

def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on the file names and contents (sorted, fixed date and mode)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is honoured by unzip
            info.external_attr = 0o100644 << 16
            z.writestr(info, files[name], compresslevel=9)
    return buf.getvalue()


def sha256sums(folder: Path, names: list[str]) -> str:
    return "".join(f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names))


def _version(cfg: ReleaseConfig) -> str:
    version = cfg.release_version
    if version is None:
        try:
            version = metadata.version(DIST)
        except metadata.PackageNotFoundError:
            raise UserError(f"the {DIST} package is not installed (pip install -e .), or pass --version") from None
    for what, value in (("--release-name", cfg.release_name), ("--version", version)):
        if not NAME_RE.fullmatch(value):
            raise UserError(f"{what} {value!r}: use letters, digits, '.', '_', '+' or '-'")
    return version


def _targets(arg: str) -> list[str]:
    targets = [t.strip() for t in arg.split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise UserError(f"unknown release target(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TARGETS)}")
    return list(dict.fromkeys(targets))


def build(run: Path, cfg: ReleaseConfig) -> tuple[Path, dict]:
    """Collect, check and pack; returns (release folder, manifest)."""
    run = Path(run)
    version, targets = _version(cfg), _targets(cfg.release_targets)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run} (run `python -m compress all --run {run}` first)")
    dataset = _need(run / "data" / "dataset.json", f"python -m compress data --run {run}")
    tflite = _need(run / "quant" / "model_int8.tflite", f"python -m compress quantize --run {run}")
    verify_inputs(run, "data", [dataset], f"python -m compress data --run {run}")
    verify_inputs(run, "quant", [tflite], f"python -m compress quantize --run {run}")
    ds = load_dataset(run)
    stages = run_stages(run)
    model = _model_section(run, list(ds.classes), tflite, cfg.release_name)
    specs = load_all(DEFAULT_TARGETS_DIR)
    stem = f"{cfg.release_name}-{version}"

    archives, sections = {}, {}
    for target in targets:
        files = (_rp2040_files(run, cfg.release_fw_dir, model["classes"], model["input"]) if target == "rp2040"
                 else _export_files(run, target))
        archive = f"{stem}-{target}.zip"
        archives[archive] = zip_bytes(files)
        built_stage = stages.get("firmware" if target == "rp2040" else f"export/{target}", {})
        spec = specs[target]
        sections[target] = {
            "device": spec.description, "runtime": spec.runtime, "precision": spec.precision,
            "archive": {"name": archive, "sha256": sha256_bytes(archives[archive]), "bytes": len(archives[archive])},
            "files": {n: {"sha256": sha256_bytes(b), "bytes": len(b)} for n, b in sorted(files.items())},
            "budgets": spec.budgets,
            "benchmark": _benchmark(run, target, built_stage.get("finished")),
        }

    seed, tools = _provenance(stages)
    if "rp2040" in targets:
        uf2, _ = _fw_files(run, cfg.release_fw_dir)
        tools = dict(tools, firmware_compiler=_elf_compiler(uf2.with_suffix(".elf")) or "not recorded")
    manifest = {
        "format": FORMAT, "name": cfg.release_name, "version": version, "model": model,
        "data": {"source": ds.source, "images": {split: len(ds.split(split)) for split in ("train", "val", "test")}},
        "teacher": stages.get("teacher", {}).get("params", {}).get("teacher", "not recorded"),
        "pipeline_metrics": {k: v for s in stages.values() if not s["stage"].startswith(("export/", "bench/"))
                             for k, v in s.get("metrics", {}).items()},
        "seed": seed, "tools": tools, "git": _git(), "targets": sections,
    }
    out = _write(Path(cfg.release_out) / stem, archives, manifest, render(manifest))
    return out, manifest


def _write(folder: Path, archives: dict[str, bytes], manifest: dict, card: str) -> Path:
    """Write the release beside its final place and swap it in whole."""
    with staging(folder) as tmp:
        for name, data in archives.items():
            write_bytes_atomic(tmp / name, data)
        write_json_atomic(tmp / "manifest.json", manifest)
        write_text_atomic(tmp / "MODEL_CARD.md", card)
        names = [*archives, "manifest.json", "MODEL_CARD.md"]
        write_text_atomic(tmp / "SHA256SUMS", sha256sums(tmp, names))
        for f in tmp.iterdir():
            f.chmod(0o644)  # temp files are created 0600; a release is meant to be read by others
    return folder


def run(args) -> dict:
    with run_lock(args.run, "python -m compress.release"):
        out, manifest = build(args.run, from_args(ReleaseConfig, args))
    metrics = {}
    for target, t in manifest["targets"].items():
        metrics[f"release_{target.replace('-', '_')}_bytes"] = t["archive"]["bytes"]
        print(f"{t['archive']['name']}  {t['archive']['bytes']:>10,} B  {len(t['files'])} files  "
              f"benchmark: {t['benchmark']['verdict']}")
    print(f"wrote {out}  (check with: cd {out} && sha256sum -c SHA256SUMS)")
    return metrics


@one_line_errors()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress.release", description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("artifacts/default"),
                   help="run folder (default: artifacts/default)")
    add_arguments(p)
    args = p.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
