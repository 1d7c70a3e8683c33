"""Stage "data": generate the procedural pizza set or index a user's ImageFolder -> R/data/dataset.json."""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from . import procedural
from edgecore.config import from_args
from edgecore.errors import UserError
from edgecore.io import ensure_dir, read_bytes, read_json, sha256_bytes, sha256_file, write_json_atomic
from edgecore.manifest import check_dataset, record_stage

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test", "pool")  # pool: training images whose label no training step may read
GEN_SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1
DEFAULT_LABELED_PER_CLASS = 20


@dataclass(frozen=True)
class DataConfig:
    """Options of the data stage (`python -m compress data --help` says what each one does)."""
    data: Path | None = None             # the user's ImageFolder; None: the procedural set
    classes: str | None = None           # comma-separated names the data must have
    data_size: int = 128
    data_generator: int = procedural.VERSION
    data_train: int = 300
    data_val: int = 60
    data_test: int = 100
    data_val_frac: float = 0.15
    data_test_frac: float = 0.15
    labeled_per_class: str = str(DEFAULT_LABELED_PER_CLASS)  # K or "all"
    labeled_val_per_class: int | None = None
    unlabeled: Path | None = None
    data_workers: int = min(2, os.cpu_count() or 1)
    seed: int = 0


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
        """Class indices (int64) of `items`, in the order of `classes`. Pool items are refused: their labels (kept
        only to measure label quality on procedural data) must never reach a training step."""
        index = {c: i for i, c in enumerate(self.classes)}
        if any(it["split"] == "pool" for it in items):
            raise ValueError("labels of the unlabeled pool are for measurement only; use pool_labels()")
        return np.array([index[it["label"]] for it in items], np.int64)

    def pool_labels(self, items: list[dict]) -> np.ndarray:
        """For measuring a teacher on the pool only: class index, or -1 where the image has no known label."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(it.get("label"), -1) for it in items], np.int64)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DataConfig()
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None,
                   help="your ImageFolder (<root>/<class>/<image>); default: the built-in procedural pizza set")
    g.add_argument("--classes", default=None,
                   help="comma-separated class names the data must have (default: the procedural six, or the "
                        "folder names of --data)")
    g.add_argument("--data-size", type=int, default=d.data_size,
                   help="procedural image size in pixels (default %(default)s)")
    g.add_argument("--data-generator", type=int, choices=procedural.VERSIONS, default=d.data_generator,
                   help=f"procedural generator version (default {procedural.VERSION}); every version stays "
                        "reproducible by seed, 4 is the older look without clutter, shadows and irregular char")
    g.add_argument("--data-train", type=int, default=d.data_train,
                   help="procedural training images per class (default %(default)s)")
    g.add_argument("--data-val", type=int, default=d.data_val,
                   help="procedural validation images per class (default %(default)s)")
    g.add_argument("--data-test", type=int, default=d.data_test,
                   help="procedural test images per class (default %(default)s)")
    g.add_argument("--data-val-frac", type=float, default=d.data_val_frac,
                   help="--data: fraction per class for val (%(default)s)")
    g.add_argument("--data-test-frac", type=float, default=d.data_test_frac,
                   help="--data: fraction per class for test (%(default)s)")
    g.add_argument("--labeled-per-class", default=d.labeled_per_class, metavar="K",
                   help="label budget: K labelled images per class, taken (seeded) from the training and validation "
                        "images; the rest of them join the unlabeled pool that only the teacher labels. The "
                        "validation images count against K (see --labeled-val-per-class). 'all' keeps every label "
                        f"(fully supervised). Default {DEFAULT_LABELED_PER_CLASS}")
    g.add_argument("--labeled-val-per-class", type=int, default=None, metavar="V",
                   help="of the K labelled images per class, V are held out for validation (model selection); "
                        "default max(1, round(K / 4)), e.g. 5 of 20")
    g.add_argument("--unlabeled", type=Path, default=None, metavar="DIR",
                   help="a folder of your own unlabeled photos (any layout, searched recursively) added to the pool")
    g.add_argument("--data-workers", type=int, default=d.data_workers,
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


def split_name(source: dict, n: int, total: int | None = None) -> str:
    """How every report names the test images ('procedural test split, 600 images'); a subset says how much of
    the split it is."""
    count = f"{n} images" if total is None or n == total else f"{n} of {total} images"
    if source.get("kind") == "procedural":
        return f"procedural test split, {count}"
    if source.get("kind") == "imagefolder":
        return f"test split of {source.get('root')}, {count}"
    return f"test split, {count}"


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
        data = read_bytes(path, "image")
        # Only the bytes the data stage recorded (an image swapped in the run folder would train unnoticed).
        if "sha256" in it and sha256_bytes(data) != it["sha256"]:
            raise UserError(f"image {path} changed after the data stage recorded it (sha256 differs from "
                            f"dataset.json): run `python -m compress data --run {run_dir}` again")
        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = _to_rgb(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot read image {path}: {e}") from None
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), Image.BILINEAR)
        out[i] = np.asarray(rgb)
    return out


# --- procedural source --------------------------------------------------------------------------------

def _render_one(job):
    seed, cls, index, size, path, version = job
    data = procedural.generate_jpeg(seed, cls, index, size, version)
    Path(path).write_bytes(data)
    return sha256_bytes(data)


def _procedural_source(cfg: DataConfig) -> dict:
    return {"kind": "procedural", "seed": int(cfg.seed), "size": int(cfg.data_size),
            "per_class": {"train": int(cfg.data_train), "val": int(cfg.data_val), "test": int(cfg.data_test)},
            "generator_version": int(cfg.data_generator), "format": FORMAT_VERSION}


def _cached_hashes(run_dir: Path, source: dict, paths: list[str]) -> list[str] | None:
    """Hashes of the images already generated from the same source, if every one is still on disk unchanged."""
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
    known = {it.get("path"): it.get("sha256") for it in d.get("items", []) if isinstance(it, dict)}
    hashes = []
    for rel in paths:
        p = run_dir / "data" / rel
        if rel not in known or not p.is_file() or sha256_file(p) != known[rel]:
            return None
        hashes.append(known[rel])
    return hashes


def _generate(cfg: DataConfig, run_dir: Path, classes: list[str]) -> tuple[dict, float | None]:
    """The dataset manifest and the images per second generated now (None when the cached set is reused)."""
    source = _procedural_source(cfg)
    counts = source["per_class"]
    items = []
    for cls in classes:
        i = 0
        for split in GEN_SPLITS:
            for _ in range(counts[split]):
                items.append({"path": f"images/{cls}/{cls}_{i:05d}.jpg", "label": cls, "split": split})
                i += 1
    cached = _cached_hashes(run_dir, source, [it["path"] for it in items])
    if cached is not None:
        print(f"data: {len(items)} procedural images already in {run_dir / 'data'}; skipping generation")
        for it, h in zip(items, cached):
            it["sha256"] = h
        return {"classes": classes, "source": source, "items": items}, None
    data_dir = ensure_dir(run_dir / "data")
    # Generate into a temp folder and swap it in, so an interrupted run never leaves a half-written set.
    for stale in data_dir.glob(".images.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".images.", dir=data_dir))
    for cls in classes:
        (tmp / cls).mkdir()
    jobs = [(source["seed"], it["label"], int(it["path"][-9:-4]), source["size"],
             str(tmp / it["path"].removeprefix("images/")), source["generator_version"]) for it in items]
    t0 = time.perf_counter()
    try:
        workers = max(1, min(int(cfg.data_workers), len(jobs) // 200))  # spawning costs more than tiny sets
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

def check_image(path: Path) -> str | None:
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


def _index_folder(cfg: DataConfig, wanted: list[str] | None) -> dict:
    root = Path(cfg.data).expanduser()
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
    if not 0 <= cfg.data_val_frac < 1 or not 0 <= cfg.data_test_frac < 1 \
            or cfg.data_val_frac + cfg.data_test_frac >= 1:
        raise UserError("--data-val-frac and --data-test-frac must be in [0, 1) and sum to less than 1")
    classes = wanted if wanted is not None else classes
    rng = np.random.default_rng([int(cfg.seed), 0x5B11])
    items, skipped, ignored, duplicates, seen = [], [], 0, [], {}
    files = [(c, f) for c in classes for f in sorted((root / c).rglob("*")) if f.is_file()]
    for cls, f in tqdm(files, desc="data: check images"):
        if f.suffix.lower() not in IMAGE_EXTS or f.name.startswith("."):
            ignored += 1
            continue
        reason = check_image(f)
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
        n_train, n_val, _ = _split_counts(len(mine), cfg.data_val_frac, cfg.data_test_frac)
        split_of = {}
        for rank, j in enumerate(order):
            split_of[j] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        out += sorted((dict(it, split=split_of[j]) for j, it in enumerate(mine)), key=lambda it: it["path"])
    source = {"kind": "imagefolder", "root": str(root.resolve()), "seed": int(cfg.seed),
              "val_frac": cfg.data_val_frac, "test_frac": cfg.data_test_frac, "format": FORMAT_VERSION,
              "skipped_unreadable": len(skipped), "skipped": skipped, "ignored_non_images": ignored,
              "duplicates": len(duplicates)}
    return {"classes": list(classes), "source": source, "items": out}


# --- label budget and unlabeled pool ---------------------------------------------------------------------

def parse_budget(text, val) -> tuple[int | None, int | None]:
    """(K, V) from --labeled-per-class / --labeled-val-per-class; (None, None) means every label is kept."""
    if str(text).strip().lower() == "all":
        if val is not None:
            raise UserError("--labeled-val-per-class needs a number for --labeled-per-class, not 'all'")
        return None, None
    try:
        k = int(str(text))
    except ValueError:
        raise UserError(f"--labeled-per-class must be a whole number or 'all', got {text!r}") from None
    v = max(1, round(k / 4)) if val is None else int(val)
    if k < 2 or not 1 <= v < k:
        raise UserError(f"--labeled-per-class {k} with --labeled-val-per-class {v}: need K >= 2 and 1 <= V < K "
                        "(at least one training and one validation label per class)")
    return k, v


def apply_budget(manifest: dict, k: int | None, v: int | None, seed: int) -> None:
    """Keep K labels per class (V of them for validation, seeded choice); the other training and validation
    images become the unlabeled pool. The test split is untouched."""
    if k is None:
        return
    rng = np.random.default_rng([int(seed), 0xB0D6])
    for cls in manifest["classes"]:
        mine = sorted((it for it in manifest["items"] if it["label"] == cls and it["split"] in ("train", "val")),
                      key=lambda it: it["path"])
        if len(mine) < k:
            raise UserError(f"--labeled-per-class {k} is more than class '{cls}' has outside the test split "
                            f"({len(mine)} images); lower K or add photos")
        for rank, j in enumerate(rng.permutation(len(mine))):
            mine[j]["split"] = "val" if rank < v else "train" if rank < k else "pool"


def _index_unlabeled(folder: Path, known: set[str]) -> tuple[list[dict], int]:
    """Readable images under `folder` (recursive, any layout) not already in the data set; and how many were skipped."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"--unlabeled folder not found or not a folder: {root}")
    items, skipped = [], 0
    files = sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in tqdm(files, desc="data: check unlabeled images"):
        if f.suffix.lower() not in IMAGE_EXTS:
            continue
        reason = check_image(f)
        if reason is not None:
            print(f"warning: skipping unreadable image {f}: {reason}", file=sys.stderr)
            skipped += 1
            continue
        digest = sha256_file(f)
        if digest in known:
            continue
        known.add(digest)
        items.append({"path": str(f.resolve()), "sha256": digest, "label": None, "split": "pool"})
    if not items:
        raise UserError(f"--unlabeled folder {root} has no readable new images ({skipped} unreadable)")
    return items, skipped


