"""Outlier clamping (Mind Reader): a few fixed CLIP dimensions take outlier values.

Some CLIP dimensions carry values far larger than all others (for every image or caption of a
modality), and they would dominate squared-error and cosine losses. Mind Reader clamps them
to a threshold before normalising. The threshold here is ``sd`` times the scale of a typical
dimension: the median over dimensions of each dimension's root mean square over the non-test
stimuli' raw (unnormalised) embeddings. So one setting works for models of any output scale
(the paper fixes a value for its one model), and the outliers themselves do not inflate it;
the test stimuli are clamped with the same threshold but never used to choose it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmridecode.io import DataError


def typical_scale(raw: np.ndarray) -> float:
    """The RMS of a typical dimension: the median over dimensions of each one's RMS."""
    return float(np.median(np.sqrt(np.mean(np.square(raw, dtype=np.float64), axis=0))))


def clamp_outliers(
    raw: np.ndarray, fit_rows: np.ndarray, sd: float | None, modality: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """``raw`` (N, D) clamped to +-``sd`` x the typical dimension's RMS over ``fit_rows``
    (``sd`` None: unchanged), and a table of the dimensions that were clamped: ``modality,
    dim, n_clamped, max_abs_over_scale, threshold`` (empty when none were)."""
    raw = np.asarray(raw, dtype=np.float32)
    fit_rows = np.asarray(fit_rows, dtype=bool)
    if raw.ndim != 2 or len(fit_rows) != len(raw):
        raise DataError(f"clamping {modality}: need (N, D) embeddings and N row flags")
    if not np.isfinite(raw).all():
        raise DataError(f"clamping {modality}: embeddings contain non-finite values")
    columns = ["modality", "dim", "n_clamped", "max_abs_over_scale", "threshold"]
    if sd is None:
        return raw, pd.DataFrame(columns=columns)
    if sd <= 0:
        raise DataError(f"clamping {modality}: the threshold must be > 0 RMS, got {sd}")
    if not fit_rows.any():
        raise DataError(f"clamping {modality}: no non-test rows to set the threshold on")
    scale = typical_scale(raw[fit_rows])
    threshold = sd * scale
    over = np.abs(raw) > threshold
    dims = np.flatnonzero(over.any(axis=0))
    report = pd.DataFrame(
        {
            "modality": modality,
            "dim": dims.astype(np.int64),
            "n_clamped": over[:, dims].sum(axis=0).astype(np.int64),
            "max_abs_over_scale": (np.abs(raw[:, dims]).max(axis=0) / scale).astype(np.float32),
            "threshold": np.float32(threshold),
        },
        columns=columns,
    )
    return np.clip(raw, -threshold, threshold), report
