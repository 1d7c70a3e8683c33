"""`teach --engine ray`: label the label cache's chunks on a Ray cluster (Ray Data, an actor pool).

The driver (the machine running `python -m compress teach`) fits a trainable teacher once, as the in-process
engine does, and saves it under R/teacher/; it then hands Ray one row per chunk still to label. Each actor builds
the teacher once from the same command-line options, loads the fitted weights from R/teacher/ (so R must be on a
filesystem every node can read, like the images), and labels the chunks it is given with `teach.label_chunk`,
the function the in-process engine calls: same chunk, same batches, same bytes in the cache. When the pool is
done, the driver builds soft_labels.npz from the cache exactly like `--merge`.

Faults: an actor that dies is restarted by Ray and its chunk handed out again; a RuntimeError, OSError or
MemoryError raised while labelling is retried too (at most RETRIES times per chunk). Every chunk is written
atomically, so a chunk labelled twice is written twice with the same bytes, and Ctrl-C leaves a cache the next
run resumes from.
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgecore.errors import UserError

from .data import load_dataset
from .teach import data_key, fit_pool, label_all, label_chunk, plan_chunks
from .teachers.base import TEACHERS

EXTRA = "pip install -e '.[scale]'"
RETRIES = 3  # restarts of a dead actor, and retries of a chunk whose labelling raised
RETRIED_ERRORS = [RuntimeError, OSError, MemoryError]  # a UserError (bad image, bad option) is not retried


def add_arguments(g) -> None:
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="who labels the chunks: 'local' (this process, default) or 'ray' (a Ray Data actor pool, "
                        "one teacher per actor and one GPU per actor where the cluster has GPUs; needs the "
                        f"'scale' extra: {EXTRA}; docs/scale-out.md)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--engine ray: address of a running Ray cluster ('auto', 'HOST:6379' or "
                        "'ray://HOST:10001'); default: start a local one on this machine's CPUs and GPUs")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="--engine ray: teacher actors (default: one per GPU of the cluster, else one per CPU)")


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"--engine ray needs Ray, the optional 'scale' extra: {EXTRA}") from None
    return ray


class ChunkLabeller:
    """A Ray Data actor: one teacher, built once, labelling whole cache chunks into R/teacher/cache/."""

    def __init__(self, teacher_target: str, classes: list[str], args, run_dir: str, fitted_on: str | None,
                 cache_key: str, chunk: int):
        module, _, attr = teacher_target.partition(":")
        self.run_dir = Path(run_dir)
        self.teacher = getattr(importlib.import_module(module), attr).from_args(classes, args,
                                                                                self.run_dir / "teacher")
        if self.teacher.trainable and not self.teacher.load_fitted(fitted_on):
            raise UserError(f"the fitted {self.teacher.name} teacher under {self.run_dir / 'teacher'} is missing or "
                            "differs on this node: R must be on a filesystem every Ray node reads")
        if self.teacher.cache_key() != cache_key:
            raise UserError(f"teacher on this node has cache key {self.teacher.cache_key()}, the driver's is "
                            f"{cache_key}: give every node the same model files and package versions")
        ds = load_dataset(self.run_dir)
        self.first = {}
        for it in ds.items:
            self.first.setdefault(it["sha256"], it)
        hashes = sorted(self.first)
        self.slices = [hashes[i:i + chunk] for i in range(0, len(hashes), chunk)]
        self.cache_dir = self.run_dir / "teacher" / "cache" / cache_key

    def __call__(self, batch: dict) -> dict:
        chunks = [int(j) for j in batch["chunk"]]
        for j in chunks:
            label_chunk(self.teacher, self.run_dir, self.first, self.cache_dir, j, self.slices[j])
        return {"chunk": np.array(chunks, np.int64),
                "images": np.array([len(self.slices[j]) for j in chunks], np.int64),
                "pid": np.full(len(chunks), os.getpid(), np.int64)}


def _connect(ray, address: str | None) -> bool:
    """Join `address` or start a local cluster; True when this call started Ray (and must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=256 * 2**20, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise UserError(f"cannot start or reach {where}: {str(e).splitlines()[0][:200]}") from None
    return True


def _user_error_in(e: BaseException) -> UserError | None:
    """The UserError an actor raised, if that is what failed the run (Ray wraps it in its own exceptions)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def label_with_ray(teacher, args, run_dir: Path, ds, shard=None):
    """`teach.label_all` on a Ray cluster: (sorted hashes, probabilities or None for a shard, images labelled
    now). The teacher given is the driver's, already fitted (trainable teachers) and only used for its cache key
    and to read the finished cache."""
    ray = import_ray()
    if args.ray_actors is not None and args.ray_actors < 1:
        raise UserError(f"--ray-actors must be at least 1, got {args.ray_actors}")
    _, _, _, _, todo = plan_chunks(teacher, run_dir, ds, args.teacher_chunk, shard)
    labelled = 0
    if todo:
        started = _connect(ray, args.ray_address)
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.actor_task_retry_on_errors, ctx.enable_progress_bars)
        try:
            ctx.actor_task_retry_on_errors, ctx.enable_progress_bars = RETRIED_ERRORS, False
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            actors = min(args.ray_actors or gpus or max(1, int(resources.get("CPU", 1))), len(todo))
            per_actor = {"num_gpus": 1} if gpus else {"num_cpus": 1}
            rows = ray.data.from_items([{"chunk": j} for j, _ in todo], override_num_blocks=len(todo))
            fitted_on = data_key(ds, fit_pool(ds, args.teacher_fit_pool, args.seed)) if teacher.trainable else None
            with warnings.catch_warnings():  # ray 2.60 (pinned) warns that restart options move in 2.64
                warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                results = rows.map_batches(
                    ChunkLabeller, batch_size=1, concurrency=actors, max_restarts=RETRIES, max_task_retries=RETRIES,
                    fn_constructor_kwargs={"teacher_target": TEACHERS[teacher.name], "classes": teacher.classes,
                                           "args": args, "run_dir": str(Path(run_dir).resolve()),
                                           "fitted_on": fitted_on, "cache_key": teacher.cache_key(),
                                           "chunk": args.teacher_chunk},
                    **per_actor)
            print(f"teach: {len(todo)} chunks to {actors} Ray actor(s) "
                  f"({'1 GPU' if gpus else '1 CPU'} each, cluster: {resources.get('CPU', 0):g} CPUs, {gpus} GPUs)")
            with tqdm(total=len(todo), desc=f"teach: label on Ray ({teacher.name})", unit="chunk") as bar:
                for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                    labelled += int(batch["images"].sum())
                    bar.update(len(batch["chunk"]))
        except Exception as e:  # noqa: BLE001 - only to unwrap a UserError raised inside an actor
            user = _user_error_in(e)
            if user is None:
                raise
            raise UserError(str(user)) from None
        finally:
            ctx.actor_task_retry_on_errors, ctx.enable_progress_bars = saved
            if started:
                ray.shutdown()
    hashes, probs, _ = label_all(teacher, run_dir, ds, args.teacher_chunk, shard, merge=True)
    return hashes, probs, labelled
