"""Stage "data": generate the procedural pizza set or index a user's ImageFolder -> R/data/dataset.json."""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from . import procedural
from .errors import UserError
from .io import ensure_dir, read_json, sha256_bytes, sha256_file, write_json_atomic
from .manifest import check_dataset, record_stage

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1


@dataclass
class Dataset:
    classes: list[str]
    items: list[dict]
    source: dict = field(default_factory=dict)

    def split(self, name: str) -> list[dict]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [it for it in self.items if it["split"] == name]

    def labels(self, items: list[dict]) -> np.ndarray:
        """Class indices (int64) of `items`, in the order of `classes`."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[it["label"]] for it in items], np.int64)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None,
                   help="your ImageFolder (<root>/<class>/<image>); default: the built-in procedural pizza set")
    g.add_argument("--classes", default=None,
                   help="comma-separated class names the data must have (default: the procedural six, or the "
                        "folder names of --data)")
    g.add_argument("--data-size", type=int, default=128, help="procedural image size in pixels (default 128)")
    g.add_argument("--data-train", type=int, default=300, help="procedural training images per class (default 300)")
    g.add_argument("--data-val", type=int, default=60, help="procedural validation images per class (default 60)")
    g.add_argument("--data-test", type=int, default=100, help="procedural test images per class (default 100)")
    g.add_argument("--data-val-frac", type=float, default=0.15, help="--data: fraction per class for val (0.15)")
    g.add_argument("--data-test-frac", type=float, default=0.15, help="--data: fraction per class for test (0.15)")
    g.add_argument("--data-workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes generating procedural images (default: min(2, cores))")


# --- loading (used by every later stage) --------------------------------------------------------------

def load_dataset(run_dir) -> Dataset:
    path = Path(run_dir) / "data" / "dataset.json"
    if not path.is_file():
        raise UserError(f"dataset manifest not found: {path} (run the data stage first)")
    d = read_json(path, "dataset manifest")
    check_dataset(run_dir, d)
    try:
        return Dataset(classes=list(d["classes"]), items=list(d["items"]), source=dict(d.get("source", {})))
    except (KeyError, TypeError):
        raise UserError(f"dataset manifest {path} lacks 'classes'/'items'; re-run the data stage") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB uint8 from any PIL mode; 16-bit and float greyscale are scaled, not clipped, to 0..255."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F" and a.max() <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def _item_path(run_dir: Path, item: dict) -> Path:
    p = Path(item["path"])
    return p if p.is_absolute() else run_dir / "data" / p


def load_images(run_dir, items, size) -> np.ndarray:
    """Decode `items` to RGB uint8 NHWC, resized with PIL bilinear. `size` is an int or (height, width)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    run_dir = Path(run_dir)
    out = np.empty((len(items), h, w, 3), np.uint8)
    for i, it in enumerate(items):
        path = _item_path(run_dir, it)
        try:
            with Image.open(path) as img:
                rgb = _to_rgb(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot read image {path}: {e}") from None
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), Image.BILINEAR)
        out[i] = np.asarray(rgb)
    return out


# --- procedural source --------------------------------------------------------------------------------

def _render_one(job):
    seed, cls, index, size, path = job
    data = procedural.generate_jpeg(seed, cls, index, size)
    Path(path).write_bytes(data)
    return sha256_bytes(data)


def _procedural_source(args) -> dict:
    return {"kind": "procedural", "seed": int(args.seed), "size": int(args.data_size),
            "per_class": {"train": int(args.data_train), "val": int(args.data_val), "test": int(args.data_test)},
            "generator_version": procedural.VERSION, "format": FORMAT_VERSION}


def _cached(run_dir: Path, source: dict) -> dict | None:
    """The existing manifest if it was made from the same source and every file still matches its hash."""
    path = run_dir / "data" / "dataset.json"
    if not path.is_file():
        return None
    try:
        d = read_json(path)
    except UserError:
        return None
    stored = d.get("source", {})
    if any(stored.get(k) != v for k, v in source.items()):
        return None
    for it in d.get("items", []):
        p = _item_path(run_dir, it)
        if not p.is_file() or sha256_file(p) != it["sha256"]:
            return None
    return d


