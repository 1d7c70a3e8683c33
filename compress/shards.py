"""Sharded teacher labelling: which label-cache chunks shard k of n computes.

The teach stage cuts the sha256-sorted image list into fixed chunks (`--teacher-chunk`); chunk j belongs
to shard j mod n. A shard therefore runs exactly the batches an unsharded run would, so n shards'
cache files merged give the same soft_labels.npz byte for byte (same hardware and software)."""
from __future__ import annotations

import re

from edgecore.errors import UserError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"k/n"` (0 <= k < n) -> (k, n); None stays None (no sharding)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard must be k/n with 0 <= k < n (e.g. 0/4 ... 3/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def owns(chunk_index: int, shard: tuple[int, int] | None) -> bool:
    return shard is None or chunk_index % shard[1] == shard[0]
