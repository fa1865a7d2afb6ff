"""How well single-trial GLM betas recover the simulator's true single-trial amplitudes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fmridecode.io import DataError

#: onsets are matched after rounding to this many decimals (seconds).
ONSET_DECIMALS = 3

TRUTH_KEYS = (
    "amplitudes",
    "trial_session",
    "trial_run",
    "trial_onset",
    "trial_stim_id",
    "responsive",
)


def _label(v: Any) -> str:
    """Session/run label in one spelling: 'ses-01', '01', 1 and 1.0 all become '1'."""
    s = re.sub(r"^(ses|run)-", "", str(v).strip())
    try:
        f = float(s)
    except ValueError:
        return s
    return str(int(f)) if f.is_integer() else s


def _keys(session, run, onset) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session": [_label(v) for v in session],
            "run": [_label(v) for v in run],
            "onset": np.round(np.asarray(onset, dtype=np.float64), ONSET_DECIMALS),
        }
    )


def match_trials(trials: pd.DataFrame, truth: Mapping[str, Any]) -> np.ndarray:
    """Row of the truth trial matching each estimated trial, joined on (session, run, onset).

    The onset is rounded to ``ONSET_DECIMALS`` decimals. Every estimated trial must match
    exactly one truth trial with the same stim_id, and every truth trial of a session present
    in ``trials`` must be matched (truth trials of other sessions are ignored).
    """
    need = {"session", "run", "onset", "stim_id"}
    if not need <= set(trials.columns):
        raise DataError(
            f"glm_recovery: trials table needs {sorted(need)}, has {list(trials.columns)}"
        )
    missing = [k for k in TRUTH_KEYS if k not in truth]
    if missing:
        raise DataError(f"glm_recovery: truth lacks {missing}")
    est = _keys(trials["session"], trials["run"], trials["onset"])
    est["stim_id"] = trials["stim_id"].astype(str).to_numpy()
    est["est_row"] = np.arange(len(est))
    tru = _keys(truth["trial_session"], truth["trial_run"], truth["trial_onset"])
    tru["stim_id_true"] = np.asarray(truth["trial_stim_id"]).astype(str)
    tru["true_row"] = np.arange(len(tru))
    on = ["session", "run", "onset"]
    for name, df in (("trials table", est), ("truth", tru)):
        dup = df.duplicated(on, keep=False)
        if dup.any():
            raise DataError(
                f"glm_recovery: {name} has duplicated (session, run, onset), e.g. "
                f"{df.loc[dup, on].iloc[0].to_dict()}"
            )
    m = est.merge(tru, on=on, how="left", validate="one_to_one")
    unmatched = m["true_row"].isna()
    if unmatched.any():
        raise DataError(
            f"glm_recovery: {int(unmatched.sum())} estimated trials have no true "
            f"trial, e.g. {m.loc[unmatched, on].iloc[0].to_dict()}"
        )
    wrong = m["stim_id"] != m["stim_id_true"]
    if wrong.any():
        r = m[wrong].iloc[0]
        raise DataError(
            f"glm_recovery: {int(wrong.sum())} matched trials disagree on stim_id, e.g. "
            f"{r[on].to_dict()}: {r['stim_id']} vs true {r['stim_id_true']}"
        )
    in_sessions = tru["session"].isin(set(est["session"]))
    left = np.setdiff1d(tru.loc[in_sessions, "true_row"], m["true_row"].astype(np.int64))
    if left.size:
        raise DataError(
            f"glm_recovery: {left.size} true trials of the estimated sessions have "
            f"no estimate, e.g. {tru.loc[left[0], on].to_dict()}"
        )
    return m.sort_values("est_row")["true_row"].to_numpy(dtype=np.int64)


def columnwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (n, V), e.g. per voxel across
    trials; NaN where a column is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"columnwise_r: shapes {a.shape} and {b.shape} must be equal and 2D")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))


def glm_recovery(
    betas: np.ndarray, trials: pd.DataFrame, truth: Mapping[str, Any]
) -> dict[str, float]:
    """Agreement of estimated betas (n_trials, V) with the true amplitudes over responsive voxels.

    Rows of ``betas`` are the trials of ``trials`` (same order); columns are the truth's
    voxels (brain-mask voxels in C order). Trials are joined to the truth by ``match_trials``,
    never by row order. Per responsive voxel, across trials: Pearson r(beta, truth) and the
    OLS slope of beta on truth (with intercept). Returns ``r_median`` (the glm_recovery_r
    metric), ``r_mean``, ``slope_median``, ``n_voxels``, ``n_trials``.
    """
    betas = np.asarray(betas, dtype=np.float64)
    rows = match_trials(trials, truth)
    amp = np.asarray(truth["amplitudes"], dtype=np.float64)
    if betas.ndim != 2 or betas.shape[0] != len(trials):
        raise DataError(
            f"glm_recovery: betas {betas.shape} do not have one row per trial ({len(trials)})"
        )
    if amp.ndim != 2 or amp.shape[1] != betas.shape[1]:
        raise DataError(
            f"glm_recovery: betas have {betas.shape[1]} voxels, truth amplitudes {amp.shape}"
        )
    if not np.all(np.isfinite(betas)):
        raise DataError("glm_recovery: betas have non-finite values")
    responsive = np.asarray(truth["responsive"], dtype=bool)
    if responsive.shape != (betas.shape[1],):
        raise DataError(f"glm_recovery: responsive {responsive.shape} vs {betas.shape[1]} voxels")
    if not responsive.any():
        raise DataError("glm_recovery: no responsive voxels in the truth")
    if len(rows) < 3:
        raise DataError(f"glm_recovery: {len(rows)} trials are too few for a correlation")
    b = betas[:, responsive]
    t = amp[rows][:, responsive]
    for name, a in (("betas", b), ("true amplitudes", t)):
        const = ~(a.max(axis=0) > a.min(axis=0))
        if const.any():
            raise DataError(
                f"glm_recovery: {int(const.sum())} responsive voxels have constant {name}"
            )
    r = columnwise_r(b, t)
    t = t - t.mean(axis=0)
    slope = ((b - b.mean(axis=0)) * t).sum(axis=0) / (t**2).sum(axis=0)
    return {
        "r_median": float(np.median(r)),
        "r_mean": float(np.mean(r)),
        "slope_median": float(np.median(slope)),
        "n_voxels": int(responsive.sum()),
        "n_trials": int(len(rows)),
    }
