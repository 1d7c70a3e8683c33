"""`teach --engine ray` on a local 2-CPU Ray cluster: the same label cache and soft_labels.npz as the in-process
engine (effnet-lite0 and the tiny offline Qwen2.5-VL), an actor that raises or dies once, Ctrl-C and resume,
and a one-line error without the extra."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compress import data
from edgecore.errors import UserError
from test_teach import TINY_TEACHER, label, make_data

ray = pytest.importorskip("ray", reason="the 'scale' extra is not installed: pip install -e '.[scale]'")
import _ray_faults  # noqa: E402 - registers the misbehaving teachers

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module; the engine joins it instead of starting its own. Its workers import the
    misbehaving teachers from tests/, like a user's own teacher module from a path every node has."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(taught_run) -> Path:
    """The in-process engine's run: data + effnet-lite0 teacher, 36 images in 5 chunks of 8 (conftest.py; the
    shard tests' unsharded run too)."""
    return taught_run


def _copy_data(reference: Path, dst: Path) -> Path:
    shutil.copytree(reference / "data", dst / "data")
    shutil.copy(reference / "manifest.json", dst / "manifest.json")
    return dst


def _chunks(run: Path, teacher: str) -> dict[str, bytes]:
    (folder,) = (run / "teacher" / "cache").glob(f"{teacher}-*")
    return {f.name: f.read_bytes() for f in sorted(folder.glob("chunk-*.npz"))}


def _hashes_in_cache(run: Path, teacher: str) -> list[str]:
    (folder,) = (run / "teacher" / "cache").glob(f"{teacher}-*")
    out = []
    for f in sorted(folder.glob("chunk-*.npz")):
        with np.load(f) as z:
            out += z["hashes"].tolist()
    return out


def _n_images(run: Path) -> int:
    return len({it["sha256"] for it in data.load_dataset(run).items})


def test_ray_engine_equals_in_process_byte_for_byte(cluster, reference, tmp_path):
    run = _copy_data(reference, tmp_path / "ray")
    m = label(run, engine="ray")
    assert m["teacher_labelled_now"] == _n_images(run) == 36
    assert (run / "teacher" / "soft_labels.npz").read_bytes() == \
        (reference / "teacher" / "soft_labels.npz").read_bytes()
    assert _chunks(run, "effnet-lite0") == _chunks(reference, "effnet-lite0")  # the same 5 chunk files
    # A second run finds everything cached and starts no actor.
    m = label(run, engine="ray")
    assert m["teacher_labelled_now"] == 0 and m["teacher_labelled_cached"] == 36


def test_ray_shards_merge_with_in_process_shards(cluster, reference, tmp_path):
    """Shard 0/2 on Ray, shard 1/2 in process, caches copied together and merged: the unsharded bytes."""
    merged = _copy_data(reference, tmp_path / "merged")
    for k, engine in ((0, "ray"), (1, "local")):
        job = _copy_data(reference, tmp_path / f"job{k}")
        shutil.copytree(reference / "teacher" / "effnet-lite0", job / "teacher" / "effnet-lite0")
        label(job, shard=f"{k}/2", engine=engine)
        shutil.copytree(job / "teacher", merged / "teacher", dirs_exist_ok=True)
    label(merged, merge=True)
    assert (merged / "teacher" / "soft_labels.npz").read_bytes() == \
        (reference / "teacher" / "soft_labels.npz").read_bytes()


@pytest.mark.parametrize("teacher", ["effnet-raises-once", "effnet-dies-once"])
def test_an_actor_that_fails_once_is_retried(cluster, reference, tmp_path, teacher):
    """The first chunk an actor labels raises, or kills the actor's process; Ray retries it (restarting the
    actor) and every image ends up labelled exactly once, with effnet-lite0's labels."""
    run = _copy_data(reference, tmp_path / teacher)
    m = label(run, teacher=teacher, engine="ray")
    assert (run / "teacher" / f"{teacher}.fault-done").is_file()  # the fault did happen
    hashes = _hashes_in_cache(run, teacher)
    assert len(hashes) == len(set(hashes)) == _n_images(run) == m["teacher_labelled_now"]
    assert (run / "teacher" / "soft_labels.npz").read_bytes() == \
        (reference / "teacher" / "soft_labels.npz").read_bytes()


def test_ctrl_c_leaves_a_resumable_cache(reference, tmp_path, monkeypatch):
    """SIGINT to `python -m compress teach --engine ray` once a chunk is cached: exit 130, no soft labels, the
    finished chunks kept; the next run labels only the rest and writes the uninterrupted bytes."""
    run = _copy_data(reference, tmp_path / "interrupted")
    argv = ["teach", "--run", str(run), "--teacher", "effnet-slow", "--engine", "ray", "--ray-actors", "1",
            *(f"--{k.replace('_', '-')}={v}" for k, v in TINY_TEACHER.items())]
    code = "import sys, _ray_faults; from compress.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    # Default SIGINT in the child, as a terminal gives it: an earlier test in this process may leave SIGINT ignored,
    # and an ignored disposition is inherited (seen in the full suite: the run then ignored Ctrl-C and finished).
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cache = run / "teacher" / "cache"
    deadline = time.monotonic() + 120
    while not list(cache.glob("effnet-slow-*/chunk-*.npz")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk was labelled within 120 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert not (run / "teacher" / "soft_labels.npz").exists()
    kept = len(_hashes_in_cache(run, "effnet-slow"))
    assert 0 < kept < 36

    monkeypatch.setattr(_ray_faults.Slow, "delay", 0.0)  # labels like effnet-slow, without the waits
    m = label(run, teacher="effnet-slow")  # resumed, here in process: the same cache
    assert m["teacher_labelled_cached"] == kept and m["teacher_labelled_now"] == 36 - kept
    assert (run / "teacher" / "soft_labels.npz").read_bytes() == \
        (reference / "teacher" / "soft_labels.npz").read_bytes()


def test_tiny_qwen_vl_on_ray_equals_in_process(cluster, tiny_qwen_vl, tmp_path):
    vlm = {"teacher": "qwen2.5-vl", "teacher_model": tiny_qwen_vl, "teacher_vlm_size": 56, "teacher_vlm_batch": 3,
           "teacher_orders": 2, "teacher_threads": 1}
    local = tmp_path / "local"
    make_data(local)
    remote = _copy_data(local, tmp_path / "remote")
    label(local, **vlm)
    m = label(remote, **vlm, engine="ray")
    assert m["teacher_labelled_now"] == 36
    assert (remote / "teacher" / "soft_labels.npz").read_bytes() == (local / "teacher" / "soft_labels.npz").read_bytes()
    assert _chunks(remote, "qwen2.5-vl") == _chunks(local, "qwen2.5-vl")


def test_without_the_extra_one_line_names_it(reference, tmp_path, monkeypatch):
    run = _copy_data(reference, tmp_path / "no-ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserError, match=r"^--engine ray needs Ray, the optional 'scale' extra: "
                                        r"pip install -e '\.\[scale\]'$"):
        label(run, engine="ray")
    assert not (run / "teacher").exists()  # refused before fitting anything
    code = "import sys; sys.modules['ray'] = None; from compress.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "teach", "--run", str(run), "--engine", "ray"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --engine ray needs Ray, the optional 'scale' extra: pip install -e '.[scale]'"
