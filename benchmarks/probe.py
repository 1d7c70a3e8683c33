"""Latency and peak RAM of one model in a fresh process, so other models and libraries do not pollute RSS.

`python -m benchmarks.probe RUNTIME MODEL INPUT.npy` prints one JSON line. Peak RAM = the high-water RSS
(VmHWM, reset after the runtime is imported) minus the RSS just before the model is loaded: what loading
and running the model adds to a process that already has the runtime."""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _load(runtime: str, model: str, threads: int):
    """A zero-argument callable running one inference; the model is loaded here."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})
    if runtime == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})
    raise SystemExit(f"unknown runtime {runtime}")


def _import(runtime: str) -> None:
    __import__({"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(runtime, runtime))


def main(argv) -> int:
    runtime, model, input_path = argv[:3]
    threads = int(argv[3]) if len(argv) > 3 else 1
    warmup, runs = 10, 100
    x = np.load(input_path)
    _import(runtime)
    exact = _reset_peak()
    rss_before = _status_kib("VmRSS")
    infer = _load(runtime, model, threads)
    for _ in range(warmup):
        infer(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        infer(x)
        times.append((time.perf_counter() - t0) * 1e3)
    peak = _status_kib("VmHWM")
    print(json.dumps({"latency_ms": statistics.median(times), "latency_p90_ms": float(np.percentile(times, 90)),
                      "runs": runs, "warmup": warmup, "threads": threads,
                      "peak_ram_bytes": max(peak - rss_before, 0) * 1024, "peak_exact": exact}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
