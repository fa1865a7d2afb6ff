"""Fitting entry points of the glm stage: arrays (``fit_runs``) and BIDS runs (``fit_session``).

``fit_runs`` checks the inputs (shapes, finite values, event columns), builds the
chronological trial table (condition = index of the sorted stimulus ids, so repeats of an
image are one condition) and runs the GLMsingle method of ``single``. ``fit_session`` reads a
subject-session's BOLD runs inside a brain mask through the BIDS reader first.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from fmridecode.datasets.bids import (
    Run,
    bids_root,
    load_bold,
    read_bold_data,
    read_events,
    repetition_time,
)
from fmridecode.datasets.nsd import design_events
from fmridecode.glm.single import TYPES, GLMOptions, GLMSingleResult, fit_glm
from fmridecode.io import DataError

#: Grids whose affines differ by more than this (mm) are refused as different.
AFFINE_TOLERANCE = 1e-4


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
    conditions = np.unique(trials["stim_id"].to_numpy())
    trials["condition"] = np.searchsorted(conditions, trials["stim_id"].to_numpy())
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


def fit_runs(
    data: list[np.ndarray],
    events: list[pd.DataFrame],
    tr: float,
    stim_dur: float,
    options: GLMOptions | None = None,
    *,
    progress: bool = True,
    run_names: Sequence[str] | None = None,
) -> GLMSingleResult:
    """GLMsingle types A-D for runs fitted together.

    ``data``: one (T_r, V) array per run (the same V voxels in every run); ``events``: one
    table per run with ``onset`` (s from the run's first volume) and ``stim_id``; trials with
    the same ``stim_id`` are repeats of one condition (what cross-validation needs).
    ``run_names`` label runs in error messages.
    """
    opts = options or GLMOptions()
    names = list(run_names) if run_names is not None else [f"run {r}" for r in range(len(data))]
    _check_inputs(data, events, tr, names)
    if opts.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {opts.chunk_size}")
    unknown = set(opts.types) - set(TYPES)
    if unknown or not opts.types:
        raise ValueError(f"GLM types must be a non-empty subset of {TYPES}, got {opts.types}")
    _warn_durations(events, stim_dur, names)
    trials = _trials_table(events)
    if len(trials) == 0:
        raise DataError(f"{names[0]}...: no trials in any run, the single-trial design is empty")
    return fit_glm(
        data, trials, [Y.shape[0] for Y in data], tr, stim_dur, opts, names, progress=progress
    )


def epi_mask(run: Run) -> nib.Nifti1Image:
    """A brain mask computed from a run's mean EPI (nilearn's ``compute_epi_mask``: the
    intensity threshold between brain and background), for datasets that ship none."""
    from nilearn.masking import compute_epi_mask

    mask = compute_epi_mask(load_bold(run))
    data = np.asarray(mask.dataobj).astype(np.uint8)
    if not data.any():
        raise DataError(
            f"{run.bold_path}: no brain found in its mean EPI (compute_epi_mask gave an empty "
            "mask); set source.bids.brain_mask to a mask file"
        )
    return nib.Nifti1Image(data, mask.affine)


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


@dataclass
class SessionFit:
    """A fit of BIDS runs inside a brain mask: the result plus where its voxels live."""

    result: GLMSingleResult
    mask: np.ndarray  #: (X, Y, Z) bool; the result's voxels are ``mask``'s True voxels, C order
    affine: np.ndarray
    trials: pd.DataFrame  #: trial, session, run (BIDS run label), onset, stim_id


@dataclass
class SessionData:
    """BOLD runs inside a brain mask, ready to fit."""

    data: list[np.ndarray]  #: one (T_r, V) float32 array per run, V = mask voxels in C order
    events: list[pd.DataFrame]
    tr: float
    mask: np.ndarray
    affine: np.ndarray
    names: list[str]  #: the runs' BOLD paths, for messages


def run_events(run: Run, tr: float) -> pd.DataFrame:
    """A run's stimulus events: its BIDS events file, or NSD's per-volume design file."""
    if run.events.design:
        return design_events(run.events_path, tr)
    return read_events(run.events_path, run.events)


def check_scanned_stimuli(runs: list, known: Iterable[str]) -> None:
    """Every stimulus the runs' events name is in the stimulus set (``known`` ids); else a
    DataError naming the events file, the first such event and how many there are - a typo,
    a stale events file or the wrong stimulus folder, caught before the GLM is fitted."""
    known = set(map(str, known))
    for run in runs:
        # the stimulus ids do not depend on the TR (NSD's design files: volumes, not seconds)
        stim = run_events(run, run.tr or 1.0)["stim_id"].astype(str).to_numpy()
        bad = np.flatnonzero(~np.isin(stim, list(known)))
        if len(bad):
            raise DataError(
                f"{run.events_path}: event {bad[0] + 1} names stimulus {stim[bad[0]]!r}, which "
                f"is not in the stimulus set ({len(bad)} of {len(stim)} events)"
            )


def load_session(
    runs: list[Run],
    mask_img: nib.Nifti1Image | str | Path,
    *,
    progress: bool = True,
    allow_sessions: bool = False,
) -> SessionData:
    """Read one subject-session's runs (``allow_sessions``: several) inside a brain mask.

    All runs must be on the mask's grid and share one TR.
    """
    if not runs:
        raise DataError("fit_session: no runs given")
    keys = {(r.subject, r.session) for r in runs}
    if len(keys) != 1 and not allow_sessions:
        raise DataError(
            f"{runs[0].bold_path}: runs span several subject/sessions {sorted(keys, key=str)}"
        )
    mask, affine, mask_name = _load_mask(mask_img)
    data, events, trs = [], [], []
    for run in tqdm(runs, desc="load runs", disable=not progress):
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
        trs.append(run.tr if run.tr is not None else repetition_time(bids_root(run), run))
        vol = read_bold_data(img, run.bold_path)
        masked = vol[mask]  # (voxels, volumes)
        del vol
        bad = ~np.isfinite(masked).all(axis=1)
        if bad.any():
            ijk = tuple(int(c[bad][0]) for c in np.nonzero(mask))
            raise DataError(
                f"{run.bold_path}: {int(bad.sum())} voxel(s) inside the brain mask "
                f"({mask_name}) with NaN or infinite values, e.g. voxel {ijk}; leave them out "
                "of the mask"
            )
        data.append(np.ascontiguousarray(masked.T))
        events.append(run_events(run, trs[-1]))
    if max(trs) - min(trs) > 1e-3:
        i = int(np.argmax(np.abs(np.array(trs) - trs[0])))
        raise DataError(
            f"{runs[i].bold_path}: TR {trs[i]} s differs from {runs[0].bold_path.name}'s {trs[0]} s"
        )
    return SessionData(data, events, trs[0], mask, affine, [str(r.bold_path) for r in runs])


def session_trials(res_trials: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """The trial table with BIDS session and run labels: trial, session, run, onset, stim_id."""
    trials = res_trials.copy()
    trials.insert(1, "session", [runs[i].session or "" for i in trials["run"]])
    trials["run"] = [runs[i].run for i in trials["run"]]
    return trials[["trial", "session", "run", "onset", "stim_id"]]


def fit_session(
    runs: list[Run],
    mask_img: nib.Nifti1Image | str | Path,
    stim_dur: float,
    options: GLMOptions | None = None,
    *,
    progress: bool = True,
    allow_sessions: bool = False,
) -> SessionFit:
    """Fit one subject-session's runs inside a brain mask (``allow_sessions``: several)."""
    ses = load_session(runs, mask_img, progress=progress, allow_sessions=allow_sessions)
    res = fit_runs(
        ses.data, ses.events, ses.tr, stim_dur, options, progress=progress, run_names=ses.names
    )
    return SessionFit(res, ses.mask, ses.affine, session_trials(res.trials, runs))
