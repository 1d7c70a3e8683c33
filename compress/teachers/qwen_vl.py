"""`qwen2.5-vl` teacher: any local Qwen2.5-VL checkpoint answers a multiple-choice question about each
image; class probabilities come from the last-position logits (see vlm_scoring), averaged over several
option orders because chat VLMs favour an answer position.

The prompt puts the image before the question, so everything up to the image's last token is the same
for every option order: each image goes through the vision encoder and the language model once, and the
K option orders continue from copies of that prefix's KV cache."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np

from edgecore.errors import UserError
from . import vlm_scoring
from .base import Teacher
from .calibration import calibration

IMAGE_PAD = "<|image_pad|>"
# Bump when the prompt or the scoring changes: it is part of the label-cache key. 2: 3-D rotary positions
# for the image tokens under transformers 5 (version 1 sent no mm_token_type_ids and got 1-D ones).
SCORING_VERSION = 2


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError("the qwen2.5-vl teacher needs transformers: pip install -e '.[vlm]'") from None


def _image_processor_class():
    """The PIL image processor: `Qwen2VLImageProcessorPil` in transformers 5, the same class was
    `Qwen2VLImageProcessor` in 4.x (the torchvision one does not import beside torch 2.13)."""
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        return Qwen2VLImageProcessorPil
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
        return Qwen2VLImageProcessor


def _device_map(device: str) -> dict:
    """from_pretrained arguments that put the weights straight onto `device` (a CPU load followed by
    `.to("cuda")` holds the whole model in host RAM first)."""
    if device == "cpu":
        return {}
    if importlib.util.find_spec("accelerate") is None:
        raise UserError(f"loading the VLM teacher onto {device} needs accelerate: pip install accelerate")
    return {"device_map": device}


def model_fingerprint(path: Path) -> str:
    """Identifies a checkpoint without hashing GBs of weights: config, tokenizer and weight-file sizes."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
                      "chat_template.json", "chat_template.jinja", "model.safetensors.index.json"):
            h.update(f.name.encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def add_arguments(g) -> None:
    """Options of the VLM teachers (qwen2.5-vl, spatial-mllm), added to the teach stage's group."""
    g.add_argument("--teacher-model", "--model", dest="teacher_model", type=Path, default=None,
                   help="qwen2.5-vl / spatial-mllm: local checkpoint folder (never downloaded at run time)")
    g.add_argument("--teacher-orders", type=int, default=None,
                   help="VLM: option orders averaged per image (default: one per class, a Latin square)")
    g.add_argument("--teacher-vlm-batch", type=int, default=4,
                   help="VLM: images per batch: one pass over their prompts up to the image, one over "
                        "images x orders question tails (default 4)")
    g.add_argument("--teacher-vlm-size", type=int, default=448,
                   help="VLM: image side sent to the model (default 448 = 256 image tokens for Qwen2.5-VL)")
    g.add_argument("--spatial-mllm-root", default=None,
                   help="spatial-mllm: clone of github.com/diankun-wu/Spatial-MLLM (default $SPATIAL_MLLM_ROOT)")


class QwenVLTeacher(Teacher):
    """Scores images with a Qwen2.5-VL chat model. Subclasses swap the model class and extra inputs."""

    name = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)
    example_repo = "Qwen/Qwen2.5-VL-7B-Instruct"

    def __init__(self, classes, model_path, *, orders: int | None = None, seed: int = 0, batch_size: int = 4,
                 image_size: int = 448, device: str | None = None, threads: int | None = None):
        if model_path is None:
            raise UserError(f"the {self.name} teacher needs --teacher-model PATH (a local checkpoint folder)")
        self.classes = list(classes)
        self.model_path = Path(model_path).expanduser().resolve()
        self.orders = vlm_scoring.option_orders(len(self.classes), len(self.classes) if orders is None else orders,
                                                seed)
        if batch_size < 1 or image_size < 28:
            raise UserError(f"--teacher-vlm-batch must be >= 1 and --teacher-vlm-size >= 28, got {batch_size} "
                            f"and {image_size}")
        self.batch_size = batch_size
        self.image_size = image_size
        self.device = device
        self.threads = threads
        self._check_checkpoint()
        self._loaded = False

    @classmethod
    def from_args(cls, classes, args, work_dir):
        return cls(classes, args.teacher_model, orders=args.teacher_orders, seed=args.seed,
                   batch_size=args.teacher_vlm_batch, image_size=args.teacher_vlm_size,
                   threads=args.teacher_threads)

    def _check_checkpoint(self) -> None:
        cfg = self.model_path / "config.json"
        if not cfg.is_file():
            raise UserError(f"no checkpoint at {self.model_path} (config.json missing); download it first, e.g. "
                            f"hf download {self.example_repo} --local-dir {self.model_path}")
        self._check_config(json.loads(cfg.read_text()))

    def _check_config(self, config: dict) -> None:
        model_type = config.get("model_type")
        if model_type not in self.model_types:
            raise UserError(f"{self.model_path} holds a {model_type!r} model; the {self.name} teacher needs "
                            f"model_type {' or '.join(map(repr, self.model_types))}")

    def cache_identity(self) -> dict:
        """Everything that changes the labels: the label cache is keyed on it."""
        return {"teacher": self.name, "model": model_fingerprint(self.model_path), "classes": self.classes,
                "orders": self.orders.tolist(), "image_size": self.image_size, "scoring": SCORING_VERSION}

    # --- hooks a subclass overrides -------------------------------------------------------------
    def _load_model(self, dtype, device):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration.from_pretrained(
            self.model_path, local_files_only=True, dtype=dtype, **_device_map(device)).eval()

    def _extra_inputs(self, pil_images, grid_thw) -> dict:
        return {}

    # --- shared code path -----------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        _require_transformers()
        import torch
        from transformers import AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            self.image_processor = _image_processor_class().from_pretrained(self.model_path, local_files_only=True)
            self.model = self._load_model(dtype, device)
        except (OSError, ValueError, KeyError) as e:  # missing/corrupt files in the checkpoint folder
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot load the {self.name} checkpoint {self.model_path}: {first}") from None
        self.tokenizer.padding_side = "left"
        self._device = device
        self._forward_args = set(inspect.signature(self.model.forward).parameters)
        self.token_ids = vlm_scoring.class_token_ids(self.tokenizer, self.classes)
        heads, self.tails = zip(*(self._prompt(order).split(IMAGE_PAD) for order in self.orders))
        if len(set(heads)) != 1:
            raise UserError(f"the chat template of {self.model_path} puts text that depends on the question "
                            f"before the image")
        self.head = heads[0]
        self._head_len = len(self.tokenizer(self.head)["input_ids"])
        self._loaded = True

    def _prompt(self, order) -> str:
        template = self.tokenizer.chat_template
        if template is None:
            for name in ("chat_template.json", "chat_template.jinja"):
                f = self.model_path / name
                if f.is_file():
                    template = json.loads(f.read_text())["chat_template"] if f.suffix == ".json" else f.read_text()
                    break
        if template is None:
            raise UserError(f"{self.model_path} has no chat template (tokenizer_config.json or chat_template.json)")
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": vlm_scoring.question(self.classes, order)}]}]
        text = self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=True)
        if text.count(IMAGE_PAD) != 1:
            raise UserError(f"the chat template of {self.model_path} does not place one {IMAGE_PAD} for an image")
        return text

    def score(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> per-order class probabilities [N, K, C]."""
        k, c = len(self.orders), len(self.classes)
        out = [vlm_scoring.class_probs(logits.flatten(0, 1), self.token_ids).reshape(-1, k, c)
               for logits in self._batches(images)]
        return np.concatenate(out) if out else np.zeros((0, k, c), np.float32)

    def last_logits(self, images: np.ndarray):
        """uint8 [N, H, W, 3] -> float32 tensor [N, K, V]: the next-token logits after the prompt of image n
        asked with option order k, as a canonical `model(**processor(text=..., images=...))` call gives them."""
        import torch

        return torch.cat([logits.float().cpu() for logits in self._batches(images)])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> [N, C] probabilities averaged over the option orders."""
        return self.score(images).mean(axis=1, dtype=np.float64).astype(np.float32)

    def diagnose(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """Calibration of the averaged answer and the option-order report, on labelled (validation) images."""
        per_order = self.score(images)
        avg = per_order.mean(axis=1, dtype=np.float64)
        return {**calibration(avg, labels), **vlm_scoring.order_report(per_order, self.orders, labels)}

    def _batches(self, images: np.ndarray):
        self._load()
        for i in range(0, len(images), self.batch_size):
            yield self._last_logits_batch(images[i:i + self.batch_size])

    def _to_device(self, inputs: dict) -> dict:
        return {n: (v.to(self._device) if hasattr(v, "to") else [t.to(self._device) for t in v])
                for n, v in inputs.items()}

    def _last_logits_batch(self, batch: np.ndarray):
        """[B, K, V] logits: one prefix pass per image (vision encoder + image tokens), then the K question
        tails in one pass over B*K copies of the prefix's KV cache."""
        import torch
        from PIL import Image

        k = len(self.orders)
        pil = [Image.fromarray(a).convert("RGB") for a in batch]
        vision = self.image_processor(images=pil, return_tensors="pt")
        grid = vision["image_grid_thw"]
        merge = self.image_processor.merge_size
        prefix = self.tokenizer([self.head + IMAGE_PAD * (int(g.prod()) // merge ** 2) for g in grid],
                                padding=True, return_tensors="pt")
        inputs = {"input_ids": prefix["input_ids"], "attention_mask": prefix["attention_mask"],
                  "pixel_values": vision["pixel_values"], "image_grid_thw": grid, **self._extra_inputs(pil, grid)}
        if "mm_token_type_ids" in self._forward_args:
            # What Qwen2_5_VLProcessor returns beside input_ids (1 = image token): transformers 5 gives image
            # tokens their 3-D (t, h, w) rotary positions only when it is passed.
            image_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
            inputs["mm_token_type_ids"] = (prefix["input_ids"] == image_id).long()
        keep = {"logits_to_keep": 1} if "logits_to_keep" in self._forward_args else {}
        # Image-major rows: row s = image s // k asked with option order s % k.
        tails = self.tokenizer([self.tails[s % k] for s in range(len(batch) * k)], padding=True,
                               add_special_tokens=False, return_tensors="pt")
        # Qwen2.5-VL's M-RoPE: text after an image continues at (text before it) + max(grid h, w) / merge,
        # whatever the padding; left-padded tails keep every row's last token in the last column.
        start = self._head_len + grid[:, 1:].max(dim=1).values // merge
        positions = start.repeat_interleave(k)[:, None] + (tails["attention_mask"].cumsum(1) - 1).clamp(min=0)
        with torch.inference_mode():
            cache = self.model(**self._to_device(inputs), use_cache=True, **keep).past_key_values
            cache.batch_repeat_interleave(k)
            rest = {"input_ids": tails["input_ids"], "position_ids": positions[None].expand(3, -1, -1),
                    "attention_mask": torch.cat([prefix["attention_mask"].repeat_interleave(k, 0),
                                                 tails["attention_mask"]], dim=1)}
            logits = self.model(**self._to_device(rest), past_key_values=cache, **keep).logits[:, -1, :]
        return logits.reshape(len(batch), k, -1)
