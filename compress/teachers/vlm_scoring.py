"""Turn a chat VLM into a classifier: the multiple-choice prompt, seeded option orders, and class
probabilities from the last-position logits. Shared by the Qwen2.5-VL and Spatial-MLLM teachers.

Hand-written: no maintained library scores closed-vocabulary answers from a single forward pass.
"""
from __future__ import annotations

import numpy as np

from edgecore.errors import UserError


def display_name(cls: str) -> str:
    """Folder names like `well_done` read as `well done` in the prompt."""
    return cls.replace("_", " ").replace("-", " ")


def question(classes: list[str], order) -> str:
    names = [display_name(classes[i]) for i in order]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"Which of these describes the pizza: {listed}? Answer with one word."


def option_orders(n_classes: int, n_orders: int, seed: int) -> np.ndarray:
    """`n_orders` option orders [K, C]: rotations of one seeded permutation, so with K == C every
    class is shown once at every position (a Latin square), which cancels a pure position bias."""
    if not 1 <= n_orders <= n_classes:
        raise UserError(f"--teacher-orders must be between 1 and the number of classes ({n_classes}), got {n_orders}")
    base = np.random.default_rng(seed).permutation(n_classes)
    return np.stack([np.roll(base, -k) for k in range(n_orders)])


def class_token_ids(tokenizer, classes: list[str]) -> list[list[int]]:
    """Token ids that can start each class's one-word answer.

    A class scores the first token of its name as written, lower-case and capitalised (a model may
    answer "Burnt" or "burnt"); a multi-token name like "progression" -> "pro" + "gression" is scored
    by its first token, which decides the greedy answer. Variants mapping to the unknown token are
    dropped, and so is a first token two classes share (e.g. "B" from "Burnt" and "Basic"); a class
    left with no token of its own cannot be told apart from one forward pass, which is an error."""
    unk = getattr(tokenizer, "unk_token_id", None)
    candidates = []
    for cls in classes:
        name = display_name(cls)
        firsts = [tokenizer.encode(v, add_special_tokens=False)[:1] for v in dict.fromkeys(
            (name, name.lower(), name.capitalize()))]
        candidates.append(list(dict.fromkeys(t[0] for t in firsts if t and t[0] != unk)))
    owners: dict[int, int] = {}
    for i, ids in enumerate(candidates):
        for t in ids:
            owners[t] = owners.get(t, 0) + 1
    out = []
    for cls, ids in zip(classes, candidates):
        if not ids:
            raise UserError(f"class name {cls!r} has no token in the teacher's vocabulary")
        own = [t for t in ids if owners[t] == 1]
        if not own:
            raise UserError(f"class {cls!r} starts with the same token as another class "
                            f"({tokenizer.convert_ids_to_tokens(ids[0])!r}); rename one class folder")
        out.append(own)
    return out


def class_probs(last_logits, token_ids: list[list[int]]) -> np.ndarray:
    """[S, V] last-position logits -> [S, C] softmax over the classes (variants pooled by logsumexp)."""
    import torch

    logits = last_logits.float()
    per_class = torch.stack([torch.logsumexp(logits[:, ids], dim=1) for ids in token_ids], dim=1)
    return torch.softmax(per_class, dim=1).cpu().numpy().astype(np.float32)


def order_report(per_order: np.ndarray, orders: np.ndarray, labels: np.ndarray) -> dict:
    """How much the option order sways the answer, from [N, K, C] per-order probabilities.

    `position_pick_rate[j]`: how often the answer was the option shown at position j (1/C each for an
    unbiased model); `order_agreement`: fraction of images whose answer is the same in every order;
    `order_accuracy`: accuracy of each order alone, next to the averaged answer's."""
    if len(labels) == 0:
        return {}
    picks = per_order.argmax(axis=2)  # [N, K] class index
    position = np.argsort(orders, axis=1)  # position[k, c] = where class c sits in order k
    shown_at = position[np.arange(orders.shape[0])[None, :], picks]  # [N, K]
    rate = np.bincount(shown_at.ravel(), minlength=orders.shape[1]) / shown_at.size
    return {"position_pick_rate": [round(float(r), 4) for r in rate],
            "order_agreement": float((picks == picks[:, :1]).all(axis=1).mean()),
            "order_accuracy": [round(float((picks[:, k] == labels).mean()), 4) for k in range(picks.shape[1])]}
