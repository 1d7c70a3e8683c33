"""Tiny run folders (dataset.json + PNGs + teacher soft labels) for the distill/quantize tests: each class is the
colour of a disc against a grey surround."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["basic", "burnt", "combined", "mixed", "progression", "segment"]
SIZE = 32
# Disc colours: each is brighter or darker than the grey surround in its own combination of channels.
COLOURS = np.array([[200, 190, 60], [50, 40, 30], [200, 60, 50], [220, 215, 205], [60, 190, 200], [60, 60, 200]],
                   np.float32)
SURROUND = np.array([128, 128, 128], np.float32)


def pattern_images(rng: np.random.Generator, colours: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC images whose class is the colour of a disc (random place and size) against a grey surround,
    under exposure changes, a brightness ramp and noise. The class lives in the disc's contrast with its scene,
    so it survives the per-image standardisation every model input goes through (edgecore.preprocess)."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cy, cx = rng.uniform(0.35, 0.65, (2, n, 1, 1)) * size
    r = rng.uniform(0.25, 0.35, (n, 1, 1)) * size
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2)[..., None]
    scene = np.where(disc, colours[labels][:, None, None, :], SURROUND)
    ramp = np.linspace(-20, 20, size)[None, :, None, None] * rng.choice([-1, 1], (n, 1, 1, 1))
    img = scene * rng.uniform(0.75, 1.25, (n, 1, 1, 1)) + ramp + rng.normal(0, 12, (n, size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def images(rng: np.random.Generator, labels: np.ndarray, size: int = SIZE) -> np.ndarray:
    return pattern_images(rng, COLOURS, labels, size)


def make_run(root: Path, per_class: dict | None = None, seed: int = 0, teacher_classes=None) -> Path:
    per_class = per_class or {"train": 8, "val": 2, "test": 8, "pool": 8}
    rng = np.random.default_rng(seed)
    items, hashes, probs = [], [], []
    for split, n in per_class.items():
        labels = np.repeat(np.arange(len(CLASSES)), n)
        for i, (img, y) in enumerate(zip(images(rng, labels), labels)):
            rel = Path("images") / CLASSES[y] / f"{split}_{i:04d}.png"
            path = root / "data" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            items.append({"path": str(rel), "sha256": sha, "label": CLASSES[y], "split": split})
            p = np.full(len(CLASSES), 0.1 / (len(CLASSES) - 1), np.float32)
            p[y] = 0.9
            hashes.append(sha)
            probs.append(p)
    (root / "data" / "dataset.json").write_text(json.dumps({"classes": CLASSES, "source": {}, "items": items}))
    (root / "teacher").mkdir(parents=True, exist_ok=True)
    np.savez(root / "teacher" / "soft_labels.npz", hashes=np.array(hashes), probs=np.stack(probs),
             classes=np.array(teacher_classes or CLASSES))
    # Recorded like the real stages, so distill and quantize accept them as their inputs.
    from edgecore.manifest import record_stage

    record_stage(root, "data", outputs=[root / "data" / "dataset.json"])
    record_stage(root, "teacher", outputs=[root / "teacher" / "soft_labels.npz"])
    return root


def distill_config(**options):
    """The distill stage's options for these tiny runs: 32 px input, 2 epochs, batches of 16, one thread."""
    from compress.distill import DistillConfig

    return DistillConfig(**{"student_input_size": SIZE, "student_epochs": 2, "student_batch_size": 16,
                            "student_threads": 1, **options})


def quantize_config():
    """The quantize stage's options for these tiny runs: one QAT epoch, 24 calibration images."""
    from compress.quantize import QuantizeConfig

    return QuantizeConfig(qat_epochs=1, quant_calib_images=24)
