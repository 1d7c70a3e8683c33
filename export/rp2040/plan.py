"""Static memory plan: activation tensors placed in one arena by liveness (greedy, largest first)."""
from __future__ import annotations

ALIGN = 4


def plan(sizes: dict[int, int], lifetimes: dict[int, tuple[int, int]]) -> tuple[dict[int, int], int]:
    """sizes: tensor -> bytes; lifetimes: tensor -> (first step, last step), inclusive.
    Returns (tensor -> arena offset, arena bytes). Tensors whose lifetimes overlap never share bytes."""
    offsets: dict[int, int] = {}
    for t in sorted(sizes, key=lambda t: (-sizes[t], lifetimes[t][0], t)):
        a0, a1 = lifetimes[t]
        busy = sorted((offsets[u], offsets[u] + sizes[u]) for u in offsets
                      if not (lifetimes[u][1] < a0 or a1 < lifetimes[u][0]))
        best = None
        cursor = 0
        for lo, hi in busy:        # best fit: the smallest gap that holds the tensor
            if lo - cursor >= sizes[t] and (best is None or lo - cursor < best[1]):
                best = (cursor, lo - cursor)
            cursor = max(cursor, _align(hi))
        offsets[t] = best[0] if best is not None else cursor
    peak = max((offsets[t] + sizes[t] for t in offsets), default=0)
    return offsets, _align(peak)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
