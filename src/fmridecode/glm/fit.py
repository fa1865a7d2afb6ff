"""Single-trial GLM: one beta per trial and voxel, each voxel's HRF picked from a library.

For every candidate HRF the design (trial regressors + Legendre drift per run, see
``design``) is factorised once (QR) and applied to all voxels at once. Because trials never
reach across runs the session design is block diagonal, so this is done run by run; the
result is identical to fitting the stacked design. Each voxel keeps the HRF with the largest
R2, where R2 (%) = 100 * (1 - SS_residual / SS_after_drift): the variance left after
removing each run's drift that the trial regressors explain (as GLMsingle projects out
polynomials first). Betas are converted to % signal change by dividing by the voxel's mean
signal over all runs and multiplying by 100.

This is the first stage of the GLMsingle method (its "FITHRF" step); GLMdenoise noise
regressors and fractional ridge regression are to be added on top of these pieces.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import linalg
from tqdm import tqdm

from fmridecode.datasets.bids import Run, bids_root, load_bold, read_events, repetition_time
from fmridecode.glm import hrf as hrf_lib
from fmridecode.glm.design import drift_degree, drift_regressors, run_design
from fmridecode.io import DataError

#: Grids whose affines differ by more than this (mm) are refused as different.
AFFINE_TOLERANCE = 1e-4


@dataclass
class GLMResult:
    """Single-trial GLM output for one session (V = voxels given, in their order)."""

    betas: np.ndarray  #: (n_trials, V) float32, % signal change, chronological trial order
    hrf_index: np.ndarray  #: (V,) int64, index into ``hrfs`` of each voxel's chosen HRF
    r2: np.ndarray  #: (V,) float32, R2 (%) after drift removal (0 where nothing is left)
    mean: np.ndarray  #: (V,) float32, mean signal over all runs (the % scaling)
    trials: pd.DataFrame  #: columns trial, run (index into the runs given), onset, stim_id
    hrfs: list[hrf_lib.HRF] = field(default_factory=list)  #: candidate HRFs, in index order
    poly_degrees: list[int] = field(default_factory=list)  #: drift degree used per run


def _check_inputs(
    data: Sequence[np.ndarray], events: Sequence[pd.DataFrame], tr: float, names: list[str]
) -> int:
    """Validate shapes and values; return the number of voxels."""
    if len(data) == 0:
        raise DataError("no runs given to the GLM")
    if len(data) != len(events):
        raise DataError(f"{len(data)} data runs but {len(events)} events tables")
    if not (np.isfinite(tr) and tr > 0):
        raise DataError(f"TR must be > 0, got {tr}")
    n_vox = None
    for name, Y, ev in zip(names, data, events, strict=True):
        if Y.ndim != 2:
            raise DataError(f"{name}: data must be (volumes, voxels), got shape {Y.shape}")
        if n_vox is None:
            n_vox = Y.shape[1]
        elif Y.shape[1] != n_vox:
            raise DataError(f"{name}: {Y.shape[1]} voxels but the first run has {n_vox}")
        if not np.all(np.isfinite(Y)):
            raise DataError(
                f"{name}: data contain {int((~np.isfinite(Y)).sum())} non-finite values"
            )
        for col in ("onset", "stim_id"):
            if col not in ev.columns:
                raise DataError(f"{name}: events table lacks column '{col}'")
    if n_vox == 0:
        raise DataError(f"{names[0]}: no voxels to fit")
    return int(n_vox)


def _trials_table(events: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Chronological trial table (run, then onset; stable for equal onsets)."""
    parts = []
    for r, ev in enumerate(events):
        ev = ev.sort_values("onset", kind="stable")
        parts.append(
            pd.DataFrame(
                {
                    "run": r,
                    "onset": ev["onset"].to_numpy(dtype=float),
                    "stim_id": ev["stim_id"].astype(str).to_numpy(),
                }
            )
        )
    trials = pd.concat(parts, ignore_index=True)
    trials.insert(0, "trial", np.arange(len(trials)))
    return trials


def _warn_durations(events: Sequence[pd.DataFrame], stim_dur: float, names: list[str]) -> None:
    for name, ev in zip(names, events, strict=True):
        if "duration" in ev.columns and len(ev):
            off = np.abs(ev["duration"].to_numpy(dtype=float) - stim_dur)
            if off.max() > 1e-3:
                warnings.warn(
                    f"{name}: event durations up to {ev['duration'].max()} s differ from "
                    f"stim_dur={stim_dur} s; the GLM models every trial as {stim_dur} s",
                    stacklevel=3,
                )


