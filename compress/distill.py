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

from .errors import UserError
from .io import ensure_dir, sha256_file, write_bytes_atomic, write_json_atomic
from .manifest import record_stage, verify_inputs
from .student import QATStudent, Student, StudentConfig, count_macs, count_params, describe, fold_bn


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 50
    qat_epochs: int = 3
    batch_size: int = 64
    lr: float = 4e-3
    qat_lr: float = 2e-4
    weight_decay: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.7
    threads: int = 1


def kd_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, hard label).

    The teacher gives probabilities, so its temperature-softened distribution is softmax(log p / T).
    """
    t = temperature
    teacher_t = F.softmax(torch.log(teacher_probs.clamp_min(1e-8)) / t, dim=1)
    soft = F.kl_div(F.log_softmax(logits / t, dim=1), teacher_t, reduction="batchmean") * (t * t)
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(logits, labels)


def augment(batch_u8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0,1]: random dihedral pose (rot90 x flip) and colour jitter.

    Position and scale already vary in the data; the pose group is applied per sample in 8 vectorised slices.
    """
    x = batch_u8.permute(0, 3, 1, 2).float() / 255.0
    n = x.shape[0]
    pose = torch.randint(0, 8, (n,), generator=gen)
    for p in range(1, 8):
        sel = (pose == p).nonzero().flatten()
        if len(sel):
            img = torch.rot90(x[sel], p % 4, dims=(2, 3))
            x[sel] = img.flip(3) if p >= 4 else img
    jitter = 1.0 + (torch.rand((3, n, 1, 1, 1), generator=gen) - 0.5) * 0.2  # +-10 %
    bright, contrast, sat = jitter
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * sat + gray
    return x.clamp_(0.0, 1.0)


