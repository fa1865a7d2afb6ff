"""The noise ceiling of single-trial betas by NSD's formula (Allen et al. 2022).

With betas z-scored per voxel within each session, the noise variance is the mean over
stimuli of the variance of their repeated trials (ddof 1) and the signal variance what remains
of the unit total (clipped at 0); ncsnr = signal sd / noise sd, and the noise ceiling of an
average of n trials is ``100 * ncsnr^2 / (ncsnr^2 + 1 / n)`` percent: the share of the
variance of trial-averaged responses that a perfect model could explain. The simulator uses
the same formula on its true standard deviations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fmridecode.io import DataError


def signal_noise_sd(X: np.ndarray, stim_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(signal sd, noise sd), each (V,), of z-scored single-trial betas ``X`` (n_trials, V),
    trial i showing ``stim_ids[i]``; only stimuli shown at least twice inform the noise."""
    X = np.asarray(X, np.float64)
    ids = pd.Series(np.asarray(stim_ids, dtype=str))
    if X.ndim != 2 or len(ids) != len(X):
        raise DataError(f"noise ceiling: X {X.shape} and {len(ids)} stimulus ids disagree")
    groups = [g for g in ids.groupby(ids, sort=True).indices.values() if len(g) >= 2]
    if not groups:
        raise DataError("noise ceiling: no stimulus was shown twice; it needs repeats")
    noise_var = np.mean([X[g].var(axis=0, ddof=1) for g in groups], axis=0)
    return np.sqrt(np.clip(1.0 - noise_var, 0.0, None)), np.sqrt(noise_var)


def noise_ceiling(signal_sd: np.ndarray, noise_sd: np.ndarray, n_avg: int = 3) -> np.ndarray:
    """Noise ceiling (%) of responses averaged over ``n_avg`` trials: 100 * ncsnr^2 /
    (ncsnr^2 + 1/n_avg) with ncsnr = signal_sd / noise_sd; 0 where both sds are 0."""
    signal_sd = np.asarray(signal_sd, float)
    noise_sd = np.asarray(noise_sd, float)
    if np.any(signal_sd < 0) or np.any(noise_sd < 0):
        raise ValueError("noise_ceiling: standard deviations must be >= 0")
    if n_avg < 1:
        raise ValueError(f"noise_ceiling: n_avg must be >= 1, got {n_avg}")
    s2, n2 = signal_sd**2, noise_sd**2
    denom = s2 + n2 / n_avg
    return np.where(denom > 0, 100 * s2 / np.where(denom > 0, denom, 1), 0.0)


def repeats_averaged(stim_ids: Sequence[str], test_ids: set[str]) -> int:
    """n of the noise ceiling: how many trials the test responses average (the median repeat
    count of the test stimuli; of all stimuli when none is a test one)."""
    counts = pd.Series(np.asarray(stim_ids, dtype=str)).value_counts()
    if counts.empty:
        raise DataError("noise ceiling: no trials")
    test = counts[counts.index.isin(list(test_ids))]
    return int((test if len(test) else counts).median())
