"""Build and time a TensorRT engine from an ONNX file, ON the Jetson (engines are tied to GPU + TensorRT version).

Standalone on purpose: it is copied next to the ONNX and must run with JetPack's Python (3.6 on the
Jetson Nano's JetPack 4.x), TensorRT and numpy only, so no project imports and no 3.7+ syntax.
Uses the TensorRT Python API; falls back to `trtexec` when only that is installed.

    python3 trt_engine.py model.onnx --precision fp16 --runs 200
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NOT_INSTALLED = "not run: TensorRT not installed"
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec",)


def _trt():
    try:
        import tensorrt
        return tensorrt
    except ImportError:
        return None


def _trtexec():
    found = shutil.which("trtexec")
    return found or next((p for p in TRTEXEC_PATHS if os.access(p, os.X_OK)), None)


def status():
    """None when TensorRT (Python API or trtexec) can be used here, else a 'not run: ...' reason."""
    return None if _trt() is not None or _trtexec() else NOT_INSTALLED


def trt_version():
    trt = _trt()
    if trt is not None:
        return trt.__version__
    out = subprocess.run([_trtexec(), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    m = re.search(r"TensorRT v(\d+)", out)
    return m.group(1) if m else "unknown"


def gpu_name():
    """GPU name for the cache key: CUDA bindings if present, else the Jetson's device-tree model string."""
    try:
        from cuda import cudart
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            return props.name.decode().strip("\x00")
    except ImportError:
        pass
    try:
        import pycuda.driver as cuda
        cuda.init()
        return cuda.Device(0).name()
    except ImportError:
        pass
    try:
        with open("/proc/device-tree/model") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return "unknown-gpu"


