"""Stage "teach": fit (or load) the teacher, then label every image, caching soft labels by image hash.

The cache lives in R/teacher/cache/<teacher cache_key>/ as chunk files written atomically. Chunks are fixed
slices of the sorted list of image hashes, so a resumed run computes exactly the batches an uninterrupted run
would and the final R/teacher/soft_labels.npz is byte-identical either way.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import load_dataset, load_images
from edgecore.config import from_args
from edgecore.errors import UserError
from edgecore.io import atomic_path, ensure_dir
from edgecore.manifest import record_stage, verify_inputs
from .imagestore import DiskImages
from .shards import owns, parse_shard
from .teachers.base import TEACHERS, teacher_class
from .teachers.calibration import calibration


def add_arguments(p: argparse.ArgumentParser) -> None:
    from . import ray_engine
    from .teachers import effnet, qwen_vl

    g = p.add_argument_group("teach")
    g.add_argument("--teacher", default="effnet-lite0",
                   help=f"which teacher labels the images: {', '.join(sorted(TEACHERS))} (default effnet-lite0)")
    g.add_argument("--teacher-chunk", type=int, default=256,
                   help="images per label-cache chunk; an interrupted run redoes at most one chunk (default 256)")
    g.add_argument("--shard", default=None, metavar="K/N",
                   help="label only cache chunks j with j %% N == K (0 <= K < N), for N parallel jobs; "
                        "then copy the caches together and run --merge (docs/scale-out.md)")
    g.add_argument("--merge", action="store_true",
                   help="label nothing: build soft_labels.npz from the cache (all shards' chunks); "
                        "fails if an image has no label yet")
    g.add_argument("--teacher-fit-pool", type=int, default=4096, metavar="N",
                   help="a trainable teacher (effnet-lite0) pseudo-labels at most N unlabeled pool images while "
                        "fitting, a seeded sample when the pool is larger, so its memory stops growing with the "
                        "pool; every pool image is still labelled (default 4096)")
    g.add_argument("--teacher-labels", type=Path, default=None,
                   help="labels-file: soft labels to import (.csv, .parquet or a Parquet folder)")
    effnet.add_arguments(g)
    qwen_vl.add_arguments(g)
    ray_engine.add_arguments(g)


def write_npz(path, **arrays) -> None:
    """np.savez with fixed zip timestamps, so equal arrays give byte-identical files; written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def fit_pool(ds, limit: int, seed: int) -> list[dict]:
    """The pool images a trainable teacher may pseudo-label: all of them, or a seeded sample of `limit` (in
    dataset order) when the pool is larger, so fitting costs the same memory whatever the pool's size."""
    pool = ds.split("pool")
    if len(pool) <= limit:
        return pool
    keep = np.sort(np.random.default_rng([int(seed), 0x5E1F]).choice(len(pool), limit, replace=False))
    return [pool[i] for i in keep]


