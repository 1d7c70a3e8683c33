"""Tiny colour-coded run folders (dataset.json + PNGs + teacher soft labels) for the distill/quantize tests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["basic", "burnt", "combined", "mixed", "progression", "segment"]
SIZE = 32
COLOURS = np.array([[220, 170, 60], [50, 35, 25], [150, 90, 40], [235, 225, 195], [190, 120, 60], [110, 60, 30]],
                   np.float32)


def images(rng: np.random.Generator, labels: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 NHWC images whose class is their mean colour, under noise and a brightness gradient."""
    n = len(labels)
    base = COLOURS[labels][:, None, None, :] + rng.normal(0, 12, (n, 1, 1, 3))
    ramp = np.linspace(-25, 25, size)[None, :, None, None] * rng.choice([-1, 1], (n, 1, 1, 1))
    return np.clip(base + ramp + rng.normal(0, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)


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
