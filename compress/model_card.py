"""MODEL_CARD.md for a release, rendered from its manifest only: every number in it is one the
pipeline or the benchmark harness measured, and every gap says why it is a gap."""
from __future__ import annotations

from edgecore.summary import SUMMARY_ROWS, format_metric

# The bake classes of the default data set; a user's own classes are listed by name only.
CLASS_MEANINGS = {
    "basic": "evenly baked, golden crust and cheese, no char",
    "burnt": "most of the surface dark brown to black",
    "combined": "baked, with several scattered charred spots",
    "mixed": "pale, under-baked regions mixed with baked ones",
    "progression": "browning that grows from one edge to the other (heat gradient)",
    "segment": "one sector (slice) sharply charred, the rest fine",
}
def _num(value, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.3f}" if isinstance(value, float) and abs(value) < 10 else \
        f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".strip()


def _budget(r: dict) -> str:
    if r["budget"] is None:
        return "-"
    return f"{'>=' if r['metric'] == 'accuracy_pct' else '<='} {_num(r['budget'], r['unit'])}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _first(rows: list, metric: str) -> str:
    hits = [r for r in rows if r["metric"] == metric and r["value"] is not None]
    return _num(hits[0]["value"], hits[0]["unit"]) if hits else "not run"


def _data_lines(data: dict) -> list[str]:
    source, counts = data.get("source", {}), data.get("images", {})
    split = ", ".join(f"{n} {s}" for s, n in counts.items())
    kind = source.get("kind")
    if kind == "procedural":
        return [f"- **Trained and tested on procedurally generated images** (generator version "
                f"{source.get('generator_version', '?')}, seed {source.get('seed', '?')}, {split}), not on photos. "
                "The accuracies above say how well the student learned that generator; on real pizza photos the "
                "model is unmeasured. Re-run the pipeline with `--data <ImageFolder>` on your photos before "
                "relying on it."]
    if kind == "imagefolder":
        return [f"- Trained and tested on the user's own photos (ImageFolder `{source.get('root', '?')}`, {split}). "
                "The accuracies hold for images like those; other cameras, lighting or pizzas may differ."]
    return [f"- The data set's source is not recorded as procedural or as a user's ImageFolder "
            f"(kind: {kind or 'not recorded'}; {split or 'image counts not recorded'})."]


def render(manifest: dict) -> str:
    m, targets = manifest["model"], manifest["targets"]
    inp = m["input"]
    lines = [f"# Model card: {manifest['name']} {manifest['version']}", "",
             f"A tiny full-INT8 image classifier distilled from the `{manifest['teacher']}` teacher, "
             f"shipped for {', '.join(targets)}. Git commit `{manifest['git']['commit']}`"
             + (" (working tree had uncommitted changes)" if manifest["git"].get("dirty") else "")
             + f", seed {manifest['seed']}.", "",
             "## Classes", ""]
    lines += [f"{i}. `{c}`" + (f": {CLASS_MEANINGS[c]}" if c in CLASS_MEANINGS else "") for i, c in
              enumerate(m["classes"])]
    q = inp["int8"]
    lines += ["", "## Input", "",
              f"RGB, {inp['height']}x{inp['width']}x{inp['channels']}, resized with {inp['resize']}. Float models "
              f"take {inp['float_normalisation']}; the INT8 models take {q['formula']} ({q['dtype']}, scale "
              f"{q['scale']}, zero point {q['zero_point']}). Output: {m['output']['meaning']}.", "",
              "## Pipeline measurements", ""]
    pm = manifest.get("pipeline_metrics", {})
    lines += [f"Accuracies measured on: {pm.get('accuracy_data', 'the test split')}.", "",
              "| metric | value |", "|---|---|"]
    for label, key, kind in SUMMARY_ROWS:
        lines.append(f"| {label} | {_cell(format_metric(pm.get(key), kind))} |")
    lines += ["", "## Measured per target", "",
              "| target | benchmark verdict | INT8 accuracy | model size | RAM | latency | archive |",
              "|---|---|---|---|---|---|---|"]
    for name, t in targets.items():
        rows = t["benchmark"]["rows"]
        lines.append(f"| {name} | {_cell(t['benchmark']['verdict'])} | {_first(rows, 'accuracy_pct')} | "
                     f"{_first(rows, 'model_bytes')} | {_first(rows, 'ram_bytes')} | {_first(rows, 'latency_ms')} | "
                     f"{_num(t['archive']['bytes'], 'B')} |")
    lines += ["", "Each cell is the target's first measured row of that metric; the tables below say how it was "
              "measured (on the device, in an emulator or on the build host) and on how many images."]
    for name, t in targets.items():
        lines += ["", f"### {name}", "", t["device"], ""]
        if not t["benchmark"]["rows"]:
            lines.append(f"Benchmark {t['benchmark']['verdict']}: {t['benchmark']['note']}.")
            continue
        lines += ["| metric | measured | budget | status | note |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(r['label'])} | {_num(r['value'], r['unit'])} | {_budget(r)} | "
                  f"{r['status']} | {_cell(r['note'])} |" for r in t["benchmark"]["rows"]]
    lines += ["", "## Limits", ""] + _data_lines(manifest["data"])
    for name, t in targets.items():
        for r in t["benchmark"]["rows"]:
            if r["status"] == "FAIL":
                lines.append(f"- {name}: **budget broken**: {r['label']} = {_num(r['value'], r['unit'])} "
                             f"(budget {_budget(r)}).")
            elif r["status"] == "not run":
                lines.append(f"- {name}: {r['label']} was {r['note']}.")
        if not t["benchmark"]["rows"]:
            lines.append(f"- {name}: no measurements in this release ({t['benchmark']['verdict']}).")
    lines += ["- Rows whose note says \"not the device\" were measured on the build machine.",
              "", "Files, sizes and sha256 of every artifact: `manifest.json`; check a download with "
              "`sha256sum -c SHA256SUMS` or `python -m compress.fetch`.", ""]
    return "\n".join(lines)
