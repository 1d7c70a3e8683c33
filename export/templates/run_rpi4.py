"""Classify one image with the INT8 ONNX model in this folder (Raspberry Pi 4, onnxruntime on ARM64).

Needs only onnxruntime, numpy and pillow:  python run_rpi4.py image.jpg [--runs 50] [--threads 4] [--json]
Classes come from model.json and the preprocessing from pizza_preprocess.py next to this file.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

from pizza_preprocess import standardize

HERE = Path(__file__).resolve().parent


def preprocess(path, spec):
    """EXIF-upright RGB, bilinear resize to the model's input size, standardize(pixel) / 255, NCHW float32 (as in
    training)."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB").resize((spec["width"], spec["height"]), Image.BILINEAR)
    x = standardize(np.asarray(img)[None]).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def main(argv=None):
    p = argparse.ArgumentParser(description="Classify an image with the INT8 ONNX model in this folder.")
    p.add_argument("image", help="a JPEG/PNG photo")
    p.add_argument("--runs", type=int, default=50, help="timed runs for the median latency (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--threads", type=int, default=4, help="onnxruntime intra-op threads (Pi 4: 4 cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--runs and --threads must be >= 1, --warmup >= 0")

    meta = json.loads((HERE / "model.json").read_text())
    try:
        x = preprocess(args.image, meta["input"])
    except (OSError, UnidentifiedImageError) as e:
        print("error: cannot read image {}: {}".format(args.image, e), file=sys.stderr)
        return 2
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(HERE / meta["model"]), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(args.warmup):
        sess.run(None, feed)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = sess.run(None, feed)[0][0]
        times.append((time.perf_counter() - t0) * 1e3)
    probs = out if meta["output"] == "probabilities" else softmax(out.astype(np.float64))
    best = int(np.argmax(probs))
    result = {"class": meta["classes"][best],
              "probabilities": {c: round(float(q), 6) for c, q in zip(meta["classes"], probs)},
              "latency_ms_median": round(statistics.median(times), 4), "runs": args.runs}
    if args.json:
        print(json.dumps(result))
    else:
        print("class: {}".format(result["class"]))
        for c, q in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
            print("  {:<12} {:.4f}".format(c, q))
        print("latency: {:.3f} ms (median of {} runs, {} threads)".format(
            result["latency_ms_median"], args.runs, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
