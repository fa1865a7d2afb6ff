"""Single-trial design matrices: one regressor per trial plus Legendre drift per run.

Volume k of a run is sampled at time k * TR after the run starts. A trial's regressor is its
HRF's boxcar response evaluated at those times (``hrf.response(k*TR - onset)``). Two onset
modes: ``exact`` models onsets off the TR grid without rounding (response peak 1);
``nearest`` is GLMsingle's convention: each onset moves to the nearest volume,
floor(onset / TR + 0.5), and the response is the HRF sampled at multiples of the TR, scaled so
that its largest sample is 1. Trials never reach across runs, so a
session's design is block diagonal (one block per run) and the least-squares fit decouples
into independent per-run fits; ``session_design`` builds the stacked matrix for methods
that need it whole and for checking that equivalence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import legendre
from scipy import linalg

from fmridecode.glm.hrf import HRF, SampledHRF
from fmridecode.io import DataError

#: Designs whose condition number exceeds this are refused as rank deficient.
MAX_CONDITION = 1e8


def volume_times(n_vols: int, tr: float) -> np.ndarray:
    """Acquisition time of each volume, k * TR (s)."""
    return np.arange(n_vols, dtype=float) * float(tr)


#: The onset modes of ``trial_regressors``.
ONSET_MODES = ("nearest", "exact")


def onset_volumes(onsets: np.ndarray, tr: float) -> np.ndarray:
    """GLMsingle's onset volume: floor(onset / TR + 0.5) (half-way ties go up)."""
    return np.floor(np.asarray(onsets, dtype=float) / tr + 0.5).astype(np.int64)


def trial_regressors(
    onsets: np.ndarray,
    n_vols: int,
    tr: float,
    hrf: HRF | SampledHRF,
    duration: float,
    mode: str = "exact",
) -> np.ndarray:
    """(n_vols, n_trials): column j is the boxcar response to trial j at times k * TR."""
    onsets = np.asarray(onsets, dtype=float)
    if mode == "nearest":
        shifted = onset_volumes(onsets, tr) * float(tr)
        peak = hrf.response(volume_times(int(60.0 / tr) + 2, tr), duration).max()
        t = volume_times(n_vols, tr)[:, None] - shifted[None, :]
        return hrf.response(t, duration) / peak
    if mode != "exact":
        raise ValueError(f"onset mode must be one of {ONSET_MODES}, got {mode!r}")
    t = volume_times(n_vols, tr)[:, None] - onsets[None, :]
    return hrf.response(t, duration)


def drift_degree(n_vols: int, tr: float) -> int:
    """GLMsingle's default drift degree: round(run minutes / 2), half up, at least 1."""
    minutes = n_vols * tr / 60.0
    return max(1, math.floor(minutes / 2.0 + 0.5))


def drift_regressors(n_vols: int, degree: int) -> np.ndarray:
    """(n_vols, degree + 1): Legendre polynomials P_0..P_degree over the run mapped to [-1, 1]."""
    if degree < 0:
        raise ValueError(f"polynomial degree must be >= 0, got {degree}")
    x = np.linspace(-1.0, 1.0, n_vols)
    return legendre.legvander(x, degree)


def run_design(
    onsets: np.ndarray,
    n_vols: int,
    tr: float,
    hrf: HRF,
    duration: float,
    degree: int,
    name: str = "run",
    mode: str = "exact",
) -> np.ndarray:
    """(n_vols, n_trials + degree + 1): trial regressors then drift regressors of one run.

    Raises DataError (message starts with ``name``) if the run has no trials, is too short
    for its regressors, has a trial that evokes no response inside the run, or the design
    is rank deficient (e.g. two trials with the same onset).
    """
    onsets = np.asarray(onsets, dtype=float)
    n_trials = len(onsets)
    if n_trials == 0:
        raise DataError(f"{name}: no trials, the single-trial design is empty")
    if n_vols < degree + 1:
        raise DataError(
            f"{name}: {n_vols} volumes is too short for drift polynomials of degree {degree}"
        )
    if n_vols < n_trials + degree + 1:
        raise DataError(
            f"{name}: {n_vols} volumes cannot fit {n_trials} trials plus {degree + 1} drift "
            "regressors"
        )
    if mode == "nearest":
        vols = onset_volumes(onsets, tr)
        same = np.flatnonzero(np.diff(np.sort(vols)) == 0)
        if same.size:
            v = int(np.sort(vols)[same[0]])
            raise DataError(
                f"{name}: two trials fall on volume {v} (onsets within one TR of "
                f"{v * tr:.2f} s); with glm.onsets: nearest every trial needs its own volume "
                "(use glm.onsets: exact, or drop one of the trials)"
            )
    trials = trial_regressors(onsets, n_vols, tr, hrf, duration, mode)
    dead = np.flatnonzero(np.abs(trials).max(axis=0) < 1e-6)
    if dead.size:
        j = int(dead[0])
        raise DataError(
            f"{name}: trial {j} (onset {onsets[j]:.3f} s) has no response within the run "
            f"({n_vols} volumes x TR {tr} s = {n_vols * tr:.1f} s)"
        )
    X = np.hstack([trials, drift_regressors(n_vols, degree)])
    cond = np.linalg.cond(X)
    if not np.isfinite(cond) or cond > MAX_CONDITION:
        raise DataError(
            f"{name}: design is rank deficient (condition number {cond:.3g}); "
            "check for trials with identical or nearly identical onsets"
        )
    return X


def session_design(designs: Sequence[np.ndarray], n_trials: Sequence[int]) -> np.ndarray:
    """Stack per-run designs into one block-diagonal session design.

    Columns: all trial regressors in chronological (run, then onset) order, then each run's
    drift regressors. Rows: the runs' volumes concatenated.
    """
    if len(designs) != len(n_trials):
        raise ValueError("one trial count per run design is needed")
    trial_blocks = [X[:, :n] for X, n in zip(designs, n_trials, strict=True)]
    drift_blocks = [X[:, n:] for X, n in zip(designs, n_trials, strict=True)]
    return np.hstack([linalg.block_diag(*trial_blocks), linalg.block_diag(*drift_blocks)])
