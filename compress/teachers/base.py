"""The Teacher interface every labeller implements, and the registry `compress.teach` picks them from."""
from __future__ import annotations

import hashlib
import importlib
import json

import numpy as np

from edgecore.errors import UserError


class Teacher:
    """Turns RGB uint8 images into class probabilities.

    Subclasses set `name`, `classes` (the order of the probability columns) and `image_size` (the side the
    images are resized to before `predict_proba`; None = whatever the caller has), and implement
    `predict_proba` and `cache_identity`. Teachers that learn from the training split set `trainable = True`
    and implement `load_fitted` and `fit`; zero-shot teachers (VLMs, imported label files) do not.
    """

    name: str = "teacher"
    classes: list[str]
    image_size: int | None = None
    trainable: bool = False

    @classmethod
    def from_args(cls, classes: list[str], args, work_dir) -> "Teacher":
        """Build the teacher from the parsed CLI options; `work_dir` (R/teacher) is where it may keep files."""
        return cls(classes)

    def load_fitted(self, data_key: str) -> bool:
        """Load weights fitted earlier on the training data identified by `data_key`; False if there are none."""
        return True

    def fit(self, train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
            val_labels: np.ndarray, data_key: str, unlabeled_images: np.ndarray | None = None) -> dict:
        """Fit on the labelled training images (choosing with val), save the result, return metrics.
        `unlabeled_images` (the pool, no labels) may be used for semi-supervised fitting."""
        return {}

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, C] probabilities (rows sum to 1), columns in `classes` order."""
        raise NotImplementedError

    def cache_identity(self) -> dict:
        """Everything that changes the labels (weights fingerprint, prompt, resolution...): JSON-serialisable."""
        raise NotImplementedError

    def cache_key(self) -> str:
        """Stable folder name for the label cache; changes whenever `cache_identity()` does."""
        blob = json.dumps(self.cache_identity(), sort_keys=True, separators=(",", ":")).encode()
        return f"{self.name}-{hashlib.sha256(blob).hexdigest()[:16]}"


# name -> "module:Class", imported on use so a teacher's heavy dependencies load only when it is picked.
TEACHERS: dict[str, str] = {}


def register_teacher(name: str, target: str) -> None:
    """Make `--teacher name` build the Teacher subclass `target` ("package.module:Class"); the built-in teachers
    below are registered the same way as one from your own module."""
    module, _, attr = target.partition(":")
    if not module or not attr.isidentifier():
        raise ValueError(f"teacher target must be 'module:Class', got {target!r}")
    TEACHERS[name] = target


register_teacher("effnet-lite0", "compress.teachers.effnet:EffNetLite0Teacher")
register_teacher("qwen2.5-vl", "compress.teachers.qwen_vl:QwenVLTeacher")
register_teacher("spatial-mllm", "compress.teachers.spatial_mllm:SpatialMLLMTeacher")
register_teacher("labels-file", "compress.teachers.labels_file:LabelsFileTeacher")


def teacher_class(name: str) -> type[Teacher]:
    if name not in TEACHERS:
        raise UserError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(TEACHERS))}")
    module, _, attr = TEACHERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
