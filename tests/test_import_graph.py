"""Imports run one way: edgecore -> data -> teach -> distill -> quantize -> export/firmware -> benchmarks -> release
(-> the `python -m compress` front door). Every project module's imports, those inside functions included, are
parsed with `ast`; each module belongs to one stage; an import from a later stage into an earlier one, a cycle
between stages, or a module no stage claims fails the test."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgecore", "compress", "export", "benchmarks", "firmware")

ORDER = ("core", "data", "teach", "distill", "quantize", "export", "benchmarks", "release", "cli")
# Module (or package: its submodules too) -> stage; the longest match wins. "cli" is the `python -m compress`
# front door, which dispatches to every stage, and the tools that run several stages (the seeds x budgets sweep,
# the memory scaling table).
STAGE_OF = {
    "edgecore": "core",
    "compress": "data",  # the package's __init__ (a docstring); its modules are placed one by one below
    "compress.data": "data", "compress.procedural": "data", "compress.camera": "data", "compress.shifts": "data",
    "compress.imagestore": "data",
    "compress.teach": "teach", "compress.teachers": "teach", "compress.shards": "teach", "compress.ray_engine": "teach",
    "compress.distill": "distill", "compress.student": "distill",
    "compress.quantize": "quantize", "compress.pt2e_int8": "quantize",
    "export": "export", "firmware": "export",
    "benchmarks": "benchmarks",
    "compress.release": "release", "compress.fetch": "release", "compress.model_card": "release",
    "compress.cli": "cli", "compress.__main__": "cli", "compress.sweep": "cli", "compress.scale_memory": "cli",
}
PACKAGE_ONLY = {"compress"}  # matches the package itself, not its submodules


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def scan(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> project modules it imports (anywhere in the file, function bodies included)."""
    files = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
             if "node_modules" not in p.parts}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".")
                    base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module
                # `from pkg import name`: name is a submodule when a file says so, else an attribute of pkg
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in files else prefix for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t.split(".")[0] in packages and t != mod}
        graph[mod] = deps
    return graph


def stage_of(module: str) -> str | None:
    best = None
    for key in STAGE_OF:
        if module == key or (module.startswith(key + ".") and key not in PACKAGE_ONLY):
            if best is None or len(key) > len(best):
                best = key
    return STAGE_OF.get(best)


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = [f"{m}: no stage in tests/test_import_graph.py STAGE_OF claims it" for m in sorted(graph)
           if stage_of(m) is None]
    edges: dict[str, set[str]] = {s: set() for s in ORDER}
    for mod in sorted(graph):
        src = stage_of(mod)
        for dep in sorted(graph[mod]):
            dst = stage_of(dep)
            if src is None or dst is None or src == dst:
                continue
            edges[src].add(dst)
            if ORDER.index(dst) > ORDER.index(src):
                out.append(f"{mod} ({src}) imports {dep} ({dst}), a later stage")
    out += [f"cycle between stages: {' -> '.join(c)}" for c in cycles(edges)]
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of stages (depth-first search from each stage in order)."""
    found, seen = [], set()
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start and frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    found.append(path + [start])
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return found


def test_project_imports_run_one_way():
    graph = scan(ROOT)
    assert "edgecore.manifest" in graph and "compress.release" in graph and "benchmarks.run" in graph
    assert violations(graph) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_check_fails_on_a_backward_import_inside_a_function(tmp_path):
    root = _tree(tmp_path, {
        "compress/__init__.py": "",
        "compress/data.py": "def f():\n    from benchmarks.report import write\n",
        "benchmarks/__init__.py": "",
        "benchmarks/report.py": "from compress.data import load_dataset\n",
    })
    found = violations(scan(root, ("compress", "benchmarks")))
    assert "compress.data (data) imports benchmarks.report (benchmarks), a later stage" in found
    assert any(v.startswith("cycle between stages: ") and "data" in v and "benchmarks" in v for v in found)


def test_check_resolves_relative_imports_and_unclaimed_modules(tmp_path):
    root = _tree(tmp_path, {
        "edgecore/__init__.py": "",
        "edgecore/io.py": "from . import errors\nfrom .errors import UserError\n",
        "edgecore/errors.py": "",
        "edgecore/bad.py": "from compress import quantize\n",
        "compress/__init__.py": "",
        "compress/quantize.py": "from edgecore.io import read_bytes\n",
        "compress/newstage.py": "",
    })
    found = violations(scan(root, ("edgecore", "compress")))
    assert scan(root, ("edgecore",))["edgecore.io"] == {"edgecore.errors"}
    assert found == ["compress.newstage: no stage in tests/test_import_graph.py STAGE_OF claims it",
                     "edgecore.bad (core) imports compress.quantize (quantize), a later stage",
                     "cycle between stages: core -> quantize -> core"]


@pytest.mark.parametrize("module,stage", [("compress.teachers.effnet", "teach"), ("export.rp2040.build", "export"),
                                          ("compress.release", "release"), ("edgecore.tflite_graph", "core")])
def test_stage_of(module, stage):
    assert stage_of(module) == stage
