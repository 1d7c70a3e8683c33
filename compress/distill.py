"""Stage "distill": train the tiny student on the teacher's soft labels (KD), then INT8 QAT -> R/student/."""
from __future__ import annotations

import dataclasses
import io
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import camera
from .camera import to_u8
from .data import load_dataset, load_images, split_name
from edgecore import preprocess
from edgecore.config import from_args
from edgecore.errors import UserError
from edgecore.io import ensure_dir, sha256_file, write_bytes_atomic, write_json_atomic
from edgecore.manifest import record_stage, verify_inputs
from .imagestore import DiskImages, batch_source
from .student import Student, StudentConfig, count_macs, count_params, describe


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 45
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.9
    augment: float = 1.0  # the second view's light: every transform; the first view keeps the photo's own
    consistency: float = 6.0
    threads: int = 1


def kd_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, hard label) over the labelled rows.

    The teacher gives probabilities, so its temperature-softened distribution is softmax(log p / T). Rows with
    label -1 (the unlabeled pool) have no CE term: only the teacher speaks for them.
    """
    t = temperature
    teacher_t = F.softmax(torch.log(teacher_probs.clamp_min(1e-8)) / t, dim=1)
    soft = F.kl_div(F.log_softmax(logits / t, dim=1), teacher_t, reduction="batchmean") * (t * t)
    known = labels >= 0
    hard = F.cross_entropy(logits[known], labels[known]) if bool(known.any()) else logits.sum() * 0.0
    return alpha * soft + (1.0 - alpha) * hard


def to_input(batch_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> the student's float NCHW input (the preprocessing contract, edgecore.preprocess)."""
    return torch.from_numpy(preprocess.to_float_nchw(np.asarray(batch_u8)))


def _prep(x: torch.Tensor) -> torch.Tensor:
    return to_input(to_u8(x))