def engine_path(onnx_path, precision):
    """<model>.<precision>.trt<version>.<gpu>.engine, next to the ONNX."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "trt{}.{}".format(trt_version(), gpu_name())).strip("-")
    return "{}.{}.{}.engine".format(os.path.splitext(onnx_path)[0], precision, slug)


def _atomic_write(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build_with_api(onnx_path, out_path, precision, workspace_mb):
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT < 10 needs the explicit-batch flag; 10+ is always explicit batch and deprecates it.
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError("TensorRT could not parse {}: {}".format(onnx_path, errors))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT 8.2 (JetPack 4.6, Jetson Nano)
        config.max_workspace_size = workspace_mb << 20
    config.set_flag(trt.BuilderFlag.FP16)  # int8: layers outside Q/DQ pairs may still run in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ in the graph; no calibrator
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT failed to build an engine from {}".format(onnx_path))
    _atomic_write(out_path, bytes(blob))


def build_with_trtexec(onnx_path, out_path, precision):
    tmp = out_path + ".tmp"
    cmd = [_trtexec(), "--onnx=" + onnx_path, "--saveEngine=" + tmp, "--fp16"]
    if precision == "int8":
        cmd.append("--int8")
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if res.returncode != 0:
        raise RuntimeError("trtexec failed: " + res.stdout.strip().splitlines()[-1])
    os.replace(tmp, out_path)


def build(onnx_path, precision, workspace_mb=256):
    """Return the cached engine path, building it first if this GPU + TensorRT has none yet."""
    path = engine_path(onnx_path, precision)
    if not os.path.exists(path):
        if _trt() is not None:
            build_with_api(onnx_path, path, precision, workspace_mb)
        else:
            build_with_trtexec(onnx_path, path, precision)
    return path


class _Cuda(object):
    """Device buffers and copies through cuda-python (JetPack 5/6) or pycuda (JetPack 4)."""

    def __init__(self):
        try:
            from cuda import cudart
            self.rt, self.pycuda = cudart, None
        except ImportError:
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as cuda
            self.rt, self.pycuda = None, cuda

    def alloc(self, nbytes):
        if self.pycuda:
            return self.pycuda.mem_alloc(nbytes)
        return self.rt.cudaMalloc(nbytes)[1]

    def ptr(self, buf):
        return int(buf)

    def htod(self, buf, arr):
        if self.pycuda:
            self.pycuda.memcpy_htod(buf, arr)
        else:
            self.rt.cudaMemcpy(buf, arr.ctypes.data, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice)

    def dtoh(self, arr, buf):
        if self.pycuda:
            self.pycuda.memcpy_dtoh(arr, buf)
        else:
            self.rt.cudaMemcpy(arr.ctypes.data, buf, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)

    def sync(self):
        if self.pycuda:
            self.pycuda.Context.synchronize()
        else:
            self.rt.cudaDeviceSynchronize()


def time_with_api(engine_file, warmup, runs):
    """Median latency (ms) of one synchronous inference, host->device copy to device->host copy."""
    import numpy as np

    trt = _trt()
    cu = _Cuda()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with open(engine_file, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    ctx = engine.create_execution_context()
    if hasattr(engine, "num_io_tensors"):  # TensorRT 10
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        shapes = [tuple(engine.get_tensor_shape(n)) for n in names]
        is_in = [engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        dtypes = [trt.nptype(engine.get_tensor_dtype(n)) for n in names]
    else:  # TensorRT 8
        names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
        shapes = [tuple(engine.get_binding_shape(i)) for i in range(engine.num_bindings)]
        is_in = [engine.binding_is_input(i) for i in range(engine.num_bindings)]
        dtypes = [trt.nptype(engine.get_binding_dtype(i)) for i in range(engine.num_bindings)]
    host = [np.random.RandomState(0).random_sample(s).astype(d) if i else np.empty(s, d)
            for s, d, i in zip(shapes, dtypes, is_in)]
    dev = [cu.alloc(h.nbytes) for h in host]
    if hasattr(ctx, "set_tensor_address"):
        for n, d in zip(names, dev):
            ctx.set_tensor_address(n, cu.ptr(d))

    def infer():
        for h, d, i in zip(host, dev, is_in):
            if i:
                cu.htod(d, h)
        if hasattr(ctx, "execute_async_v3"):
            ctx.execute_async_v3(0)
        else:
            ctx.execute_v2([cu.ptr(d) for d in dev])
        cu.sync()
        for h, d, i in zip(host, dev, is_in):
            if not i:
                cu.dtoh(h, d)

    for _ in range(warmup):
        infer()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        infer()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_with_trtexec(engine_file, warmup, runs):
    out = subprocess.run([_trtexec(), "--loadEngine=" + engine_file, "--iterations={}".format(runs),
                          "--warmUp={}".format(warmup), "--duration=0"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True).stdout
    m = re.search(r"Latency: min = [\d.]+ ms, max = [\d.]+ ms, mean = [\d.]+ ms, median = ([\d.]+) ms", out)
    if not m:
        raise RuntimeError("could not find the latency in trtexec's output")
    return float(m.group(1))


def measure(onnx_path, precision, warmup=20, runs=200):
    """Build (or reuse) the engine and time it; without TensorRT, say so instead of measuring."""
    reason = status()
    if reason:
        return {"latency_ms": reason, "engine": reason}
    engine = build(onnx_path, precision)
    try:
        latency = time_with_api(engine, warmup, runs) if _trt() is not None else None
    except ImportError:  # TensorRT Python present but neither cuda-python nor pycuda
        latency = None
    if latency is None:
        latency = time_with_trtexec(engine, warmup, runs) if _trtexec() else \
            "not run: needs cuda-python or pycuda (or trtexec) to time the engine"
    return {"engine": engine, "latency_ms": latency, "precision": precision,
            "tensorrt": trt_version(), "gpu": gpu_name()}


def main(argv=None):
    p = argparse.ArgumentParser(description="Build (cached) and time a TensorRT engine from an ONNX model.")
    p.add_argument("onnx", help="the ONNX model from this folder")
    p.add_argument("--precision", choices=("fp16", "int8"), required=True,
                   help="fp16 for Jetson Nano (Maxwell), int8 for the Q/DQ model on Orin")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)
    if not os.path.isfile(args.onnx):
        print("error: {} not found".format(args.onnx), file=sys.stderr)
        return 2
    try:
        result = measure(args.onnx, args.precision, args.warmup, args.runs)
    except RuntimeError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1
    except OSError as e:  # engine cache on a full or read-only disk
        print("error: {}: {}".format(e.strerror or e, e.filename or ""), file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