def _parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes must be distinct comma-separated names, got {text!r}")
    return names


def run(args) -> dict:
    return build_dataset(Path(args.run), from_args(DataConfig, args))


def build_dataset(run_dir: Path, cfg: DataConfig) -> dict:
    """Stage data: the procedural set or the user's ImageFolder -> R/data/dataset.json; returns its metrics."""
    run_dir = Path(run_dir)
    wanted = _parse_classes(cfg.classes)
    k, v = parse_budget(cfg.labeled_per_class, cfg.labeled_val_per_class)
    t0, rate = time.perf_counter(), None
    if cfg.data is None:
        if wanted is not None and set(wanted) != set(procedural.CLASSES):
            raise UserError(f"--classes {wanted} does not match the procedural classes {list(procedural.CLASSES)}; "
                            "pass --data to use your own images")
        for name in ("data_size", "data_train", "data_val", "data_test"):
            if getattr(cfg, name) < (8 if name == "data_size" else 0):
                raise UserError(f"--{name.replace('_', '-')} is too small: {getattr(cfg, name)}")
        if cfg.data_train < 1:
            raise UserError("--data-train must be at least 1")
        manifest, rate = _generate(cfg, run_dir, list(procedural.CLASSES))
    else:
        manifest = _index_folder(cfg, wanted)
    apply_budget(manifest, k, v, cfg.seed)
    manifest["budget"] = {"labeled_per_class": "all" if k is None else k, "val_per_class": v}
    if cfg.unlabeled is not None:
        extra, skipped = _index_unlabeled(cfg.unlabeled, {it["sha256"] for it in manifest["items"]})
        manifest["items"] += extra
        manifest["budget"].update({"unlabeled_root": str(Path(cfg.unlabeled).expanduser().resolve()),
                                   "unlabeled_images": len(extra), "unlabeled_skipped": skipped})
    out = run_dir / "data" / "dataset.json"
    check_dataset(run_dir, manifest)
    write_json_atomic(out, manifest)
    counts = {s: sum(1 for it in manifest["items"] if it["split"] == s) for s in SPLITS}
    metrics = {"data_images": len(manifest["items"]), "data_classes": len(manifest["classes"]),
               "data_labeled_per_class": manifest["budget"]["labeled_per_class"],
               **{f"data_{s}": n for s, n in counts.items()}}
    if rate is not None:
        metrics["data_images_per_second"] = rate
    if manifest["source"]["kind"] == "imagefolder":
        metrics["data_skipped_unreadable"] = manifest["source"]["skipped_unreadable"]
    metrics["data_seconds"] = round(time.perf_counter() - t0, 3)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    record_stage(run_dir, "data", inputs=[], outputs=[out], params=params, metrics=metrics, seed=cfg.seed)
    print(f"data: {len(manifest['items'])} images, {len(manifest['classes'])} classes "
          f"(labelled train {counts['train']}, val {counts['val']}, test {counts['test']}, unlabeled pool "
          f"{counts['pool']}) -> {out}")
    return metrics
