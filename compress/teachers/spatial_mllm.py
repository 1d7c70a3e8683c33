"""`spatial-mllm` teacher: the qwen2.5-vl teacher's prompt and scoring run through Spatial-MLLM's own
model class (github.com/diankun-wu/Spatial-MLLM), which adds a VGGT spatial encoder fed with the
image as an extra `image_tchw` tensor in [0, 1].

Its code is not on PyPI (the user checks it out) and pins transformers==4.51.3, so it runs in its own
environment with the `spatial-mllm` extra; what is missing is reported in one line before anything is
loaded. Upstream runs on CUDA with flash-attn; without them PyTorch's attention is used. Only v1.1
checkpoints are accepted: v1.0 is another model class with other inputs."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from edgecore.errors import UserError
from .qwen_vl import QwenVLTeacher

TRANSFORMERS_PIN = "4.51.3"
MODEL_MODULE = "src.qwenvl.model.spatial_mllm"
# Upstream's bundled VGGT imports itself as `vggt` from this folder (it appends the relative path, which only
# works when the current directory is the checkout).
VGGT_PARENT = "src/qwenvl/external"
REPO_URL = "https://github.com/diankun-wu/Spatial-MLLM"
# The `spatial-mllm` extra's packages, installed by name: the extra itself would also bring the project's own
# torch pin, which replaces the torch 2.6 that upstream's flash-attn wheel is built for (README).
EXTRA = ("In its own environment: pip install transformers==4.51.3 accelerate deepspeed einops "
         "(README: Teaching with a VLM)")
# Modules upstream imports at load time (VGGT's heads need einops, the spatial encoder imports deepspeed;
# device_map needs accelerate).
EXTRA_MODULES = ("einops", "deepspeed", "accelerate")
SUPPORTED = ("Spatial-MLLM v1.1 checkpoints (model_type 'spatial-mllm', e.g. "
             "Diankun/Spatial-MLLM-v1.1-Instruct-135K)")


def missing_requirements(repo_root: str | None) -> list[str]:
    """What this machine lacks to run Spatial-MLLM, as short phrases (empty when all is there).
    A GPU and flash-attn are not required: without them the model runs with PyTorch attention, slowly."""
    from importlib import metadata

    missing = []
    try:
        found = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        found = None
    if found != TRANSFORMERS_PIN:
        missing.append(f"transformers=={TRANSFORMERS_PIN} (found {found or 'none'})")
    missing += [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if repo_root is None:
        missing.append(f"its source code (clone {REPO_URL} and set SPATIAL_MLLM_ROOT or --spatial-mllm-root)")
    elif not (Path(repo_root) / (MODEL_MODULE.replace(".", "/") + ".py")).is_file():
        missing.append(f"its source code ({repo_root} has no {MODEL_MODULE.replace('.', '/')}.py; clone {REPO_URL})")
    return missing


def upstream_module(repo_root: str):
    """Upstream's `src.qwenvl.model.spatial_mllm` (SpatialMLLMConfig, SpatialMLLMForConditionalGeneration),
    imported from the checkout at `repo_root` whatever the current directory."""
    root = Path(repo_root).resolve()
    sys.path[:0] = [p for p in (str(root), str(root / VGGT_PARENT)) if p not in sys.path]
    try:
        return importlib.import_module(MODEL_MODULE)
    except ImportError as e:
        raise UserError(f"Spatial-MLLM's code in {root} does not import ({e}). {EXTRA}") from None


class SpatialMLLMTeacher(QwenVLTeacher):
    name = "spatial-mllm"
    model_types = ("spatial-mllm",)
    example_repo = "Diankun/Spatial-MLLM-v1.1-Instruct-135K"

    def __init__(self, classes, model_path, *, repo_root: str | None = None, **kw):
        self.repo_root = repo_root or os.environ.get("SPATIAL_MLLM_ROOT") or None
        missing = missing_requirements(self.repo_root)
        if missing:
            raise UserError(f"the spatial-mllm teacher needs {'; '.join(missing)}. {EXTRA}")
        super().__init__(classes, model_path, **kw)

    @classmethod
    def from_args(cls, classes, args, work_dir):
        return cls(classes, args.teacher_model, repo_root=args.spatial_mllm_root, orders=args.teacher_orders,
                   seed=args.seed, batch_size=args.teacher_vlm_batch, image_size=args.teacher_vlm_size,
                   threads=args.teacher_threads)

    def _check_config(self, config: dict) -> None:
        model_type = config.get("model_type")
        if model_type != "spatial-mllm" or "connector_type" not in (config.get("connector_config") or {}):
            kind = ("a Spatial-MLLM v1.0 (e.g. Spatial-MLLM-subset-sft: another model class, on upstream's v1.0 "
                    "branch) or plain Qwen2.5-VL checkpoint (for the latter use --teacher qwen2.5-vl)"
                    if model_type == "qwen2_5_vl" else f"a {model_type!r} model")
            raise UserError(f"{self.model_path} holds {kind}; the spatial-mllm teacher supports {SUPPORTED}, "
                            f"the only version whose model class upstream's main branch ships and that we test")

    def _load_model(self, dtype, device):
        module = upstream_module(self.repo_root)
        config = module.SpatialMLLMConfig.from_pretrained(self.model_path, local_files_only=True)
        # flash-attn is what upstream runs on CUDA; elsewhere PyTorch's attention gives the same result, slower.
        attn = ("flash_attention_2" if device.startswith("cuda") and importlib.util.find_spec("flash_attn")
                else "sdpa")
        return module.SpatialMLLMForConditionalGeneration.from_pretrained(
            self.model_path, config=config, local_files_only=True, torch_dtype=dtype, attn_implementation=attn,
            device_map=device).eval()

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
