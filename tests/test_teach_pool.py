"""The trainable teacher pseudo-labels at most --teacher-fit-pool pool images (a seeded sample), read from a
temp file in blocks; every pool image is still labelled."""
from __future__ import annotations

import numpy as np
import pytest

from compress import data, teach
from compress.data import Dataset
from edgecore.errors import UserError
from test_teach import label, make_data


def _ds(n_pool: int) -> Dataset:
    items = [{"path": f"p{i}.jpg", "sha256": f"{i:064x}", "label": None, "split": "pool"} for i in range(n_pool)]
    items.append({"path": "t.jpg", "sha256": "f" * 64, "label": "a", "split": "train"})
    return Dataset(classes=["a", "b"], items=items)


def test_fit_pool_is_the_pool_or_a_seeded_sample():
    ds = _ds(50)
    assert teach.fit_pool(ds, 50, 0) == ds.split("pool")  # not larger than the limit: all of it, in order
    assert teach.data_key(ds, teach.fit_pool(ds, 80, 0)) == teach.data_key(ds, ds.split("pool"))
    sample = teach.fit_pool(ds, 20, 0)
    rows = [int(it["sha256"], 16) for it in sample]
    assert len(sample) == 20 and rows == sorted(rows) and len(set(rows)) == 20  # dataset order, no repeats
    assert sample == teach.fit_pool(ds, 20, 0) and sample != teach.fit_pool(ds, 20, 1)
    assert teach.data_key(ds, sample) != teach.data_key(ds, ds.split("pool"))
    assert teach.fit_pool(ds, 0, 0) == []


def test_teach_fits_on_the_sample_and_labels_the_whole_pool(tmp_path):
    run = tmp_path / "run"
    make_data(run, data_train=6)
    n_pool = len(data.load_dataset(run).split("pool"))
    assert n_pool == 24
    m = label(run, teacher_fit_pool=10)
    assert m["teacher_fit_pool_images"] == 10 and m["teacher_fit_pool_of"] == n_pool
    with np.load(run / "teacher" / "soft_labels.npz") as z:
        assert len(z["hashes"]) == len({it["sha256"] for it in data.load_dataset(run).items})
    assert not [f for f in (run / "teacher").iterdir() if f.name.startswith(".images")]  # no temp file left
    with pytest.raises(UserError, match="--teacher-fit-pool must be at least 0"):
        label(run, teacher_fit_pool=-1)
