"""Per-device exporters. A target file `targets/<name>.toml` names the device's runtime and precision; the runtime
picks the exporter module, so a new device of an existing runtime is one TOML file, no code:
`export_target(run_dir, ExportConfig(target=name))` writes R/export/<name>/. `tflm` devices get firmware instead
(`python -m export.rp2040.build`, `make firmware`); a target file with `export = false` (the harness machine
itself) has nothing to ship."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edgecore.errors import UserError
from edgecore.targets import DEFAULT_TARGETS_DIR, TargetSpec, load_all

# runtime -> (module under export/ with `export(run_dir, out_dir, *, target, precision, seed, calib, threads, runs)`,
# the precisions it builds); modules are imported on use, so listing targets stays cheap.
RUNTIME_MODULES = {"tensorrt": ("jetson", ("fp16", "int8")), "onnxruntime": ("rpi4", ("int8",)),
                   "edgetpu": ("edgetpu", ("int8",)), "openvino": ("openvino_ir", ("int8",))}


@dataclass(frozen=True)
class ExportConfig:
    """Options of the export stage (`python -m export --help`)."""
    target: str
    out: Path | None = None          # default: R/export/<target>
    seed: int = 0                    # calibration subset
    calib: int = 300                 # train images that calibrate a re-quantization (openvino, TensorRT int8)
    threads: int = 1                 # CPU threads for the checks and timings
    runs: int = 50                   # timed runs per latency median
    targets_dir: Path = DEFAULT_TARGETS_DIR


def exportable(targets_dir: str | Path = DEFAULT_TARGETS_DIR) -> dict[str, TargetSpec]:
    """The target files in `targets_dir` that `export_target` writes artifacts for."""
    return {name: spec for name, spec in load_all(targets_dir).items()
            if spec.runtime in RUNTIME_MODULES and spec.export}


def export_target(run_dir, cfg: ExportConfig) -> dict:
    """Stage export: R/quant/ -> R/export/<target>/ (or cfg.out) for one device; returns its metrics."""
    specs = exportable(cfg.targets_dir)
    if cfg.target not in specs:
        raise UserError(f"unknown export target {cfg.target!r}; choose one of: {', '.join(sorted(specs))}")
    spec = specs[cfg.target]
    name, precisions = RUNTIME_MODULES[spec.runtime]
    if spec.precision not in precisions:
        raise UserError(f"{spec.path}: the {spec.runtime} exporter builds {' or '.join(precisions)}, "
                        f"not precision '{spec.precision}'")
    out = Path(cfg.out) if cfg.out is not None else Path(run_dir) / "export" / spec.name
    module = importlib.import_module(f"export.{name}")
    return module.export(run_dir, out, target=spec.name, precision=spec.precision, seed=cfg.seed, calib=cfg.calib,
                         threads=cfg.threads, runs=cfg.runs)


def _exporter(target: str):
    def export(run_dir, out_dir, **opts) -> dict:
        return export_target(run_dir, ExportConfig(target=target, out=out_dir, **opts))

    export.__name__ = f"export_{target.replace('-', '_')}"
    return export


# The targets of the repository's targets/ folder: name -> export(run_dir, out_dir, **ExportConfig options).
EXPORTERS = {target: _exporter(target) for target in exportable()}
