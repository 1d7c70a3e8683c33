"""Per-device exporters: `EXPORTERS[target](run_dir, out_dir, **opts) -> metrics` writes R/export/<target>/."""
from __future__ import annotations

import importlib

# target -> module under export/; modules are imported on use, so listing targets stays cheap.
_MODULES = {
    "jetson-nano": "jetson",
    "jetson-orin-nano": "jetson",
    "rpi4": "rpi4",
    "edgetpu": "edgetpu",
    "openvino": "openvino_ir",
}


def _exporter(target: str):
    def export(run_dir, out_dir, **opts) -> dict:
        return importlib.import_module(f"export.{_MODULES[target]}").export(run_dir, out_dir, target=target, **opts)

    export.__name__ = f"export_{target.replace('-', '_')}"
    return export


EXPORTERS = {target: _exporter(target) for target in _MODULES}
