"""Target specs: load `targets/<name>.toml`, validate it, resolve family aliases. The validator is hand-written:
tomllib has no schema support and a dozen keys do not justify a jsonschema dependency."""
from __future__ import annotations

import math
import platform
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgecore.errors import UserError
from edgecore.io import read_bytes

DEFAULT_TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"

RUNTIMES = ("tflm", "onnxruntime", "tensorrt", "openvino", "edgetpu")
PRECISIONS = ("int8", "fp16", "fp32")
ARTIFACT_KINDS = ("tflite_int8", "c_model", "firmware", "onnx_float", "onnx_int8_qdq", "onnx_fp16",
                  "trt_engine", "edgetpu_tflite", "openvino_ir")

# section -> key -> (type, required). `float` accepts ints too; lists are lists of str.
SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {
    "": {"name": (str, True), "description": (str, True), "runtime": (str, True), "precision": (str, True),
         "artifacts": (list, True), "family": (str, False), "family_default": (bool, False), "export": (bool, False)},
    "device": {"cpu": (str, True), "ram_bytes": (int, True), "flash_bytes": (int, False),
               "storage_bytes": (int, False), "clock_hz": (int, True), "max_clock_hz": (int, False)},
    "detect": {"device_tree_model": (str, False), "tegra_release": (str, False), "machine": (str, False)},
    "ops": {"allowed": (list, False), "int8_only": (bool, False)},
    "budgets": {"model_bytes": (int, False), "flash_bytes": (int, False), "ram_bytes": (int, False),
                "latency_ms": (float, False), "min_accuracy_pct": (float, False), "max_drop_pts": (float, False),
                "max_teacher_gap_pts": (float, False), "max_shift_drop_pts": (float, False)},
}
SECTIONS_REQUIRED = ("device", "budgets")


@dataclass(frozen=True)
class TargetSpec:
    name: str
    description: str
    runtime: str
    precision: str
    artifacts: tuple[str, ...]
    device: dict
    budgets: dict
    ops: dict = field(default_factory=dict)
    detect: dict = field(default_factory=dict)
    family: str | None = None
    family_default: bool = False
    export: bool = True            # false: nothing to ship (the harness machine itself)
    path: Path | None = None

    @property
    def clock_hz(self) -> int:
        return self.device["clock_hz"]


def _type_ok(value, typ) -> bool:
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, typ)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list of strings"}


def _check_section(where: str, section: str, table: dict) -> None:
    schema = SCHEMA[section]
    for key, value in table.items():
        dotted = f"{section}.{key}" if section else key
        if section == "" and key in SCHEMA:
            if not isinstance(value, dict):
                raise UserError(f"{where}: [{key}] must be a table")
            continue
        if key not in schema:
            known = ", ".join(sorted(k for k in schema) + ([f"[{s}]" for s in SCHEMA if s] if not section else []))
            raise UserError(f"{where}: unknown key '{dotted}' (known: {known})")
        typ = schema[key][0]
        if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf; no budget can be either
            raise UserError(f"{where}: '{dotted}' must be a finite number, got {value}")
        if not _type_ok(value, typ):
            raise UserError(f"{where}: '{dotted}' must be {_TYPE_NAMES[typ]}, got {type(value).__name__} {value!r}")
    for key, (_, required) in schema.items():
        if required and key not in table:
            raise UserError(f"{where}: missing required key '{section + '.' if section else ''}{key}'")


def _check_values(where: str, d: dict, stem: str) -> None:
    if d["name"] != stem:
        raise UserError(f"{where}: name '{d['name']}' must match the file name '{stem}'")
    if d["runtime"] not in RUNTIMES:
        raise UserError(f"{where}: runtime '{d['runtime']}' is not one of {', '.join(RUNTIMES)}")
    if d["precision"] not in PRECISIONS:
        raise UserError(f"{where}: precision '{d['precision']}' is not one of {', '.join(PRECISIONS)}")
    bad = [a for a in d["artifacts"] if a not in ARTIFACT_KINDS]
    if bad or not d["artifacts"]:
        raise UserError(f"{where}: artifacts {bad or '[]'} not among {', '.join(ARTIFACT_KINDS)}")
    dev, bud = d["device"], d["budgets"]
    for key in ("ram_bytes", "flash_bytes", "storage_bytes", "clock_hz", "max_clock_hz"):
        if key in dev and dev[key] <= 0:
            raise UserError(f"{where}: 'device.{key}' must be positive, got {dev[key]}")
    if dev.get("max_clock_hz", dev["clock_hz"]) < dev["clock_hz"]:
        raise UserError(f"{where}: 'device.max_clock_hz' is below 'device.clock_hz'")
    for key in ("model_bytes", "flash_bytes", "ram_bytes", "latency_ms"):
        if key in bud and bud[key] <= 0:
            raise UserError(f"{where}: budget '{key}' must be positive, got {bud[key]}")
    if "min_accuracy_pct" in bud and not 0 <= bud["min_accuracy_pct"] <= 100:
        raise UserError(f"{where}: budget 'min_accuracy_pct' must be within 0..100, got {bud['min_accuracy_pct']}")
    for key in ("max_drop_pts", "max_teacher_gap_pts", "max_shift_drop_pts"):
        if key in bud and not 0 <= bud[key] <= 100:
            raise UserError(f"{where}: budget '{key}' must be within 0..100, got {bud[key]}")
    # A budget the device could never meet is a typo, not a target.
    limits = {"ram_bytes": ("device.ram_bytes", dev["ram_bytes"]),
              "flash_bytes": ("device.flash_bytes", dev.get("flash_bytes")),
              "model_bytes": ("device.flash_bytes" if "flash_bytes" in dev else "device.storage_bytes"
                              if "storage_bytes" in dev else "device.ram_bytes",
                              dev.get("flash_bytes") or dev.get("storage_bytes") or dev["ram_bytes"])}
    for key, (limit_name, limit) in limits.items():
        if key in bud and limit is not None and bud[key] > limit:
            raise UserError(f"{where}: budget '{key}' = {bud[key]} exceeds {limit_name} = {limit}")
    if "flash_bytes" in bud and "flash_bytes" not in dev:
        raise UserError(f"{where}: budget 'flash_bytes' needs 'device.flash_bytes'")
    for key, pattern in d.get("detect", {}).items():
        try:
            re.compile(pattern)
        except re.error as e:
            raise UserError(f"{where}: 'detect.{key}' is not a valid regex: {e}") from None