def _generate(args, run_dir: Path, classes: list[str]) -> tuple[dict, float | None]:
    """The dataset manifest and the images per second generated now (None when the cached set is reused)."""
    source = _procedural_source(args)
    cached = _cached(run_dir, source)
    if cached is not None:
        print(f"data: {len(cached['items'])} procedural images already in {run_dir / 'data'}; skipping generation")
        return cached, None
    counts = source["per_class"]
    n_per_class = sum(counts.values())
    data_dir = ensure_dir(run_dir / "data")
    # Generate into a temp folder and swap it in, so an interrupted run never leaves a half-written set.
    for stale in data_dir.glob(".images.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".images.", dir=data_dir))
    jobs, items = [], []
    for cls in classes:
        (tmp / cls).mkdir()
        i = 0
        for split in SPLITS:
            for _ in range(counts[split]):
                rel = f"images/{cls}/{cls}_{i:05d}.jpg"
                jobs.append((source["seed"], cls, i, source["size"], str(tmp / cls / f"{cls}_{i:05d}.jpg")))
                items.append({"path": rel, "label": cls, "split": split})
                i += 1
    assert len(jobs) == n_per_class * len(classes)
    t0 = time.perf_counter()
    try:
        workers = max(1, min(int(args.data_workers), len(jobs) // 200))  # spawning costs more than tiny sets
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                hashes = list(tqdm(pool.imap(_render_one, jobs, chunksize=16), total=len(jobs), desc="data: generate"))
        else:
            hashes = [_render_one(j) for j in tqdm(jobs, desc="data: generate")]
        elapsed = time.perf_counter() - t0
        final = data_dir / "images"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for it, h in zip(items, hashes):
        it["sha256"] = h
    # Timings go to the stage metrics, not dataset.json: equal inputs must give byte-identical files.
    return {"classes": classes, "source": source, "items": items}, round(len(jobs) / elapsed, 1)


# --- user ImageFolder ---------------------------------------------------------------------------------

def _check_image(path: Path) -> str | None:
    """None if the file decodes completely, else the reason it cannot be used."""
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
    except Image.DecompressionBombError as e:
        return f"too large: {e}"
    except (OSError, SyntaxError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


def _split_counts(n: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    n_test = int(round(n * test_frac))
    n_val = int(round(n * val_frac))
    n_test, n_val = min(n_test, max(n - 1, 0)), min(n_val, max(n - 1 - n_test, 0))
    return n - n_val - n_test, n_val, n_test


def _index_folder(args, wanted: list[str] | None) -> dict:
    root = Path(args.data).expanduser()
    if not root.exists():
        raise UserError(f"data folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"--data must be a folder (<root>/<class>/<image>), got a file: {root}")
    entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    if not entries:
        raise UserError(f"data folder {root} is empty (expected <root>/<class>/<image>)")
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        raise UserError(f"data folder {root} has no class subfolders (expected <root>/<class>/<image>)")
    if wanted is not None and set(wanted) != set(classes):
        missing, extra = sorted(set(wanted) - set(classes)), sorted(set(classes) - set(wanted))
        raise UserError(f"class folders in {root} do not match --classes: missing {missing or 'none'}, "
                        f"unexpected {extra or 'none'}")
    if not 0 <= args.data_val_frac < 1 or not 0 <= args.data_test_frac < 1 \
            or args.data_val_frac + args.data_test_frac >= 1:
        raise UserError("--data-val-frac and --data-test-frac must be in [0, 1) and sum to less than 1")
    classes = wanted if wanted is not None else classes
    rng = np.random.default_rng([int(args.seed), 0x5B11])
    items, skipped, ignored, duplicates, seen = [], [], 0, [], {}
    files = [(c, f) for c in classes for f in sorted((root / c).rglob("*")) if f.is_file()]
    for cls, f in tqdm(files, desc="data: check images"):
        if f.suffix.lower() not in IMAGE_EXTS or f.name.startswith("."):
            ignored += 1
            continue
        reason = _check_image(f)
        if reason is not None:
            print(f"warning: skipping unreadable image {f}: {reason}", file=sys.stderr)
            skipped.append({"path": str(f.resolve()), "reason": reason})
            continue
        digest = sha256_file(f)
        if digest in seen:
            duplicates.append({"path": str(f.resolve()), "same_as": seen[digest]})
            continue
        seen[digest] = str(f.resolve())
        items.append({"path": str(f.resolve()), "sha256": digest, "label": cls})
    if duplicates:
        print(f"warning: {len(duplicates)} duplicate images (same content) kept once", file=sys.stderr)
    out = []
    for cls in classes:
        mine = sorted((it for it in items if it["label"] == cls), key=lambda it: it["sha256"])
        if not mine:
            raise UserError(f"class '{cls}' in {root} has no readable images "
                            f"({sum(1 for s in skipped if Path(s['path']).parent.name == cls)} skipped as unreadable)")
        order = rng.permutation(len(mine))
        n_train, n_val, _ = _split_counts(len(mine), args.data_val_frac, args.data_test_frac)
        split_of = {}
        for rank, j in enumerate(order):
            split_of[j] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        out += sorted((dict(it, split=split_of[j]) for j, it in enumerate(mine)), key=lambda it: it["path"])
    source = {"kind": "imagefolder", "root": str(root.resolve()), "seed": int(args.seed),
              "val_frac": args.data_val_frac, "test_frac": args.data_test_frac, "format": FORMAT_VERSION,
              "skipped_unreadable": len(skipped), "skipped": skipped, "ignored_non_images": ignored,
              "duplicates": len(duplicates)}
    return {"classes": list(classes), "source": source, "items": out}


def _parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes must be distinct comma-separated names, got {text!r}")
    return names


def run(args) -> dict:
    run_dir = Path(args.run)
    wanted = _parse_classes(args.classes)
    t0, rate = time.perf_counter(), None
    if args.data is None:
        if wanted is not None and set(wanted) != set(procedural.CLASSES):
            raise UserError(f"--classes {wanted} does not match the procedural classes {list(procedural.CLASSES)}; "
                            "pass --data to use your own images")
        for name in ("data_size", "data_train", "data_val", "data_test"):
            if getattr(args, name) < (8 if name == "data_size" else 0):
                raise UserError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
        if args.data_train < 1:
            raise UserError("--data-train must be at least 1")
        manifest, rate = _generate(args, run_dir, list(procedural.CLASSES))
    else:
        manifest = _index_folder(args, wanted)
    out = run_dir / "data" / "dataset.json"
    check_dataset(run_dir, manifest)
    write_json_atomic(out, manifest)
    counts = {s: sum(1 for it in manifest["items"] if it["split"] == s) for s in SPLITS}
    metrics = {"data_images": len(manifest["items"]), "data_classes": len(manifest["classes"]),
               **{f"data_{s}": n for s, n in counts.items()}}
    if rate is not None:
        metrics["data_images_per_second"] = rate
    if manifest["source"]["kind"] == "imagefolder":
        metrics["data_skipped_unreadable"] = manifest["source"]["skipped_unreadable"]
    metrics["data_seconds"] = round(time.perf_counter() - t0, 3)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k.startswith("data") or k in ("classes", "seed")}
    record_stage(run_dir, "data", inputs=[], outputs=[out], params=params, metrics=metrics, seed=args.seed)
    print(f"data: {len(manifest['items'])} images, {len(manifest['classes'])} classes "
          f"(train {counts['train']}, val {counts['val']}, test {counts['test']}) -> {out}")
    return metrics