def to_input(batch_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> the student's float NCHW input (pixel / 255)."""
    return torch.as_tensor(batch_u8).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def predict(model: torch.nn.Module, images_u8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits [N, C] for uint8 NHWC images."""
    model.eval()
    outs = [model(to_input(images_u8[i:i + batch_size])) for i in range(0, len(images_u8), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, model.cfg.num_classes), np.float32)


def _set_determinism(seed: int, threads: int) -> None:
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
        x = augment(images[idx], gen)
        loss = kd_loss(model(x), soft[idx], labels[idx], params.temperature, params.alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return total / max(count, 1)


def _optimizer(model, lr, params: TrainParams, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=params.weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))


def _save_torch(path: Path, obj) -> None:
    """Atomic torch.save through memory: a file's zip records would carry the temp name, so equal runs differ."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def _load_checkpoint(path: Path, fingerprint: str, log) -> dict | None:
    try:
        state = torch.load(path, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        log(f"checkpoint {path} is unreadable ({e}): starting afresh")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log(f"checkpoint {path} is for other data or settings: starting afresh")
        return None
    return state


def train_student(images: np.ndarray, soft: np.ndarray, labels: np.ndarray, cfg: StudentConfig,
                  params: TrainParams, seed: int, checkpoint: Path | None = None,
                  fingerprint: str = "", log=print, val: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[Student, QATStudent]:
    """KD training then QAT on uint8 NHWC images; resumes from `checkpoint` when its fingerprint matches.

    Deterministic on CPU for a fixed seed and thread count: every random choice (init, order,
    augmentation) comes from torch's seeded global RNG (init) or one seeded Generator (the rest),
    whose state is checkpointed with the model and optimizer after every epoch.
    """
    _set_determinism(seed, params.threads)
    images_t = torch.as_tensor(images)
    soft_t = torch.as_tensor(soft, dtype=torch.float32)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    steps = -(-len(images) // params.batch_size)
    gen = torch.Generator().manual_seed(seed)

    model = Student(cfg)
    opt, sched = _optimizer(model, params.lr, params, steps * params.epochs)
    qat = qopt = qsched = None
    done = 0
    state = _load_checkpoint(checkpoint, fingerprint, log) if checkpoint and checkpoint.is_file() else None
    if state is not None:
        done = state["epochs_done"]
        model.load_state_dict(state["model"])
        gen.set_state(state["gen"])
        if done < params.epochs:
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
        log(f"resuming from {checkpoint} after epoch {done}")

    def make_qat():
        model.eval()
        q = QATStudent(cfg, fold_bn(model)).train()
        with torch.no_grad():  # start the activation ranges from clean training images
            q(to_input(images_t[:256]))
        o, s = _optimizer(q, params.qat_lr, params, steps * params.qat_epochs)
        return q, o, s

    if done > params.epochs:
        qat, qopt, qsched = make_qat()
        qat.load_state_dict(state["qat"])
        qopt.load_state_dict(state["opt"])
        qsched.load_state_dict(state["sched"])

    total = params.epochs + params.qat_epochs
    for epoch in range(done, total):
        if epoch < params.epochs:
            net, o, s, phase = model, opt, sched, "float"
        else:
            if qat is None:
                qat, qopt, qsched = make_qat()
            net, o, s, phase = qat, qopt, qsched, "qat"
        loss = _epoch(net, o, s, images_t, soft_t, labels_t, params, gen, f"{phase} epoch {epoch + 1}/{total}")
        if checkpoint is not None:
            _save_torch(checkpoint, {
                "fingerprint": fingerprint, "epochs_done": epoch + 1, "model": model.state_dict(),
                "qat": qat.state_dict() if qat is not None else None,
                "opt": o.state_dict(), "sched": s.state_dict(), "gen": gen.get_state()})
        score = f", val acc {100.0 * float((predict(net, val[0]).argmax(1) == val[1]).mean()):.1f} %" if val else ""
        log(f"{phase} epoch {epoch + 1}/{total}: loss {loss:.4f}{score}")
    if qat is None:
        qat, _, _ = make_qat()
    qat.freeze_observers()
    return model.eval(), qat.eval()


def load_float(path: Path) -> Student:
    blob = torch.load(path, weights_only=False)
    model = Student(StudentConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def load_qat(path: Path) -> QATStudent:
    blob = torch.load(path, weights_only=False)
    cfg = StudentConfig.from_dict(blob["config"])
    qat = QATStudent(cfg, fold_bn(Student(cfg).eval()))
    qat.load_state_dict(blob["state_dict"])
    qat.freeze_observers()
    return qat.eval()


def _save_model(path: Path, model, cfg: StudentConfig) -> None:
    _save_torch(path, {"config": cfg.to_dict(), "state_dict": model.state_dict()})


# ---- stage glue ----

def add_arguments(p) -> None:
    d, c = TrainParams(), StudentConfig()
    g = p.add_argument_group("distill")
    g.add_argument("--student-epochs", type=int, default=d.epochs, metavar="N",
                   help=f"float KD epochs (default {d.epochs})")
    g.add_argument("--student-qat-epochs", type=int, default=d.qat_epochs, metavar="N",
                   help=f"INT8 quantization-aware fine-tune epochs (default {d.qat_epochs})")
    g.add_argument("--student-batch-size", type=int, default=d.batch_size, metavar="N",
                   help=f"batch size (default {d.batch_size})")
    g.add_argument("--student-lr", type=float, default=d.lr, metavar="LR",
                   help=f"AdamW peak learning rate, cosine decay (default {d.lr})")
    g.add_argument("--student-temperature", type=float, default=d.temperature, metavar="T",
                   help=f"KD temperature (default {d.temperature})")
    g.add_argument("--student-alpha", type=float, default=d.alpha, metavar="A",
                   help=f"weight of the soft KD term vs the hard-label CE (default {d.alpha})")
    g.add_argument("--student-input-size", type=int, default=c.input_size, metavar="PX",
                   help=f"square input side in pixels (default {c.input_size})")
    g.add_argument("--student-width", type=float, default=c.width, metavar="W",
                   help=f"channel width multiplier (default {c.width})")
    g.add_argument("--student-threads", type=int, default=d.threads, metavar="N",
                   help="torch CPU threads (default 1: these tiny convs run slower on more; fixed for determinism)")


def _params_from_args(args) -> TrainParams:
    for name in ("student_epochs", "student_batch_size", "student_input_size", "student_threads"):
        if getattr(args, name) < (0 if name == "student_epochs" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.student_qat_epochs < 0 or not 0.0 <= args.student_alpha <= 1.0 or args.student_temperature <= 0:
        raise UserError("--student-qat-epochs must be >= 0, --student-alpha in [0, 1], --student-temperature > 0")
    if args.student_width <= 0:
        raise UserError(f"--student-width must be > 0, got {args.student_width}")
    params = dataclasses.replace(TrainParams(), epochs=args.student_epochs, qat_epochs=args.student_qat_epochs,
                                 batch_size=args.student_batch_size, lr=args.student_lr,
                                 temperature=args.student_temperature, alpha=args.student_alpha,
                                 threads=args.student_threads)
    return params


def load_split(run_dir: Path, split: str, size: int, teacher: dict | None = None, required: bool = True):
    """(uint8 images, labels, teacher probs or None, classes) for one split of the run's dataset."""
    from .data import load_dataset, load_images

    ds = load_dataset(run_dir)
    items = ds.split(split)
    if not items and required:
        raise UserError(f"the {split} split of {run_dir / 'data' / 'dataset.json'} is empty")
    labels = ds.labels(items)
    probs = None
    if teacher is not None:
        rows = [teacher["index"].get(it["sha256"]) for it in items]
        missing = sum(r is None for r in rows)
        if missing == 0:
            probs = teacher["probs"][rows]
        elif split == "train":
            raise UserError(f"{missing} training images have no soft label in {run_dir / 'teacher' / 'soft_labels.npz'}; "
                            "re-run the teach stage")
    return load_images(run_dir, items, (size, size)), labels, probs, ds.classes


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


def run(args) -> dict:
    run_dir = Path(args.run)
    params = _params_from_args(args)
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    verify_inputs(run_dir, "teacher", [run_dir / "teacher" / "soft_labels.npz"],
                  f"python -m compress teach --run {run_dir}")
    teacher = load_teacher(run_dir)
    x_train, y_train, p_train, classes = load_split(run_dir, "train", args.student_input_size, teacher)
    if teacher["classes"] != list(classes):
        raise UserError(f"teacher classes {teacher['classes']} do not match the dataset's classes {list(classes)}")
    x_val, y_val, _, _ = load_split(run_dir, "val", args.student_input_size, required=False)
    x_test, y_test, p_test, _ = load_split(run_dir, "test", args.student_input_size, teacher)
    cfg = StudentConfig(input_size=args.student_input_size, num_classes=len(classes), width=args.student_width)
    print(describe(cfg))
    out_dir = ensure_dir(run_dir / "student")

    soft_path = run_dir / "teacher" / "soft_labels.npz"
    dataset_path = run_dir / "data" / "dataset.json"
    fingerprint = "|".join([sha256_file(soft_path), sha256_file(dataset_path), str(cfg.to_dict()),
                            str(dataclasses.asdict(params)), str(args.seed)])
    t0 = time.monotonic()
    model, qat = train_student(x_train, p_train, y_train, cfg, params, args.seed,
                               checkpoint=out_dir / "checkpoint.pt", fingerprint=fingerprint,
                               log=lambda m: tqdm.write(m), val=(x_val, y_val) if len(y_val) else None)
    train_s = time.monotonic() - t0

    pred_float = predict(model, x_test).argmax(1)
    pred_qat = predict(qat, x_test).argmax(1)
    metrics = {
        "student_float_acc": float((pred_float == y_test).mean()),
        "student_qat_fakequant_acc": float((pred_qat == y_test).mean()),
        "teacher_student_agreement": (float((pred_float == p_test.argmax(1)).mean())
                                      if p_test is not None else "not run: test images lack soft labels"),
        "params": count_params(cfg),
        "macs": count_macs(cfg),
        "student_train_seconds": round(train_s, 1),
    }
    float_path, qat_path, cfg_path = out_dir / "student_float.pt", out_dir / "student_qat.pt", out_dir / "config.json"
    _save_model(float_path, model, cfg)
    _save_model(qat_path, qat, cfg)
    write_json_atomic(cfg_path, {"student": cfg.to_dict(), "train": dataclasses.asdict(params),
                                 "classes": list(classes), "seed": args.seed, "metrics": metrics})
    record_stage(run_dir, "student", inputs=[soft_path, dataset_path], outputs=[float_path, qat_path, cfg_path],
                 params={"student": cfg.to_dict(), "train": dataclasses.asdict(params)}, metrics=metrics,
                 seed=args.seed)
    return metrics
