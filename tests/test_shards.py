"""Sharded labelling: 4 shards labelled in separate run folders, caches copied together and merged, equal
one unsharded run byte for byte."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compress import data
from edgecore.errors import UserError
from compress.shards import owns, parse_shard
from test_teach import label


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard(" 3 / 4 ") == (3, 4) and parse_shard(None) is None
    for bad in ("4/4", "1", "-1/4", "a/b", "1/0"):
        with pytest.raises(UserError, match="--shard must be k/n"):
            parse_shard(bad)
    assert [j for j in range(10) if owns(j, (1, 4))] == [1, 5, 9]
    assert all(sum(owns(j, (k, 4)) for k in range(4)) == 1 for j in range(10))


@pytest.fixture(scope="module")
def whole(taught_run) -> Path:
    """The unsharded run: data + effnet-lite0 teacher, labelled in process (conftest.py; the Ray tests'
    reference too)."""
    return taught_run


def test_four_shards_merged_equal_unsharded(whole, tmp_path):
    reference = (whole / "teacher" / "soft_labels.npz").read_bytes()
    merged = tmp_path / "merged"
    labelled = []
    for k in range(4):
        # Each job gets its own copy of the run folder (dataset + the fitted teacher, no labels).
        job = tmp_path / f"job{k}"
        shutil.copytree(whole / "data", job / "data")
        shutil.copytree(whole / "teacher" / "effnet-lite0", job / "teacher" / "effnet-lite0")
        m = label(job, shard=f"{k}/4")
        assert not (job / "teacher" / "soft_labels.npz").exists()
        labelled.append(m["teacher_labelled_now"])
        shutil.copytree(job / "teacher", merged / "teacher", dirs_exist_ok=True)
    shutil.copytree(whole / "data", merged / "data")
    assert sum(labelled) == len({it["sha256"] for it in data.load_dataset(whole).items})
    assert all(n > 0 for n in labelled)
    m = label(merged, merge=True)
    assert m["teacher_labelled_now"] == 0
    assert (merged / "teacher" / "soft_labels.npz").read_bytes() == reference


def test_merge_names_what_is_missing(whole, tmp_path):
    job = tmp_path / "job"
    shutil.copytree(whole / "data", job / "data")
    shutil.copytree(whole / "teacher" / "effnet-lite0", job / "teacher" / "effnet-lite0")
    label(job, shard="0/4")
    with pytest.raises(UserError, match=r"--merge: \d+ of \d+ images have no label .* \(chunks 1, 2"):
        label(job, merge=True)
    assert not (job / "teacher" / "soft_labels.npz").exists()
    with pytest.raises(UserError, match="separate steps"):
        label(job, merge=True, shard="1/4")
