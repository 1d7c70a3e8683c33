"""The spatial-mllm teacher end to end on CPU, on a tiny randomly initialised Spatial-MLLM v1.1 built from
upstream's own classes (SpatialMLLMConfig, SpatialMLLMForConditionalGeneration) and loaded from a folder.

Upstream's code is a checkout the user makes, pinned to transformers 4.51.3, so this runs only in that
environment, with SPATIAL_MLLM_ROOT pointing at the checkout:

    SPATIAL_MLLM_ROOT=/path/to/Spatial-MLLM /path/to/smllm-venv/bin/python -m pytest -q tests/test_spatial_mllm_tiny.py
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import shutil

import numpy as np
import pytest

from edgecore.errors import UserError
from compress.teachers import vlm_scoring
from compress.teachers.spatial_mllm import SpatialMLLMTeacher, missing_requirements, upstream_module

ROOT = os.environ.get("SPATIAL_MLLM_ROOT")
if not ROOT:
    pytest.skip("SPATIAL_MLLM_ROOT is not set (a checkout of github.com/diankun-wu/Spatial-MLLM, run in its own "
                "environment: README, Teaching with a VLM)", allow_module_level=True)
if missing_requirements(ROOT):
    pytest.skip(f"the spatial-mllm environment lacks {'; '.join(missing_requirements(ROOT))}",
                allow_module_level=True)

CLASSES = ["basic", "burnt", "combined", "mixed", "progression", "segment"]
SIDE = 56  # 4 x 4 patches of 14 pixels: 4 image tokens after the 2 x 2 merge


@pytest.fixture(scope="module")
def upstream():
    """Upstream's module, with VGGT shrunk for the duration. Its spatial encoder always builds VGGT at full
    size (a ViT-L patch embedder, 24 + 24 attention blocks and four prediction heads: 1.2 B parameters), and
    its config exposes only the width; the tiny model gets 2 + 2 blocks, a conv patch embedder and no heads
    (Spatial-MLLM's forward uses the aggregator alone)."""
    import torch

    torch.set_num_threads(1)
    module = upstream_module(ROOT)
    encoder = importlib.import_module("src.qwenvl.model.spatial_encoder")
    vggt = encoder.VGGT
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(encoder, "VGGT", functools.partial(vggt, enable_camera=False, enable_point=False,
                                                      enable_depth=False, enable_track=False))
        aggregator = vggt.__init__.__globals__["Aggregator"]
        mp.setitem(vggt.__init__.__globals__, "Aggregator",
                   functools.partial(aggregator, depth=2, num_heads=4, patch_embed="conv"))
        yield module


@pytest.fixture(scope="module")
def tiny(upstream, tmp_path_factory):
    import torch
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    from compress.teachers.tiny_qwen_vl import SPECIAL, build_tokenizer

    tok = build_tokenizer(CLASSES)
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIAL}
    config = upstream.SpatialMLLMConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10000.0,
        rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, initializer_range=0.3,
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           window_size=28, fullatt_block_indexes=[1], spatial_merge_size=2, patch_size=14,
                           temporal_patch_size=2),
        spatial_config=dict(img_size=SIDE, patch_size=14, embed_dim=64),
        connector_config={"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(0)
    model = upstream.SpatialMLLMForConditionalGeneration(config).eval()
    out = tmp_path_factory.mktemp("ckpt") / "tiny-spatial-mllm-v1.1"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    Qwen2VLImageProcessor(min_pixels=SIDE * SIDE, max_pixels=SIDE * SIDE).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def teacher(tiny):
    t = SpatialMLLMTeacher(CLASSES, tiny, repo_root=ROOT, seed=0, batch_size=2, image_size=SIDE)
    t._load()
    return t


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, SIDE, SIDE, 3), dtype=np.uint8)


def test_scores_through_upstreams_model(teacher, images):
    assert type(teacher.model).__name__ == "SpatialMLLMForConditionalGeneration"
    assert teacher.model.config._attn_implementation == "sdpa"  # CPU: PyTorch attention, not flash-attn
    s = teacher.score(images)
    assert s.shape == (3, len(CLASSES), len(CLASSES)) and np.allclose(s.sum(axis=2), 1.0, atol=1e-5)
    assert np.abs(s[0] - s[1]).max() > 1e-4  # the image reaches the language model
    rep = teacher.diagnose(images, np.array([0, 1, 2]))
    assert 0 <= rep["ece"] <= 1 and len(rep["position_pick_rate"]) == len(CLASSES)


def test_logits_equal_upstreams_canonical_call(teacher, tiny, images):
    """Upstream's inference path: `Qwen2_5_VLProcessor(text=..., images=...)`, plus `image_tchw` (the image at
    the processor's size in [0, 1]; a still image as two identical frames), then `model(**batch)`."""
    import torch
    from PIL import Image
    from transformers import Qwen2_5_VLProcessor, Qwen2TokenizerFast
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    logits = teacher.last_logits(images)
    tokenizer = Qwen2TokenizerFast.from_pretrained(tiny)  # the processor's type check wants Qwen's class
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor.from_pretrained(tiny), tokenizer=tokenizer,
                                    chat_template=tokenizer.chat_template)
    for i, img in enumerate(images):
        pil = Image.fromarray(img)
        for k, order in enumerate(teacher.orders):
            messages = [{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": vlm_scoring.question(CLASSES, order)}]}]
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            batch = processor(text=[text], images=[pil], return_tensors="pt")
            _, gh, gw = batch["image_grid_thw"][0].tolist()
            frame = torch.from_numpy(np.array(pil.resize((gw * 14, gh * 14), Image.BICUBIC))).permute(2, 0, 1)
            batch["image_tchw"] = [(frame.float() / 255.0).expand(2, -1, -1, -1)]
            with torch.inference_mode():
                canonical = teacher.model(**batch).logits[0, -1]
                blank = teacher.model(**{**batch, "image_tchw": [torch.zeros_like(batch["image_tchw"][0])]})
            torch.testing.assert_close(logits[i, k], canonical, atol=1e-4, rtol=1e-4)
            # VGGT's view of the image counts: the comparison covers the spatial path too.
            assert float((blank.logits[0, -1] - canonical).abs().max()) > 1e-3


def test_encoders_run_once_per_image(teacher, images):
    """The vision encoder and VGGT see each image once, not once per option order."""
    seen = {"visual": 0, "spatial": 0}
    hooks = [teacher.model.visual.register_forward_hook(
                 lambda m, args, kwargs, out: seen.update(visual=seen["visual"] + len(kwargs["grid_thw"])),
                 with_kwargs=True),
             teacher.model.spatial_encoder.register_forward_hook(
                 lambda m, args, out: seen.update(spatial=seen["spatial"] + len(args[0])))]
    try:
        teacher.score(images)
    finally:
        for h in hooks:
            h.remove()
    assert seen == {"visual": len(images), "spatial": len(images)}


def test_user_mistakes_are_one_line(tiny, tmp_path):
    v10 = tmp_path / "v1.0"
    shutil.copytree(tiny, v10)
    cfg = json.loads((v10 / "config.json").read_text())
    (v10 / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2_5_vl"}))
    with pytest.raises(UserError, match=r"v1\.0 .*supports Spatial-MLLM v1\.1") as e:
        SpatialMLLMTeacher(CLASSES, v10, repo_root=ROOT)
    with pytest.raises(UserError, match="its source code") as e2:
        SpatialMLLMTeacher(CLASSES, tiny, repo_root=str(tmp_path))
    assert "\n" not in str(e.value) + str(e2.value)