def data_key(ds, pool: list[dict], splits=("train", "val")) -> str:
    """Identifies what a trainable teacher learns from: hashes, labels and splits of train and val, and the
    hashes (never the labels) of the unlabeled pool images it may pseudo-label (`fit_pool`)."""
    rows = sorted((it["sha256"], it["label"], it["split"]) for it in ds.items if it["split"] in splits)
    pool = sorted(it["sha256"] for it in pool)
    blob = json.dumps({"classes": ds.classes, "rows": rows, "pool": pool}, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _read_cache(cache_dir: Path, n_classes: int) -> dict[str, np.ndarray]:
    done = {}
    for f in sorted(cache_dir.glob("chunk-*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                hashes, probs = z["hashes"], z["probs"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            f.unlink()  # unreadable leftovers are recomputed
            continue
        if probs.shape == (len(hashes), n_classes):
            done.update(zip(hashes.tolist(), probs))
    return done


def plan_chunks(teacher, run_dir: Path, ds, chunk: int, shard=None):
    """The label cache's plan: first item per hash, the sorted unique hashes, the cache folder (stale temp files
    removed), the labels already cached, and the chunks (j, hashes) this shard still has to label."""
    first = {}
    for it in ds.items:
        first.setdefault(it["sha256"], it)
    hashes = sorted(first)
    cache_dir = ensure_dir(run_dir / "teacher" / "cache" / teacher.cache_key())
    for stale in cache_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)  # another engine's worker may have removed it first
    done = _read_cache(cache_dir, len(teacher.classes))
    slices = [hashes[i:i + chunk] for i in range(0, len(hashes), chunk)]
    todo = [(j, hs) for j, hs in enumerate(slices) if owns(j, shard) and not all(h in done for h in hs)]
    return first, hashes, cache_dir, done, todo


def label_chunk(teacher, run_dir: Path, first: dict, cache_dir: Path, j: int, hs: list[str]) -> np.ndarray:
    """Label chunk j (its sorted hashes `hs`) and write it to the cache atomically; every engine calls this, so
    in-process, sharded and Ray runs write the same bytes for the same chunk."""
    if getattr(teacher, "needs_images", True):
        images = load_images(run_dir, [first[h] for h in hs], teacher.image_size)
        probs = np.asarray(teacher.predict_proba(images), np.float32)
    else:  # imported labels are looked up by hash
        probs = np.asarray(teacher.labels_for(hs), np.float32)
    if probs.shape != (len(hs), len(teacher.classes)) or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"teacher {teacher.name} returned {probs.shape} probabilities for {len(hs)} images")
    digest = hashlib.sha256("".join(hs).encode()).hexdigest()[:12]
    write_npz(cache_dir / f"chunk-{j:05d}-{digest}.npz", hashes=np.array(hs), probs=probs)
    return probs


def label_all(teacher, run_dir: Path, ds, chunk: int, shard=None, merge: bool = False):
    """Sorted unique hashes, their probabilities (teacher column order; None for a shard, which labels only
    its chunks) and how many were labelled now. `merge` labels nothing and requires every chunk cached."""
    first, hashes, cache_dir, done, todo = plan_chunks(teacher, run_dir, ds, chunk, shard)
    if merge and todo:
        missing = sum(h not in done for _, hs in todo for h in hs)
        raise UserError(f"--merge: {missing} of {len(hashes)} images have no label in {cache_dir} (chunks "
                        f"{', '.join(str(j) for j, _ in todo[:8])}{', ...' if len(todo) > 8 else ''}); run or copy "
                        "the missing shards first")
    labelled = 0
    for j, hs in tqdm(todo, desc=f"teach: label ({teacher.name})", unit="chunk"):
        done.update(zip(hs, label_chunk(teacher, run_dir, first, cache_dir, j, hs)))
        labelled += len(hs)
    if shard is not None:
        return hashes, None, labelled
    return hashes, np.stack([done[h] for h in hashes]) if hashes else np.zeros((0, len(teacher.classes))), labelled


def _quality(ds, split: str, index: dict, probs: np.ndarray) -> dict:
    """Accuracy and calibration of the labels on a split, over the images whose true label is known (the pool's
    procedural labels are read here, for this measurement only)."""
    items = ds.split(split)
    truth = ds.pool_labels(items) if split == "pool" else ds.labels(items)
    known = truth >= 0
    if not known.any():
        return {f"teacher_{split}_acc": None}
    p = probs[[index[it["sha256"]] for it in items]][known]
    out = {f"teacher_{split}_acc": float(np.mean(p.argmax(1) == truth[known]))}
    if split in ("pool", "test"):
        cal = calibration(p, truth[known])
        out.update({f"teacher_{split}_ece": cal["ece"], f"teacher_{split}_confidence": cal["mean_confidence"]})
    return out


def _val_calibration(teacher, run_dir: Path, ds, index: dict, probs: np.ndarray) -> dict:
    """ECE and mean confidence of the labels on the validation split; VLM teachers add how much the
    option order sways them (re-scored once per cache key, then read from the cache folder)."""
    val = ds.split("val")
    if not val:
        return {}
    labels = ds.labels(val)
    cal = calibration(probs[[index[it["sha256"]] for it in val]], labels)
    out = {"teacher_val_ece": cal["ece"], "teacher_val_confidence": cal["mean_confidence"]}
    if hasattr(teacher, "diagnose"):
        path = run_dir / "teacher" / "cache" / teacher.cache_key() / "val-diagnosis.json"
        key = hashlib.sha256("".join(it["sha256"] for it in val).encode()).hexdigest()
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved.get("val") != key:
            saved = {"val": key, "report": teacher.diagnose(load_images(run_dir, val, teacher.image_size), labels)}
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(saved))
        rep = saved["report"]
        out.update({"teacher_val_position_pick_rate": rep["position_pick_rate"],
                    "teacher_val_order_agreement": rep["order_agreement"],
                    "teacher_val_order_accuracy": rep["order_accuracy"]})
    return out


@dataclass(frozen=True)
class TeachConfig:
    """Options of the teach stage and of every teacher and engine (`python -m compress teach --help`); a teacher's
    `from_args` reads its own fields."""
    teacher: str = "effnet-lite0"
    teacher_chunk: int = 256
    shard: str | None = None                # "K/N"
    merge: bool = False
    teacher_fit_pool: int = 4096
    teacher_labels: Path | None = None      # labels-file
    teacher_size: int = 128                 # effnet-lite0
    teacher_hidden: int = 256
    teacher_epochs: int = 25
    teacher_batch: int = 64
    teacher_lr: float = 1e-3
    teacher_threads: int = 2
    teacher_self_train: int = 1
    teacher_confidence: float = 0.7
    teacher_model: Path | None = None       # qwen2.5-vl, spatial-mllm
    teacher_orders: int | None = None
    teacher_vlm_batch: int = 4
    teacher_vlm_size: int = 448
    spatial_mllm_root: str | None = None
    engine: str = "local"                   # or "ray"
    ray_address: str | None = None
    ray_actors: int | None = None
    seed: int = 0


