"""Identification metrics on feature vectors: 2-way (Brain-Diffuser / MindEye: against all
other items), n-way and BrainCLIP's random 2-way, and the mean correlation distance."""

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
    R = _pair_r(pred_feats, true_feats, "two_way_identification")
    n = R.shape[0]
    if n < 2:
        raise DataError("two_way_identification: needs at least 2 items")
    wins = (np.diag(R)[:, None] > R).sum(axis=1)  # j = i never wins against itself
    return float(np.mean(wins / (n - 1)))


def _pair_r(pred_feats: np.ndarray, true_feats: np.ndarray, name: str) -> np.ndarray:
    """R[i, j] = Pearson r(pred_i, true_j), with the shapes checked."""
    P, T = _zrows(pred_feats, "pred_feats"), _zrows(true_feats, "true_feats")
    if P.shape != T.shape:
        raise DataError(f"{name}: shapes differ, {P.shape} vs {T.shape}")
    return P @ T.T


def n_way_identification(
    pred_feats: np.ndarray, true_feats: np.ndarray, n: int, repeats: int = 50, seed: int = 0
) -> float:
    """Mean over items i and ``repeats`` draws of n - 1 distinct foils j != i (uniform, seeded)
    of [r(pred_i, true_i) > r(pred_i, true_j) for every foil j]; chance 1/n.

    n = 2 with 50 repeats is BrainCLIP's 2-way variant (one random foil, repeated 50 times:
    ``two_way_random``); ``two_way_identification`` instead averages over all foils.
    """
    R = _pair_r(pred_feats, true_feats, "n_way_identification")
    m = len(R)
    if not 2 <= n <= m:
        raise DataError(f"n_way_identification: n must be in [2, {m}] (test items), got {n}")
    if repeats < 1:
        raise DataError(f"n_way_identification: repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    own = np.diag(R)
    hits = 0
    for i in range(m):
        others = np.delete(np.arange(m), i)
        # n - 1 distinct foils per repeat: the first n - 1 of a random permutation
        foils = rng.permuted(np.tile(others, (repeats, 1)), axis=1)[:, : n - 1]
        hits += int((R[i, foils].max(axis=1) < own[i]).sum())
    return hits / (m * repeats)


def two_way_random(
    pred_feats: np.ndarray, true_feats: np.ndarray, repeats: int = 50, seed: int = 0
) -> float:
    """BrainCLIP's 2-way identification: against one random other item, repeated; chance 0.5."""
    return n_way_identification(pred_feats, true_feats, 2, repeats, seed)


def correlation_distance(pred_feats: np.ndarray, true_feats: np.ndarray) -> float:
    """Mean over items of 1 - r(pred_i, true_i) (scipy's correlation distance); MindEye's
    EfficientNet-B1 and SwAV metrics. 0 = identical features up to scale and offset."""
    R = _pair_r(pred_feats, true_feats, "correlation_distance")
    return float(np.mean(1.0 - np.diag(R)))
