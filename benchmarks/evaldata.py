"""The user's own labelled photos beside the run's test split (`--eval-data DIR`, an ImageFolder
<DIR>/<class>/<image>), decoded exactly like the training and test images (compress.data.load_images: PIL, EXIF
transpose, RGB, bilinear resize to the model's input)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.data import IMAGE_EXTS, check_image, load_images
from edgecore.errors import UserError


@dataclass
class EvalFolder:
    root: Path
    files: list[tuple[Path, int]]  # readable images with their class index in the run's class order
    skipped: list[str]             # "path: reason" of each unreadable image

    @property
    def name(self) -> str:
        return f"your photos {self.root.name}/, {len(self.files)} images"

    @property
    def note(self) -> str:
        return f"{self.root}; {len(self.skipped)} unreadable image(s) skipped"

    def load(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 NHWC images, labels) at the model's input size."""
        x = load_images(self.root, [{"path": str(p)} for p, _ in self.files], size)
        return x, np.array([c for _, c in self.files], np.int64)


def index_eval_folder(root: Path, classes: list[str]) -> EvalFolder:
    """Check the folder against the run's classes and find its readable images; bad input is a UserError."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"--eval-data folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"--eval-data must be a folder (<DIR>/<class>/<image>), got a file: {root}")
    found = sorted(e.name for e in root.iterdir() if e.is_dir() and not e.name.startswith("."))
    if set(found) != set(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise UserError(f"class folders in {root} do not match the run's classes {','.join(classes)}: "
                        f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    root, files, skipped = root.resolve(), [], []  # absolute: load_images reads absolute paths as they are
    for index, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in IMAGE_EXTS:
                continue  # notes, thumbnails databases, hidden files: not photos
            reason = check_image(f)
            if reason is None:
                files.append((f, index))
            else:
                skipped.append(f"{f}: {reason}")
    if skipped:
        print(f"warning: {len(skipped)} unreadable image(s) in {root} skipped, e.g. {skipped[0]}", file=sys.stderr)
    if not files:
        raise UserError(f"--eval-data folder {root} has no readable images in its class folders "
                        f"({len(skipped)} unreadable skipped)")
    return EvalFolder(root, files, skipped)
