"""`spatial-mllm` teacher: the qwen2.5-vl teacher's prompt and scoring run through Spatial-MLLM's own
model class (github.com/diankun-wu/Spatial-MLLM), which adds a VGGT spatial encoder fed with the
image as an extra `image_tchw` tensor in [0, 1].

Its code is not on PyPI and pins transformers==4.51.3, CUDA and flash-attn, so it is an optional
extra loaded lazily; what is missing is reported in one line before anything is loaded."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from .qwen_vl import QwenVLTeacher

TRANSFORMERS_PIN = "4.51.3"
MODEL_MODULE = "src.qwenvl.model.spatial_mllm"
REPO_URL = "https://github.com/diankun-wu/Spatial-MLLM"


def missing_requirements(repo_root: str | None) -> list[str]:
    """What this machine lacks to run Spatial-MLLM, as short phrases (empty when all is there)."""
    from importlib import metadata

    missing = []
    try:
        found = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        found = None
    if found != TRANSFORMERS_PIN:
        missing.append(f"transformers=={TRANSFORMERS_PIN} (found {found or 'none'})")
    import torch

    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch sees none)")
    if importlib.util.find_spec("flash_attn") is None:
        missing.append("flash-attn (pip install flash-attn --no-build-isolation)")
    if repo_root is None:
        missing.append(f"its source code (clone {REPO_URL} and set SPATIAL_MLLM_ROOT or --spatial-mllm-root)")
    elif not (Path(repo_root) / (MODEL_MODULE.replace(".", "/") + ".py")).is_file():
        missing.append(f"its source code ({repo_root} has no {MODEL_MODULE.replace('.', '/')}.py; clone {REPO_URL})")
    return missing


class SpatialMLLMTeacher(QwenVLTeacher):
    name = "spatial-mllm"
    model_types = ("spatial-mllm", "qwen2_5_vl")
    example_repo = "Diankun/Spatial-MLLM-v1.1-Instruct-135K"

    def __init__(self, classes, model_path, *, repo_root: str | None = None, **kw):
        self.repo_root = repo_root or os.environ.get("SPATIAL_MLLM_ROOT")
        missing = missing_requirements(self.repo_root)
        if missing:
            raise UserError("the spatial-mllm teacher needs " + "; ".join(missing))
        super().__init__(classes, model_path, **kw)

    @classmethod
    def from_args(cls, classes, args, work_dir):
        return cls(classes, args.teacher_model, repo_root=args.spatial_mllm_root, orders=args.teacher_orders,
                   seed=args.seed, batch_size=args.teacher_vlm_batch, image_size=args.teacher_vlm_size,
                   threads=args.teacher_threads)

    def _load_model(self, dtype, device):
        sys.path.insert(0, str(Path(self.repo_root).resolve()))
        try:
            module = importlib.import_module(MODEL_MODULE)
        except ImportError as e:
            raise UserError(f"Spatial-MLLM's code does not import ({e}); pip install -r "
                            f"{self.repo_root}/requirements.txt") from None
        config = module.SpatialMLLMConfig.from_pretrained(self.model_path, local_files_only=True)
        return module.SpatialMLLMForConditionalGeneration.from_pretrained(
            self.model_path, config=config, local_files_only=True, torch_dtype=dtype,
            attn_implementation="flash_attention_2").to(device).eval()

    def _extra_inputs(self, pil_images, grid_thw) -> dict:
        return {"image_tchw": image_tchw(pil_images, grid_thw, self.image_processor.patch_size,
                                         self.image_processor.temporal_patch_size)}


def image_tchw(pil_images, grid_thw, patch_size: int, temporal_patch_size: int) -> list:
    """Spatial-MLLM's spatial-encoder input: each image at the size the vision processor resized it to
    (grid x patch), in [0, 1], repeated to `temporal_patch_size` frames as Qwen repeats a still image."""
    import torch
    from PIL import Image

    out = []
    for img, (_, gh, gw) in zip(pil_images, grid_thw.tolist()):
        size = (gw * patch_size, gh * patch_size)
        arr = np.asarray(img.resize(size, Image.BICUBIC) if img.size != size else img, dtype=np.float32) / 255.0
        frame = torch.from_numpy(arr).permute(2, 0, 1)
        out.append(frame.unsqueeze(0).repeat(temporal_patch_size, 1, 1, 1))
    return out