def _trial_factors(
    X: np.ndarray, n_trials: int, drift_q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """QR (Q, R) of a run's trial regressors with its drift projected out.

    By Frisch-Waugh-Lovell, the trial betas of the full design are R^-1 Q^T Y for any data
    Y, and the residual is the drift-free data minus its projection on Q.
    """
    trials = X[:, :n_trials]
    trials = trials - drift_q @ (drift_q.T @ trials)
    return np.linalg.qr(trials)


def fit_single_trial(
    data: list[np.ndarray],
    events: list[pd.DataFrame],
    tr: float,
    stim_dur: float,
    *,
    library: bool = True,
    poly_degree: int | None = None,
    chunk_size: int = 50000,
    progress: bool = True,
    hrfs: Sequence[hrf_lib.HRF] | None = None,
    run_names: Sequence[str] | None = None,
) -> GLMResult:
    """Fit single-trial betas for one session.

    ``data``: one (T_r, V) array per run (the same V voxels in every run); ``events``: one
    table per run with ``onset`` (s from the run's first volume) and ``stim_id``.
    ``library``: choose each voxel's HRF from ``hrf.library()`` (else the canonical HRF);
    ``hrfs`` overrides the candidates. ``poly_degree``: drift degree for every run (None:
    round(run minutes / 2), at least 1). ``run_names`` label runs in error messages.
    """
    names = list(run_names) if run_names is not None else [f"run {r}" for r in range(len(data))]
    n_vox = _check_inputs(data, events, tr, names)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _warn_durations(events, stim_dur, names)
    candidates = (
        list(hrfs)
        if hrfs is not None
        else (hrf_lib.library() if library else [hrf_lib.canonical()])
    )
    trials = _trials_table(events)
    onsets = [trials.loc[trials["run"] == r, "onset"].to_numpy() for r in range(len(data))]
    n_per_run = [len(o) for o in onsets]
    if sum(n_per_run) == 0:
        raise DataError(f"{names[0]}...: no trials in any run, the single-trial design is empty")
    n_vols = [Y.shape[0] for Y in data]
    degrees = [drift_degree(T, tr) if poly_degree is None else int(poly_degree) for T in n_vols]
    starts = np.concatenate([[0], np.cumsum(n_per_run)])

    # Frisch-Waugh: per run, project the drift out of data and trial regressors; one QR of
    # the drift-free trial regressors per (HRF, run), shared by all voxels.
    drift_q = [
        np.linalg.qr(drift_regressors(T, d))[0] for T, d in zip(n_vols, degrees, strict=True)
    ]
    factors = [
        [
            _trial_factors(
                run_design(onsets[r], n_vols[r], tr, h, stim_dur, degrees[r], names[r]),
                n_per_run[r],
                drift_q[r],
            )
            for r in range(len(data))
        ]
        for h in candidates
    ]

    total = sum(n_vols)
    mean = np.zeros(n_vox)
    for Y in data:
        mean += Y.sum(axis=0, dtype=np.float64)
    mean /= total
    bad = np.flatnonzero(mean <= 0)
    if bad.size:
        raise DataError(
            f"{names[0]}...: {bad.size} voxels (first: column {int(bad[0])}) have a mean signal "
            "<= 0, so % signal change is undefined; mask them out"
        )

    n_trials = int(starts[-1])
    betas = np.zeros((n_trials, n_vox), dtype=np.float32)
    hrf_index = np.zeros(n_vox, dtype=np.int64)
    r2 = np.zeros(n_vox, dtype=np.float32)
    chunks = [slice(a, min(a + chunk_size, n_vox)) for a in range(0, n_vox, chunk_size)]
    bar = tqdm(
        total=len(chunks) * len(candidates), desc="GLM (voxel chunk x HRF)", disable=not progress
    )
    for sl in chunks:
        n = sl.stop - sl.start
        # drift-free data per run, and its sum of squares (the R2 denominator)
        Yd = []
        for Q, Y in zip(drift_q, data, strict=True):
            Y = np.asarray(Y[:, sl], dtype=np.float64)
            Yd.append(Y - Q @ (Q.T @ Y))
        ss_drift = sum(np.einsum("ij,ij->j", Y, Y) for Y in Yd)
        best_ss = np.full(n, np.inf)
        best_qty = np.zeros((n_trials, n))
        best_h = np.zeros(n, dtype=np.int64)
        qty = np.empty((n_trials, n))
        for h, run_factors in enumerate(factors):
            for r, ((Q, _), Y) in enumerate(zip(run_factors, Yd, strict=True)):
                np.matmul(Q.T, Y, out=qty[starts[r] : starts[r + 1]])
            # residual SS = SS after drift - SS explained by the (orthonormal) trial basis
            ss = np.maximum(ss_drift - np.einsum("ij,ij->j", qty, qty), 0.0)
            better = ss < best_ss
            best_ss[better] = ss[better]
            np.copyto(best_qty, qty, where=better[None, :])
            best_h[better] = h
            bar.update()
        best_b = np.empty_like(best_qty)
        for h, run_factors in enumerate(factors):
            cols = np.flatnonzero(best_h == h)
            if cols.size == 0:
                continue
            for r, (_, R) in enumerate(run_factors):
                rows = slice(starts[r], starts[r + 1])
                best_b[rows, cols] = linalg.solve_triangular(R, best_qty[rows][:, cols])
        m = mean[sl]
        betas[:, sl] = (best_b * (100.0 / m)).astype(np.float32)
        hrf_index[sl] = best_h
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(ss_drift > 0, best_ss / np.where(ss_drift > 0, ss_drift, 1.0), 1.0)
        r2[sl] = (100.0 * (1.0 - frac)).astype(np.float32)
    bar.close()
    return GLMResult(
        betas=betas,
        hrf_index=hrf_index,
        r2=r2,
        mean=mean.astype(np.float32),
        trials=trials,
        hrfs=candidates,
        poly_degrees=degrees,
    )


def _load_mask(mask_img: nib.Nifti1Image | str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Boolean 3D mask, its affine and a name for messages."""
    if isinstance(mask_img, str | Path):
        name = str(mask_img)
        try:
            mask_img = nib.load(mask_img)
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as e:
            raise DataError(f"{name}: cannot read the mask image ({e})") from e
    else:
        name = str(mask_img.get_filename() or "mask image")
    data = np.asanyarray(mask_img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{name}: mask must be 3D, got shape {data.shape}")
    mask = data > 0
    if not mask.any():
        raise DataError(f"{name}: mask is empty")
    return mask, np.asarray(mask_img.affine), name


def fit_session(
    runs: list[Run],
    mask_img: nib.Nifti1Image | str | Path,
    stim_dur: float,
    **kw,
) -> tuple[nib.Nifti1Image, pd.DataFrame, nib.Nifti1Image]:
    """Fit one subject-session's runs inside a brain mask; outputs as in CONTRACTS.md.

    Returns (betas 4D float32 (X, Y, Z, n_trials) in % signal change, 0 outside the mask;
    trials table ``trial, session, run, onset, stim_id`` with ``run`` the BIDS run number;
    voxels 4D float32 (X, Y, Z, 2): [..., 0] R2 %, [..., 1] HRF index). ``kw`` goes to
    ``fit_single_trial``. All runs must be on the mask's grid and share one TR.
    """
    if not runs:
        raise DataError("fit_session: no runs given")
    keys = {(r.subject, r.session) for r in runs}
    if len(keys) != 1:
        raise DataError(
            f"{runs[0].bold_path}: runs span several subject/sessions {sorted(keys, key=str)}"
        )
    mask, affine, mask_name = _load_mask(mask_img)

    data, events, trs = [], [], []
    for run in tqdm(runs, desc="load runs", disable=not kw.get("progress", True)):
        img = load_bold(run)
        if img.shape[:3] != mask.shape:
            raise DataError(
                f"{run.bold_path}: grid {img.shape[:3]} differs from the mask's {mask.shape} "
                f"({mask_name})"
            )
        if not np.allclose(img.affine, affine, atol=AFFINE_TOLERANCE):
            raise DataError(
                f"{run.bold_path}: affine differs from the mask's ({mask_name}) "
                "and/or the other runs'"
            )
        trs.append(repetition_time(bids_root(run), run))
        vol = np.asarray(img.dataobj, dtype=np.float32)
        data.append(np.ascontiguousarray(vol[mask].T))
        del vol
        events.append(read_events(run.events_path))
    if max(trs) - min(trs) > 1e-3:
        i = int(np.argmax(np.abs(np.array(trs) - trs[0])))
        raise DataError(
            f"{runs[i].bold_path}: TR {trs[i]} s differs from {runs[0].bold_path.name}'s {trs[0]} s"
        )

    res = fit_single_trial(
        data, events, trs[0], stim_dur, run_names=[str(r.bold_path) for r in runs], **kw
    )
    shape = mask.shape
    betas = np.zeros((*shape, res.betas.shape[0]), dtype=np.float32)
    betas[mask] = res.betas.T
    voxels = np.zeros((*shape, 2), dtype=np.float32)
    voxels[mask, 0] = res.r2
    voxels[mask, 1] = res.hrf_index.astype(np.float32)

    trials = res.trials.copy()
    trials["run"] = [runs[i].run for i in trials["run"]]
    trials.insert(1, "session", runs[0].session if runs[0].session is not None else "")
    trials = trials[["trial", "session", "run", "onset", "stim_id"]]
    return _image(betas, affine), trials, _image(voxels, affine)


def _image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img