def load_spec(path: str | Path) -> TargetSpec:
    """Parse and validate one target file; every problem is a one-line UserError naming the file."""
    path = Path(path)
    where = str(path)
    try:
        d = tomllib.loads(read_bytes(path, "target file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: invalid TOML: {e}") from None
    _check_section(where, "", d)
    for section in SECTIONS_REQUIRED:
        if section not in d:
            raise UserError(f"{where}: missing required table [{section}]")
    for section in SCHEMA:
        if section:
            _check_section(where, section, d.get(section, {}))
    _check_values(where, d, path.stem)
    return TargetSpec(name=d["name"], description=d["description"], runtime=d["runtime"],
                      precision=d["precision"], artifacts=tuple(d["artifacts"]), device=dict(d["device"]),
                      budgets=dict(d["budgets"]), ops=dict(d.get("ops", {})), detect=dict(d.get("detect", {})),
                      family=d.get("family"), family_default=d.get("family_default", False),
                      export=d.get("export", True), path=path)


def device_limits(name: str, targets_dir: str | Path = DEFAULT_TARGETS_DIR) -> dict:
    """The [device] table of `targets/<name>.toml` (memory sizes, clocks): the one place a device's limits live;
    the firmware build and the UF2 writer read them from here."""
    return dict(load_spec(Path(targets_dir) / f"{name}.toml").device)


def load_all(targets_dir: str | Path = DEFAULT_TARGETS_DIR) -> dict[str, TargetSpec]:
    targets_dir = Path(targets_dir)
    if not targets_dir.is_dir():
        raise UserError(f"targets folder not found: {targets_dir}")
    specs = {p.stem: load_spec(p) for p in sorted(targets_dir.glob("*.toml"))}
    if not specs:
        raise UserError(f"no target files (*.toml) in {targets_dir}")
    return specs


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _cpu_model(root: Path) -> str:
    for line in _read(root / "proc/cpuinfo").splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_facts(root: Path = Path("/")) -> dict[str, str]:
    """What this machine says it is: the device-tree model (Pi, Jetson), the L4T release, the CPU."""
    return {"device_tree_model": _read(root / "proc/device-tree/model"),
            "tegra_release": _read(root / "etc/nv_tegra_release"),
            "machine": platform.machine(), "cpu": _cpu_model(root)}


def runs_on(spec: TargetSpec, facts: dict[str, str]) -> bool:
    """True when this machine is the target device: every detect pattern whose source is readable here
    matches, and at least one is (a Jetson container may lack the device tree but have nv_tegra_release)."""
    readable = {k: p for k, p in spec.detect.items() if facts.get(k)}
    return bool(readable) and all(re.search(p, facts[k]) for k, p in readable.items())


def resolve(name: str, specs: dict[str, TargetSpec], facts: dict[str, str]) -> TargetSpec:
    """A target name, or a family alias: the family member this machine is, else the family default."""
    if name in specs:
        return specs[name]
    members = [s for s in specs.values() if s.family == name]
    if not members:
        names = sorted(specs) + sorted({s.family for s in specs.values() if s.family})
        raise UserError(f"unknown target '{name}'; choose one of: {', '.join(names)}")
    for spec in members:
        if runs_on(spec, facts):
            return spec
    defaults = [s for s in members if s.family_default]
    if len(defaults) != 1:
        raise UserError(f"family '{name}' needs exactly one member with family_default = true "
                        f"(found {len(defaults)}); pick one of: {', '.join(s.name for s in members)}")
    return defaults[0]
