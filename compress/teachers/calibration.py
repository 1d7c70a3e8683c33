"""Teacher calibration on labelled images: is a 0.8 confidence right 80 % of the time?"""
from __future__ import annotations

import numpy as np


def calibration(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Accuracy, mean confidence and expected calibration error (equal-width confidence bins)."""
    if len(labels) == 0:
        return {}
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
              for b in range(n_bins) if (bins == b).any())
    return {"accuracy": float(correct.mean()), "mean_confidence": float(conf.mean()), "ece": float(ece)}