def run(args) -> dict:
    return teach_run(Path(args.run), from_args(TeachConfig, args))


def teach_run(run_dir: Path, config: TeachConfig) -> dict:
    """Stage teach: R/data/ -> R/teacher/soft_labels.npz (and the label cache); returns its metrics."""
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    ds = load_dataset(run_dir)
    if config.teacher_chunk < 1:
        raise UserError(f"--teacher-chunk must be at least 1, got {config.teacher_chunk}")
    if config.teacher_fit_pool < 0:
        raise UserError(f"--teacher-fit-pool must be at least 0, got {config.teacher_fit_pool}")
    shard = parse_shard(config.shard)
    if shard is not None and config.merge:
        raise UserError("--shard and --merge are separate steps: label each shard, then --merge once")
    if config.engine == "ray":
        from .ray_engine import import_ray

        import_ray()  # without the extra: one line naming it, before any fitting
    teacher = teacher_class(config.teacher).from_args(ds.classes, config, run_dir / "teacher")
    if set(teacher.classes) != set(ds.classes) or len(teacher.classes) != len(ds.classes):
        raise UserError(f"teacher {teacher.name} knows classes {sorted(teacher.classes)} but the dataset has "
                        f"{sorted(ds.classes)}")
    metrics: dict = {"teacher": teacher.name}
    if teacher.trainable:
        pool = fit_pool(ds, config.teacher_fit_pool, config.seed)
        key = data_key(ds, pool)
        if teacher.load_fitted(key):
            print(f"teach: {teacher.name} already fine-tuned on this training split; reusing its weights")
        else:
            train, val = ds.split("train"), ds.split("val")
            if not train:
                raise UserError("the dataset has no training images to fit the teacher on")
            # The pool is read from a temp file a block at a time, never held in memory whole.
            unlabeled = DiskImages.decode(run_dir, pool, teacher.image_size, run_dir / "teacher")
            try:
                metrics.update(teacher.fit(load_images(run_dir, train, teacher.image_size), ds.labels(train),
                                           load_images(run_dir, val, teacher.image_size), ds.labels(val), key,
                                           unlabeled_images=unlabeled))
            finally:
                unlabeled.close()
            metrics["teacher_fit_pool_of"] = len(ds.split("pool"))
    if config.engine == "ray" and not config.merge:
        from .ray_engine import label_with_ray

        hashes, probs, labelled = label_with_ray(teacher, config, run_dir, ds, shard)
    else:
        hashes, probs, labelled = label_all(teacher, run_dir, ds, config.teacher_chunk, shard, config.merge)
    if shard is not None:
        print(f"teach: shard {config.shard} labelled {labelled} images into {run_dir / 'teacher' / 'cache'}; "
              "run --merge once every shard is done")
        return {"teacher": teacher.name, "teacher_shard": config.shard, "teacher_labelled_now": labelled,
                "teacher_cache_key": teacher.cache_key(), "teach_seconds": round(time.perf_counter() - t0, 2)}
    probs = probs[:, [teacher.classes.index(c) for c in ds.classes]]  # columns in the dataset's class order
    out = run_dir / "teacher" / "soft_labels.npz"
    write_npz(out, hashes=np.array(hashes), probs=probs.astype(np.float32), classes=np.array(ds.classes))
    index = {h: i for i, h in enumerate(hashes)}
    for split in ("train", "val", "pool", "test"):
        metrics.update(_quality(ds, split, index, probs))  # None (printed "not run") when nothing is known
    metrics.update(_val_calibration(teacher, run_dir, ds, index, probs))
    metrics.update({"teacher_cache_key": teacher.cache_key(), "teacher_labelled_now": labelled,
                    "teacher_labelled_cached": len(hashes) - labelled,
                    "teach_seconds": round(time.perf_counter() - t0, 2)})
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()
              if k.startswith("teacher") or k in ("seed", "shard", "merge")}
    record_stage(run_dir, "teacher", inputs=[run_dir / "data" / "dataset.json"], outputs=[out], params=params,
                 metrics=metrics, seed=config.seed)
    print(f"teach: {len(hashes)} images labelled ({labelled} now, {len(hashes) - labelled} from cache); "
          f"teacher val {metrics['teacher_val_acc']}, pool {metrics['teacher_pool_acc']}, "
          f"test {metrics['teacher_test_acc']} -> {out}")
    return metrics
