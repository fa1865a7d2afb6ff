"""Mind Reader's fusion: retrieval from a weighted sum of several mappers' similarity matrices.

With S_m = unit(P_m) @ unit(C)^T the cosine similarities of mapper m's predictions to the
candidates, sum_m w_m S_m = (sum_m w_m unit(P_m)) @ unit(C)^T: the fused similarity matrix is
the similarity of one fused prediction, ``fuse(preds, w) = sum_m w_m unit(P_m)``, to the
(unit) candidates. Forward retrieval (ranking candidates for each fMRI row) is unchanged by
the fused row's length, so it equals Mind Reader's fusion exactly; every other metric scores
the fused prediction like any mapper's (cosine, i.e. on its unit direction).

The weights are chosen on the validation images (held out of every mapper's training): every
weight vector on a simplex grid of step ``grid_step`` is scored by the mean reciprocal rank of
the true validation image among all validation images; the best wins, ties to the first in
grid order (which starts with the single mappers, so a fusion never wins by a tie).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize
from fmridecode.metrics.retrieval import ranks


def simplex_grid(m: int, step: float) -> np.ndarray:
    """Every weight vector of ``m`` non-negative multiples of ``step`` summing to 1, ordered by
    the number of non-zero weights (single mappers first), shape (g, m)."""
    if m < 1:
        raise ValueError("simplex_grid: need at least one mapper")
    units = round(1.0 / step)
    if units < 1 or abs(units * step - 1.0) > 1e-9:
        raise ValueError(f"simplex_grid: step {step} must divide 1")
    rows = [
        c for c in itertools.product(range(units + 1), repeat=m) if sum(c) == units
    ]  # fine for the few mappers fused in practice (m=6, step 0.1: 3003 vectors)
    rows.sort(key=lambda c: (sum(v > 0 for v in c), [-v for v in c]))
    return np.asarray(rows, dtype=np.float64) / units


def fuse(preds: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The fused prediction ``sum_m w_m unit(P_m)`` (float32)."""
    if len(preds) != len(weights):
        raise DataError(f"fuse: {len(preds)} predictions but {len(weights)} weights")
    shapes = {p.shape for p in preds}
    if len(shapes) != 1:
        raise DataError(f"fuse: predictions differ in shape {sorted(shapes)}")
    unit = [l2_normalize(np.asarray(p, dtype=np.float64)) for p in preds]
    out = sum(w * u for u, w in zip(unit, weights, strict=True))
    return np.asarray(out, dtype=np.float32)


def choose_weights(
    val_preds: list[np.ndarray], candidates: np.ndarray, true_index: np.ndarray, step: float
) -> tuple[np.ndarray, pd.DataFrame]:
    """The grid weights with the best validation mean reciprocal rank, and every grid point's
    score (columns ``w0..w{m-1}, mrr, top1``)."""
    grid = simplex_grid(len(val_preds), step)
    scores = []
    for w in grid:
        r = ranks(fuse(val_preds, w), candidates, true_index)
        scores.append((float(np.mean(1.0 / (r + 1))), float(np.mean(r == 0))))
    table = pd.DataFrame(grid, columns=[f"w{i}" for i in range(len(val_preds))])
    table["mrr"] = [s[0] for s in scores]
    table["top1"] = [s[1] for s in scores]
    best = int(np.argmax(table["mrr"].to_numpy()))
    return grid[best], table
