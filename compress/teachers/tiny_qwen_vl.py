"""Build a tiny randomly initialised Qwen2.5-VL checkpoint offline (no hub files), saved like a real one.

It exercises the qwen2.5-vl teacher's real code path (tokenizer, chat template, image processor,
image tokens, forward pass) on a machine without the multi-GB weights. Its answers are random.

    python -m compress.teachers.tiny_qwen_vl --out /tmp/tiny-qwen --classes basic burnt mixed
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from edgecore.errors import UserError, one_line_errors
from edgecore.io import ensure_dir

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
WORDS = ["system", "user", "assistant", "You", "are", "a", "helpful", "Which", "of", "these", "describes",
         "the", "pizza", "or", "Answer", "with", "one", "word", ".", ",", ":", "?"]
# Qwen2.5-VL's template, reduced to what the teacher sends (one image, one text, generation prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tokenizer(classes):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]"] + WORDS + sorted({w for c in classes for w in c.replace("_", " ").replace("-", " ").split()})
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words + SPECIAL))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(out: Path, classes, image_size: int = 56, seed: int = 0) -> Path:
    """Write config, weights, tokenizer and preprocessor config to `out` (atomically, as a folder)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if image_size % 28:
        raise UserError(f"--image-size must be a multiple of 28 (patch 14 x merge 2), got {image_size}")
    tok = build_tokenizer(classes)
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], initializer_range=0.3),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32,
                           window_size=28, fullatt_block_indexes=[1], spatial_merge_size=2, patch_size=14,
                           temporal_patch_size=2, initializer_range=0.3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    pixels = image_size * image_size
    processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)

    out = Path(out)
    ensure_dir(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@one_line_errors()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress.teachers.tiny_qwen_vl", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint to")
    p.add_argument("--classes", nargs="+", default=["basic", "burnt", "combined", "mixed", "progression", "segment"],
                   help="class names the tokenizer must know (default: the six pizza classes)")
    p.add_argument("--image-size", type=int, default=56, help="image side the processor keeps (multiple of 28)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(build(args.out, args.classes, args.image_size, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
