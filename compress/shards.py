"""Sharded teacher labelling: which images shard k of n owns, and batches whose results do not
depend on which other images share them, so n shards merged equal one unsharded run byte for byte."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from .errors import UserError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"k/n"` (0 <= k < n) -> (k, n); None stays None (no sharding)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard must be k/n with 0 <= k < n (e.g. 0/4 ... 3/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_of(sha256: str, n: int) -> int:
    """The shard of an image: its content hash's first 64 bits modulo n (stable across machines)."""
    try:
        return int(sha256[:16], 16) % n
    except ValueError:
        raise UserError(f"image hash {sha256!r} is not a hex sha256; re-run the data stage") from None


def select(items: list[dict], shard: tuple[int, int] | None) -> list[dict]:
    if shard is None:
        return list(items)
    k, n = shard
    return [it for it in items if shard_of(it["sha256"], n) == k]


def predict_fixed_shape(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int) -> np.ndarray:
    """Run `predict` on batches of exactly `batch` images (the last one padded with copies of its last
    image). Kernels pick their summation order from the tensor shape, so with one shape an image's
    probabilities do not depend on its batch-mates, and shards reproduce the unsharded labels."""
    outs = []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(predict(chunk))[:batch - pad])
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
