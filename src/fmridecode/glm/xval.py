"""Cross-validation of single-trial betas across runs (GLMsingle's hyperparameter criterion).

For each hyperparameter level h (number of noise PCs, or ridge fraction) the badness of a
voxel is the summed squared difference between each trial's *reference* beta (level 0:
0 PCs, or unregularised) and every training-run beta of the same condition at level h,
where the training runs are all runs but the trial's own (leave one run out). Betas are
z-scored per voxel with the mean and standard deviation (n - 1) of the reference level over all
trials first, so the levels are compared in one unit.

Written as sums over (test, train) trial pairs, badness_h = sum_s c_s Z_h[s]^2 +
sum_t r_t Z_0[t]^2 - 2 sum_s Z_h[s] (A^T Z_0)[s], with A the pair matrix: one matrix
product per level instead of GLMsingle's loop over trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmridecode.glm.backend import NUMPY, Backend


def pair_matrix(conditions: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """(n_trials, n_trials) float: 1 where trials share a condition and come from different runs."""
    conditions = np.asarray(conditions)
    runs = np.asarray(runs)
    return ((conditions[:, None] == conditions[None, :]) & (runs[:, None] != runs[None, :])).astype(
        np.float64
    )


def badness(betas: Sequence[Any], pairs: Any, bk: Backend = NUMPY) -> np.ndarray:
    """(n_levels, V) leave-one-run-out squared error; ``betas[0]`` is the reference level.

    ``betas``: one (n_trials, V) array per level and ``pairs`` the pair matrix, as arrays of
    backend ``bk``. Voxels whose reference betas are constant get a unit standard deviation
    (no division by zero).
    """
    ref = betas[0]
    mean = ref.mean(0)
    sd = bk.std1(ref)
    sd = bk.where(sd > 0, sd, 1.0)
    z0 = (ref - mean) / sd
    col = pairs.sum(0)  # times trial s is a training trial
    row = pairs.sum(1)  # times trial t is a test trial
    cross = pairs.T @ z0  # (trials, V): summed test betas paired with training trial s
    const = row @ (z0**2)
    out = []
    for b in betas:
        z = (b - mean) / sd
        out.append(col @ (z**2) + const - 2.0 * (z * cross).sum(0))
    return bk.numpy(bk.stack(out))


def has_repeats_across_runs(conditions: np.ndarray, runs: np.ndarray) -> bool:
    """Whether any condition occurs in two different runs (needed for cross-validation)."""
    df = np.unique(
        np.stack([np.asarray(conditions).astype(str), np.asarray(runs).astype(str)]), axis=1
    )
    _, counts = np.unique(df[0], return_counts=True)
    return bool((counts > 1).any())
