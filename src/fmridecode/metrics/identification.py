"""Two-way identification (Brain-Diffuser / MindEye definition)."""

from __future__ import annotations

import numpy as np

from fmridecode.io import DataError


def _zrows(a: np.ndarray, name: str) -> np.ndarray:
    """Rows centred and scaled to unit norm, so that dot products are Pearson r."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"two_way_identification: {name} must be 2D, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"two_way_identification: {name} has non-finite values")
    a = a - a.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(a, axis=1)
    const = np.flatnonzero(~(a.max(axis=1) > a.min(axis=1)))
    if const.size:
        raise DataError(f"two_way_identification: {name} rows {const[:5].tolist()} are constant")
    return a / norm[:, None]


def two_way_identification(pred_feats: np.ndarray, true_feats: np.ndarray) -> float:
    """Mean over i of the fraction of j != i with r(pred_i, true_i) > r(pred_i, true_j).

    r is the Pearson correlation of feature vectors; every other test image is a foil (not a
    random subset); ties count as failures; chance is 0.5.
    """
    P, T = _zrows(pred_feats, "pred_feats"), _zrows(true_feats, "true_feats")
    if P.shape != T.shape:
        raise DataError(f"two_way_identification: shapes differ, {P.shape} vs {T.shape}")
    n = P.shape[0]
    if n < 2:
        raise DataError("two_way_identification: needs at least 2 items")
    R = P @ T.T  # R[i, j] = r(pred_i, true_j)
    wins = (np.diag(R)[:, None] > R).sum(axis=1)  # j = i never wins against itself
    return float(np.mean(wins / (n - 1)))
