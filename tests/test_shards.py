"""Sharded labelling: shards partition the dataset, and 4 shards merged equal one unsharded run byte for byte."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from compress.errors import UserError
from compress.shards import parse_shard, predict_fixed_shape, select, shard_of


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard(" 3 / 4 ") == (3, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "-1/4", "a/b", "1/0"):
        with pytest.raises(UserError, match="--shard must be k/n"):
            parse_shard(bad)


def test_shards_partition_the_dataset():
    items = [{"sha256": hashlib.sha256(str(i).encode()).hexdigest()} for i in range(400)]
    parts = [select(items, (k, 4)) for k in range(4)]
    hashes = [it["sha256"] for part in parts for it in part]
    assert sorted(hashes) == sorted(it["sha256"] for it in items)  # disjoint and complete
    assert all(60 < len(p) < 140 for p in parts)  # roughly balanced
    assert shard_of("f" * 64, 4) == int("f" * 16, 16) % 4
    with pytest.raises(UserError, match="not a hex sha256"):
        shard_of("train-0001", 4)


def test_fixed_shape_batches_make_shards_byte_identical(tmp_path):
    """The property sharding relies on, checked on the tiny Qwen2.5-VL: padded fixed-shape batches
    give every image the same bytes whichever images share its batch."""
    pytest.importorskip("transformers")
    import torch

    from compress.teachers.qwen_vl import QwenVLTeacher
    from compress.teachers.tiny_qwen_vl import build

    torch.set_num_threads(1)
    classes = ["basic", "burnt", "mixed"]
    teacher = QwenVLTeacher(classes, build(tmp_path / "tiny", classes), seed=0, batch_size=64)
    images = np.random.default_rng(1).integers(0, 256, (11, 56, 56, 3), dtype=np.uint8)
    hashes = [hashlib.sha256(a.tobytes()).hexdigest() for a in images]
    whole = predict_fixed_shape(teacher.predict_proba, images, 4)
    merged = np.full_like(whole, np.nan)
    for k in range(4):
        idx = [i for i, h in enumerate(hashes) if shard_of(h, 4) == k]
        if idx:
            merged[idx] = predict_fixed_shape(teacher.predict_proba, images[idx], 4)
    assert whole.shape == (11, 3)
    assert merged.tobytes() == whole.tobytes()
