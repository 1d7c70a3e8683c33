"""DiskImages: the pool decoded to a temp file and read a batch at a time gives the same pixels as the in-memory
array, and the distill stage trains the same bytes from it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compress import distill
from compress.data import load_dataset, load_images
from compress.imagestore import DiskImages, batch_source
from _tiny_run import distill_config, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("store") / "run")


def test_rows_equal_the_decoded_array(run, tmp_path):
    items = load_dataset(run).items
    ref = load_images(run, items, (20, 24))
    store = DiskImages.decode(run, items, (20, 24), tmp_path)
    assert len(store) == len(ref) and store.shape == ref.shape
    assert list(tmp_path.iterdir()) == []  # an anonymous file: nothing to clean up, nothing to plant
    idx = np.array([5, 0, 6, 7, 8, len(ref) - 1, 5])
    assert np.array_equal(store[idx], ref[idx])
    assert np.array_equal(store[3:40:3], ref[3:40:3]) and np.array_equal(store[:], ref)
    assert np.array_equal(store[-1], ref[-1]) and np.array_equal(store[np.int64(2)], ref[2])
    mask = np.arange(len(ref)) % 3 == 0
    assert np.array_equal(store[mask], ref[mask])
    t = store[torch.tensor([9, 1, 2])]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and torch.equal(t, torch.as_tensor(ref)[[9, 1, 2]])
    assert store[np.array([], np.int64)].shape == (0, 20, 24, 3)
    with pytest.raises(IndexError):
        store[np.array([len(ref)])]
    assert batch_source(store) is store and isinstance(batch_source(ref), torch.Tensor)
    store.close()


def test_distill_from_disk_equals_distill_from_memory(distilled_run, tmp_path, monkeypatch):
    """The stage's default (images in a DiskImages file) and the same stage with the pool in memory write
    byte-identical student and baseline models."""
    disk, _ = distilled_run  # make_run + distill_run(distill_config()): the stage's default
    memory = make_run(tmp_path / "memory")
    real = distill.kd_training_set
    with monkeypatch.context() as m:
        m.setattr(distill, "kd_training_set", lambda run_dir, size, teacher, spill_dir=None:
                  real(run_dir, size, teacher))
        distill.distill_run(memory, distill_config())
    for name in ("student_float.pt", "baseline_float.pt"):
        assert (disk / "student" / name).read_bytes() == (memory / "student" / name).read_bytes()
    assert not [f for f in (disk / "student").iterdir() if f.name.startswith(".images")]
