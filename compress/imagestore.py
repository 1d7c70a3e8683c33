"""Images on disk instead of in memory: a pool of any size is decoded once into an anonymous temp file (uint8
NHWC rows, deleted by the OS when closed) and read back a batch at a time with pread, so a training process
holds one batch, not the pool. Reads go through the page cache, which the kernel gives back under pressure and
which is not the process's resident memory (a memory map would be: every page it touched would count)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgecore.io import ensure_dir
from .data import load_images

DECODE_BATCH = 256  # images decoded (and held) at once while the file is written


class DiskImages:
    """uint8 [N, H, W, 3] images in a file. Indexing returns the rows in memory, like an array: an int, a slice,
    an int or bool numpy array give numpy; a torch index tensor gives a torch uint8 tensor."""

    def __init__(self, file, n: int, height: int, width: int):
        self._file, self.shape = file, (int(n), int(height), int(width), 3)
        self._row = height * width * 3
        self.dtype = np.dtype(np.uint8)

    @classmethod
    def decode(cls, run_dir, items: list[dict], size: int | tuple[int, int], folder) -> "DiskImages":
        """Decode `items` with compress.data.load_images (the same pixels) into a temp file in `folder`."""
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        f = tempfile.TemporaryFile(dir=ensure_dir(Path(folder)), prefix=".images-")
        try:
            for i in range(0, len(items), DECODE_BATCH):
                f.write(load_images(run_dir, items[i:i + DECODE_BATCH], (h, w)).tobytes())
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(f, len(items), h, w)

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        fd, size = self._file.fileno(), self._row
        flat = out.reshape(len(rows), size)
        k = 0
        while k < len(rows):  # consecutive rows in one read
            end = k + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            want, view = (end - k) * size, memoryview(flat[k:end]).cast("B")
            got = os.preadv(fd, [view], int(rows[k]) * size)
            if got != want:
                raise OSError(f"image store: short read ({got} of {want} bytes)")
            k = end
        return out

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor):
            return torch.from_numpy(self._rows(self._check(index.numpy())))
        if isinstance(index, slice):
            return self._rows(np.arange(len(self))[index])
        if isinstance(index, (int, np.integer)):
            return self._rows(self._check(np.array([index])))[0]
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for {len(self)} images")
            index = np.flatnonzero(index)
        return self._rows(self._check(index))

    def _check(self, rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"image index out of range for {len(self)} images")
        return rows


def batch_source(images):
    """What training indexes batches from: a DiskImages as it is, an array as a torch tensor."""
    return images if isinstance(images, DiskImages) else torch.as_tensor(images)