def train_input(batch_u8: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """A training batch as a camera would deliver it (compress.camera, rounded to uint8), then preprocessed."""
    return _prep(camera.augment(batch_u8, gen, strength))


def paired_views(batch_u8: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """[2N] inputs: each image under one random camera pose, first with its own light (rows :N), then with
    `camera.photometric` at `strength` on top (rows N:), so the two rows of an image differ in light only."""
    posed = camera.geometry(batch_u8, gen)
    return torch.cat([_prep(posed), _prep(camera.photometric(posed, gen, strength))])


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between two batches of predictions (mean over rows, nats)."""
    log_a, log_b = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    log_m = torch.logsumexp(torch.stack([log_a, log_b]), dim=0) - np.log(2.0)
    return 0.5 * (F.kl_div(log_m, log_a, reduction="batchmean", log_target=True)
                  + F.kl_div(log_m, log_b, reduction="batchmean", log_target=True))


def training_batch(batch_u8: torch.Tensor, soft: torch.Tensor, labels: torch.Tensor, augment: float,
                   consistency: float, gen: torch.Generator):
    """(inputs, teacher probs, labels) of one step: one augmented view per image, or with `consistency` > 0
    the `paired_views` with the targets repeated for the second half."""
    if consistency <= 0:
        return train_input(batch_u8, gen, augment), soft, labels
    return paired_views(batch_u8, gen, augment), torch.cat([soft, soft]), torch.cat([labels, labels])


def step_loss(model: torch.nn.Module, batch_u8: torch.Tensor, soft: torch.Tensor, labels: torch.Tensor,
              params: TrainParams, gen: torch.Generator) -> torch.Tensor:
    """One training batch's loss: KD on every view (`training_batch`), plus with `params.consistency` > 0 that
    weight x the Jensen-Shannon divergence of each image's two views, which teaches the student that light
    changes nothing (AugMix's consistency term, Hendrycks et al. 2020)."""
    x, soft, labels = training_batch(batch_u8, soft, labels, params.augment, params.consistency, gen)
    logits = model(x)
    loss = kd_loss(logits, soft, labels, params.temperature, params.alpha)
    if params.consistency <= 0:
        return loss
    n = len(batch_u8)
    return loss + params.consistency * js_divergence(logits[:n], logits[n:])


@torch.no_grad()
def predict(model: torch.nn.Module, images_u8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits [N, C] for uint8 NHWC images."""
    model.eval()
    outs = [model(to_input(images_u8[i:i + batch_size])) for i in range(0, len(images_u8), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, model.cfg.num_classes), np.float32)


def accuracy(model: torch.nn.Module, images_u8: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, images_u8).argmax(1) == labels).mean()) if len(labels) else float("nan")


def set_determinism(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    # the NaN pre-fill of new tensors costs ~20 % of a step and only guards against reading garbage
    torch.utils.deterministic.fill_uninitialized_memory = False


def _epoch(model, opt, sched, images, soft, labels, params, gen, desc) -> float:
    model.train()
    n = len(images)
    order = torch.randperm(n, generator=gen)
    total, count = 0.0, 0
    bar = tqdm(range(0, n, params.batch_size), desc=desc, unit="batch", leave=False)
    for start in bar:
        idx = order[start:start + params.batch_size]
        if len(idx) < 2:  # a batch of one breaks BatchNorm statistics
            continue
        loss = step_loss(model, images[idx], soft[idx], labels[idx], params, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return total / max(count, 1)


def _save_torch(path: Path, obj) -> None:
    """Atomic torch.save through memory: a file's zip records would carry the temp name, so equal runs differ."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_tensors(path: Path):
    """torch.load that refuses code: a run folder may come from someone else (weights_only unpickler)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} holds something other than tensors and plain data; refusing to load it "
                        f"({str(e).splitlines()[0][:120]})") from None


def _load_checkpoint(path: Path, fingerprint: str, log) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        log(f"checkpoint {path} is unreadable or holds more than tensors ({str(e).splitlines()[0][:120]}): "
            "starting afresh")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log(f"checkpoint {path} is for other data or settings: starting afresh")
        return None
    return state


def train_student(images: np.ndarray, soft: np.ndarray, labels: np.ndarray, cfg: StudentConfig,
                  params: TrainParams, seed: int, checkpoint: Path | None = None, fingerprint: str = "",
                  log=print, val: tuple[np.ndarray, np.ndarray] | None = None, desc: str = "student") -> Student:
    """Train on uint8 NHWC images with kd_loss (labels -1 = unlabeled); returns the last epoch's model (the
    cosine schedule ends there). `val` is only reported: with 5 labels per class, picking the epoch by it chose
    noise (seed 0: epoch 10 at 83 % on 30 images, 63.7 % on the test split against 75.3 % for the last epoch).
    Resumes from `checkpoint` when its fingerprint matches.

    Deterministic on CPU for a fixed seed and thread count: every random choice (init, order, augmentation)
    comes from torch's seeded global RNG (init) or one seeded Generator (the rest), whose state is checkpointed
    with the model and the optimizer after every epoch.
    """
    set_determinism(seed, params.threads)
    images_t = batch_source(images)
    soft_t = torch.as_tensor(soft, dtype=torch.float32)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    steps = -(-len(images) // params.batch_size)
    gen = torch.Generator().manual_seed(seed)
    model = Student(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps * params.epochs, 1))
    done = 0
    state = _load_checkpoint(checkpoint, fingerprint, log) if checkpoint and checkpoint.is_file() else None
    if state is not None:
        done = state["epochs_done"]
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        log(f"{desc}: resuming from {checkpoint} after epoch {done}")
    for epoch in range(done, params.epochs):
        loss = _epoch(model, opt, sched, images_t, soft_t, labels_t, params, gen,
                      f"{desc} epoch {epoch + 1}/{params.epochs}")
        if checkpoint is not None:
            _save_torch(checkpoint, {
                "fingerprint": fingerprint, "epochs_done": epoch + 1, "model": model.state_dict(),
                "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state()})
        score = f", val acc {100.0 * accuracy(model, *val):.1f} %" if val is not None and len(val[1]) else ""
        log(f"{desc} epoch {epoch + 1}/{params.epochs}: loss {loss:.4f}{score}")
    return model.eval()


def load_float(path: Path) -> Student:
    blob = load_tensors(path)
    try:
        model = Student(StudentConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is not a student model ({str(e).splitlines()[0][:120]}); re-run distill") from None
    return model.eval()


def _save_model(path: Path, model, cfg: StudentConfig) -> None:
    _save_torch(path, {"config": cfg.to_dict(), "state_dict": model.state_dict()})


# ---- stage glue ----

def add_arguments(p) -> None:
    d, c = TrainParams(), StudentConfig()
    g = p.add_argument_group("distill")
    g.add_argument("--student-epochs", type=int, default=d.epochs, metavar="N",
                   help=f"KD epochs over the labelled images plus the teacher-labelled pool (default {d.epochs})")
    g.add_argument("--student-batch-size", type=int, default=d.batch_size, metavar="N",
                   help=f"batch size (default {d.batch_size})")
    g.add_argument("--student-lr", type=float, default=d.lr, metavar="LR",
                   help=f"AdamW peak learning rate, cosine decay (default {d.lr})")
    g.add_argument("--student-temperature", type=float, default=d.temperature, metavar="T",
                   help=f"KD temperature (default {d.temperature})")
    g.add_argument("--student-alpha", type=float, default=d.alpha, metavar="A",
                   help=f"weight of the soft KD term vs the hard-label CE on labelled images (default {d.alpha})")
    g.add_argument("--student-augment", type=float, default=d.augment, metavar="S",
                   help="camera augmentation: any rotation, zoom, perspective always; each of exposure x0.45-1.7, "
                        "white balance, vignette, gamma, contrast, saturation, hue, blur, noise and JPEG on this "
                        "fraction of the images, or of the second views with --student-consistency > 0 "
                        f"(compress/camera.py; default {d.augment:g}, 0 = geometry only)")
    g.add_argument("--student-consistency", type=float, default=d.consistency, metavar="L",
                   help="show each training image twice, in the same pose, once in its own light and once under "
                        "the --student-augment light/sensor transforms, and add L x the Jensen-Shannon divergence "
                        "of the two predictions to the loss (AugMix-style consistency: robustness to light "
                        "changes; two network passes per image, 1.3-1.8x the training time measured here; "
                        f"0 = one augmented view; default {d.consistency:g})")
    g.add_argument("--student-baseline", choices=("on", "off"), default=DistillConfig.student_baseline,
                   help="also train the hard-label baseline (same network, augmentation and number of optimizer "
                        "steps, on the labelled images only, best of --baseline-lrs by validation accuracy) so the "
                        "gain from distillation is measured; 'off' saves its minutes (default on)")
    g.add_argument("--baseline-lrs", default=DistillConfig.baseline_lrs, metavar="LR,LR",
                   help="learning rates the baseline tries; the best on the validation split is kept "
                        "(default 0.004,0.0015)")
    g.add_argument("--student-input-size", type=int, default=c.input_size, metavar="PX",
                   help=f"square input side in pixels (default {c.input_size})")
    g.add_argument("--student-width", type=float, default=c.width, metavar="W",
                   help=f"channel width multiplier (default {c.width})")
    g.add_argument("--student-threads", type=int, default=d.threads, metavar="N",
                   help="torch CPU threads (default 1: these tiny convs run slower on more; fixed for determinism)")


def _train_params(config: DistillConfig) -> TrainParams:
    for name in ("student_epochs", "student_batch_size", "student_input_size", "student_threads"):
        if getattr(config, name) < (0 if name == "student_epochs" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if not 0.0 <= config.student_alpha <= 1.0 or config.student_temperature <= 0 or config.student_augment < 0:
        raise UserError("--student-alpha must be in [0, 1], --student-temperature > 0, --student-augment >= 0")
    if config.student_consistency < 0:
        raise UserError(f"--student-consistency must be >= 0, got {config.student_consistency}")
    if config.student_width <= 0:
        raise UserError(f"--student-width must be > 0, got {config.student_width}")
    return dataclasses.replace(TrainParams(), epochs=config.student_epochs, batch_size=config.student_batch_size,
                               lr=config.student_lr, temperature=config.student_temperature, alpha=config.student_alpha,
                               augment=config.student_augment, consistency=config.student_consistency,
                               threads=config.student_threads)


def _baseline_lrs(text: str) -> list[float]:
    try:
        lrs = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        lrs = []
    if not lrs or any(not 0 < lr < 1 for lr in lrs):
        raise UserError(f"--baseline-lrs must be comma-separated learning rates in (0, 1), got {text!r}")
    return lrs


def load_split(run_dir: Path, split: str, size: int, teacher: dict | None = None, required: bool = True):
    """(uint8 images, labels, teacher probs or None, classes) for one split of the run's dataset. The pool's
    labels are never returned: its rows get -1."""
    items, labels, probs, classes = split_rows(run_dir, split, teacher, required)
    return load_images(run_dir, items, (size, size)), labels, probs, classes


def split_rows(run_dir: Path, split: str, teacher: dict | None = None, required: bool = True):
    """load_split without decoding: (items, labels, teacher probs or None, classes)."""
    ds = load_dataset(run_dir)
    items = ds.split(split)
    if not items and required:
        raise UserError(f"the {split} split of {run_dir / 'data' / 'dataset.json'} is empty")
    labels = np.full(len(items), -1, np.int64) if split == "pool" else ds.labels(items)
    probs = None
    if teacher is not None:
        rows = [teacher["index"].get(it["sha256"]) for it in items]
        missing = sum(r is None for r in rows)
        if missing == 0:
            probs = teacher["probs"][rows] if rows else np.zeros((0, len(ds.classes)), np.float32)
        elif split in ("train", "pool"):
            raise UserError(f"{missing} {split} images have no soft label in "
                            f"{run_dir / 'teacher' / 'soft_labels.npz'}; re-run the teach stage")
    return items, labels, probs, ds.classes


def kd_training_set(run_dir: Path, size: int, teacher: dict, spill_dir: Path | None = None):
    """What the student learns from: the labelled training images (label + teacher probs) and the unlabeled pool
    (teacher probs, label -1). Returns (images, teacher probs, labels, classes). With `spill_dir` the images are
    a DiskImages file there (read a batch at a time), else an array."""
    i_l, y_l, p_l, classes = split_rows(run_dir, "train", teacher)
    i_p, y_p, p_p, _ = split_rows(run_dir, "pool", teacher, required=False)
    images = (DiskImages.decode(run_dir, i_l + i_p, (size, size), spill_dir) if spill_dir is not None
              else load_images(run_dir, i_l + i_p, (size, size)))
    return images, np.concatenate([p_l, p_p]), np.concatenate([y_l, y_p]), classes


def load_teacher(run_dir: Path, classes: list[str] | None = None) -> dict:
    path = run_dir / "teacher" / "soft_labels.npz"
    if not path.is_file():
        raise UserError(f"soft labels not found: {path} (run the teach stage first)")
    with np.load(path, allow_pickle=False) as z:
        out = {"hashes": [str(h) for h in z["hashes"]], "probs": z["probs"].astype(np.float32),
               "classes": [str(c) for c in z["classes"]]}
    if classes is not None and out["classes"] != list(classes):
        raise UserError(f"teacher classes {out['classes']} do not match the dataset's classes {list(classes)}")
    out["index"] = {h: i for i, h in enumerate(out["hashes"])}
    return out


def train_baseline(x_lab, y_lab, cfg, params: TrainParams, lrs, seed, kd_steps, out_dir, fingerprint, val, log):
    """The hard-label baseline: same network and augmentation, CE on the labelled images only, as many optimizer
    steps as the KD student, each learning rate in `lrs` tried and the best on validation kept."""
    per_epoch = -(-len(x_lab) // params.batch_size)
    epochs = max(1, -(-kd_steps // per_epoch))
    onehot = np.eye(cfg.num_classes, dtype=np.float32)[y_lab]
    best = None
    for i, lr in enumerate(lrs):
        p = dataclasses.replace(params, epochs=epochs, lr=lr, alpha=0.0)
        model = train_student(x_lab, onehot, y_lab, cfg, p, seed, checkpoint=out_dir / f"checkpoint_baseline{i}.pt",
                              fingerprint=f"{fingerprint}|baseline|{lr}", log=lambda m: None, val=None,
                              desc=f"baseline lr {lr:g}")
        acc = accuracy(model, *val) if val is not None and len(val[1]) else 0.0
        log(f"baseline lr {lr:g}: {epochs} epochs of {len(x_lab)} labelled images, val acc {100 * acc:.1f} %")
        if best is None or acc > best[0]:
            best = (acc, model, lr)
    return best[1], best[2], epochs


@dataclass(frozen=True)
class DistillConfig:
    """Options of the distill stage (`python -m compress distill --help`)."""
    student_epochs: int = TrainParams.epochs
    student_batch_size: int = TrainParams.batch_size
    student_lr: float = TrainParams.lr
    student_temperature: float = TrainParams.temperature
    student_alpha: float = TrainParams.alpha
    student_augment: float = TrainParams.augment
    student_consistency: float = TrainParams.consistency
    student_baseline: str = "on"                   # or "off"
    baseline_lrs: str = "0.004,0.0015"             # comma-separated learning rates the baseline tries
    student_input_size: int = StudentConfig.input_size
    student_width: float = StudentConfig.width
    student_threads: int = TrainParams.threads
    seed: int = 0


def run(args) -> dict:
    return distill_run(Path(args.run), from_args(DistillConfig, args))


def distill_run(run_dir: Path, config: DistillConfig) -> dict:
    """Stage distill: R/data/ + R/teacher/soft_labels.npz -> R/student/ (KD student, hard-label baseline,
    config.json); returns its metrics."""
    run_dir = Path(run_dir)
    params = _train_params(config)
    lrs = _baseline_lrs(config.baseline_lrs)
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    verify_inputs(run_dir, "teacher", [run_dir / "teacher" / "soft_labels.npz"],
                  f"python -m compress teach --run {run_dir}")
    teacher = load_teacher(run_dir)
    size = config.student_input_size
    x_train, p_train, y_train, classes = kd_training_set(run_dir, size, teacher, spill_dir=run_dir / "student")
    if teacher["classes"] != list(classes):
        raise UserError(f"teacher classes {teacher['classes']} do not match the dataset's classes {list(classes)}")
    labelled = y_train >= 0
    x_val, y_val, _, _ = load_split(run_dir, "val", size, required=False)
    x_test, y_test, p_test, _ = load_split(run_dir, "test", size, teacher)
    val = (x_val, y_val) if len(y_val) else None
    cfg = StudentConfig(input_size=size, num_classes=len(classes), width=config.student_width)
    print(describe(cfg))
    print(f"distill: {int(labelled.sum())} labelled images + {int((~labelled).sum())} teacher-labelled pool images")
    out_dir = ensure_dir(run_dir / "student")

    soft_path = run_dir / "teacher" / "soft_labels.npz"
    dataset_path = run_dir / "data" / "dataset.json"
    fingerprint = "|".join([sha256_file(soft_path), sha256_file(dataset_path), str(cfg.to_dict()),
                            str(dataclasses.asdict(params)), str(config.seed)])
    log = lambda m: tqdm.write(m)  # noqa: E731 - one line per epoch above the progress bars
    t0 = time.monotonic()
    model = train_student(x_train, p_train, y_train, cfg, params, config.seed, checkpoint=out_dir / "checkpoint.pt",
                          fingerprint=fingerprint, log=log, val=val, desc="KD student")
    train_s = time.monotonic() - t0
    pred_float = predict(model, x_test).argmax(1)
    metrics = {
        "student_float_acc": float((pred_float == y_test).mean()),
        "teacher_student_agreement": (float((pred_float == p_test.argmax(1)).mean())
                                      if p_test is not None else "not run: test images lack soft labels"),
        "student_train_images": int(len(x_train)),
        "student_labelled_images": int(labelled.sum()),
        "params": count_params(cfg),
        "macs": count_macs(cfg),
        "student_train_seconds": round(train_s, 1),
        "accuracy_data": split_name(load_dataset(run_dir).source, len(y_test)),
    }
    float_path, cfg_path = out_dir / "student_float.pt", out_dir / "config.json"
    outputs = [float_path, cfg_path]
    _save_model(float_path, model, cfg)
    baseline_info = {}
    if config.student_baseline == "on":
        t0 = time.monotonic()
        kd_steps = params.epochs * -(-len(x_train) // params.batch_size)
        base, lr, epochs = train_baseline(x_train[labelled], y_train[labelled], cfg, params, lrs, config.seed, kd_steps,
                                          out_dir, fingerprint, val, log)
        base_acc = accuracy(base, x_test, y_test)
        metrics.update({"baseline_float_acc": base_acc,
                        "kd_gain_float_points": round(100.0 * (metrics["student_float_acc"] - base_acc), 2),
                        "baseline_train_seconds": round(time.monotonic() - t0, 1)})
        baseline_info = {"lr": lr, "epochs": epochs, "lrs_tried": lrs, "images": int(labelled.sum())}
        base_path = out_dir / "baseline_float.pt"
        _save_model(base_path, base, cfg)
        outputs.insert(1, base_path)
    else:  # a baseline from an earlier run would describe other settings
        (out_dir / "baseline_float.pt").unlink(missing_ok=True)
    write_json_atomic(cfg_path, {"student": cfg.to_dict(), "train": dataclasses.asdict(params),
                                 "baseline": baseline_info, "classes": list(classes), "seed": config.seed,
                                 "preprocess": preprocess.NAME, "metrics": metrics})
    record_stage(run_dir, "student", inputs=[soft_path, dataset_path], outputs=outputs,
                 params={"student": cfg.to_dict(), "train": dataclasses.asdict(params), "baseline": baseline_info},
                 metrics=metrics, seed=config.seed)
    return metrics

