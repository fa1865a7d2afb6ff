"""The Natural Scenes Dataset (Allen et al. 2022) as released: experiment design, stimuli,
captions, single-trial betas and preprocessed time series, read from the release's own layout.

Files read (``root`` = the folder holding ``nsddata/``, ``nsddata_betas/`` ...):
- ``nsddata/experiments/nsd/nsd_expdesign.mat`` (scipy): ``masterordering`` (trial -> column of
  ``subjectim``, 1-based), ``subjectim`` (subject x 10,000 73k-ids, 1-based), ``sharedix`` (the
  shared1000 73k-ids), ``stimpattern`` (session x run x slot, 1 where a trial is shown);
- ``nsddata/experiments/nsd/nsd_stim_info_merged.csv``: ``nsdId`` (0-based) -> ``cocoId``;
- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``imgBrick`` (73000 x 425 x 425 x 3 uint8),
  read lazily, a chunk of the images actually shown at a time;
- ``nsddata_betas/ppdata/subjXX/<space>/<betas>/betas_sessionSS.nii.gz`` (X, Y, Z, 750) or
  ``.hdf5`` (dataset ``betas``, 750 x Z x Y x X): int16, percent signal change x 300;
- ``nsddata_timeseries/ppdata/subjXX/<space>/timeseries/timeseries_sessionSS_runRR.nii.gz`` with
  ``design/design_sessionSS_runRR.tsv`` (one row per volume: 0, or the 73k-id shown from then);
- ``nsddata/ppdata/subjXX/<space>/roi/*.nii.gz`` and ``brainmask.nii.gz``.

Stimulus ids are ``nsd`` + the 1-based 73k-id on five digits (``nsd02951``), the numbering of
NSD's documentation; ``nsd_id`` columns keep the 0-based index into ``imgBrick``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmridecode.io import DataError

#: the released betas are int16 percent signal change multiplied by this
BETA_SCALE = 300.0
#: trials per NSD scan session (12 runs of 62-63 trials)
TRIALS_PER_SESSION = 750
#: TR of the 1.8-mm preparation's time series (upsampled from 1.6 s), seconds
TIMESERIES_TR = {"func1pt8mm": 4.0 / 3.0, "func1mm": 1.0}


def stim_id(kid: int) -> str:
    """The stimulus id of a 1-based 73k-id."""
    return f"nsd{int(kid):05d}"


@dataclass(frozen=True)
class NSDLayout:
    """Paths of one NSD release on disk."""

    root: Path
    space: str = "func1pt8mm"
    betas: str = "betas_fithrf_GLMdenoise_RR"
    fmt: str = "nifti"

    @property
    def expdesign(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_expdesign.mat"

    @property
    def stim_info(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"

    @property
    def stimuli(self) -> Path:
        return self.root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"

    def ppdata(self, subject: int | str) -> Path:
        return self.root / f"nsddata/ppdata/subj{int(subject):02d}/{self.space}"

    def brainmask(self, subject: int | str) -> Path:
        return self.ppdata(subject) / "brainmask.nii.gz"

    def betas_file(self, subject: int | str, session: int | str) -> Path:
        ext = "hdf5" if self.fmt == "hdf5" else "nii.gz"
        folder = (
            self.root / f"nsddata_betas/ppdata/subj{int(subject):02d}/{self.space}/{self.betas}"
        )
        return folder / f"betas_session{int(session):02d}.{ext}"

    def timeseries_dir(self, subject: int | str) -> Path:
        return self.root / f"nsddata_timeseries/ppdata/subj{int(subject):02d}/{self.space}"

    def timeseries(self, subject: int | str, session: int | str, run: int | str) -> Path:
        name = f"timeseries_session{int(session):02d}_run{int(run):02d}.nii.gz"
        return self.timeseries_dir(subject) / "timeseries" / name

    def design(self, subject: int | str, session: int | str, run: int | str) -> Path:
        name = f"design_session{int(session):02d}_run{int(run):02d}.tsv"
        return self.timeseries_dir(subject) / "design" / name

    def sessions(self, subject: int | str, entry: str) -> list[int]:
        """Sessions of a subject present on disk: betas files (entry ``betas``) or design
        files of run 1 (entry ``timeseries``)."""
        if entry == "betas":
            folder, pattern = self.betas_file(subject, 1).parent, r"betas_session(\d+)\."
        else:
            folder, pattern = (
                self.timeseries_dir(subject) / "design",
                r"design_session(\d+)_run01\.",
            )
        if not folder.is_dir():
            raise DataError(f"{folder}: NSD folder not found (source.nsd.root: {self.root})")
        found = {int(m[1]) for p in folder.iterdir() if (m := re.match(pattern, p.name))}
        if not found:
            raise DataError(f"{folder}: no session files ({pattern}) found")
        return sorted(found)

    def runs(self, subject: int | str, session: int | str) -> list[int]:
        """Runs of one session that have a design file."""
        folder = self.timeseries_dir(subject) / "design"
        pattern = rf"design_session{int(session):02d}_run(\d+)\.tsv$"
        runs = sorted(int(m[1]) for p in folder.glob("*.tsv") if (m := re.match(pattern, p.name)))
        if not runs:
            raise DataError(f"{folder}: no design files of session {int(session)}")
        return runs


@dataclass(frozen=True)
class ExpDesign:
    """The NSD experiment: 0-based arrays."""

    masterordering: np.ndarray  # (n_trials,) column of subjectim shown at each trial
    subjectim: np.ndarray  # (8, 10000) 0-based 73k index of each subject's images
    sharedix: np.ndarray  # (1000,) 0-based 73k index of the shared images
    stimpattern: np.ndarray | None  # (sessions, runs, slots) 1 where a trial is shown


def read_expdesign(path: str | Path) -> ExpDesign:
    """Read ``nsd_expdesign.mat`` (1-based MATLAB indices turned 0-based)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: NSD experiment design not found") from e
    except Exception as e:  # scipy raises several types on corrupt files
        raise DataError(f"{path}: cannot read as a MATLAB file ({e})") from e
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise DataError(f"{path}: missing variables {missing}")
    order = np.asarray(mat["masterordering"]).ravel().astype(np.int64) - 1
    subjectim = np.asarray(mat["subjectim"]).astype(np.int64) - 1
    shared = np.asarray(mat["sharedix"]).ravel().astype(np.int64) - 1
    if order.min() < 0 or order.max() >= subjectim.shape[1]:
        raise DataError(f"{path}: masterordering outside 1..{subjectim.shape[1]}")
    pattern = np.asarray(mat["stimpattern"]) if "stimpattern" in mat else None
    return ExpDesign(order, subjectim, shared, pattern)


def session_trials(
    design: ExpDesign, subject: int, session: int, trials_per_session: int = TRIALS_PER_SESSION
) -> pd.DataFrame:
    """The trials of one subject-session in presentation order: ``trial, session, run,
    stim_id, nsd_id`` (``run`` from ``stimpattern`` when it has this many trials, else 0)."""
    if not 1 <= subject <= design.subjectim.shape[0]:
        raise DataError(f"NSD subject {subject} not in 1..{design.subjectim.shape[0]}")
    start = (session - 1) * trials_per_session
    if start + trials_per_session > len(design.masterordering):
        raise DataError(
            f"NSD session {session}: masterordering has {len(design.masterordering)} trials, "
            f"fewer than {session} sessions of {trials_per_session}"
        )
    cols = design.masterordering[start : start + trials_per_session]
    nsd_id = design.subjectim[subject - 1, cols]
    run = np.zeros(trials_per_session, dtype=np.int64)
    if design.stimpattern is not None and session <= design.stimpattern.shape[0]:
        shown = np.asarray(design.stimpattern[session - 1]) > 0  # (runs, slots)
        if shown.sum() == trials_per_session:
            run = np.repeat(np.arange(1, shown.shape[0] + 1), shown.sum(axis=1))
    return pd.DataFrame(
        {
            "trial": np.arange(trials_per_session),
            "session": f"{session:02d}",
            "run": run,
            "stim_id": [stim_id(k + 1) for k in nsd_id],
            "nsd_id": nsd_id,
        }
    )


def read_design_tsv(path: str | Path) -> np.ndarray:
    """One run's design file: per volume 0 or the 1-based 73k-id shown from that volume."""
    path = Path(path)
    try:
        values = pd.read_csv(path, header=None, sep=r"\s+").to_numpy()
    except FileNotFoundError as e:
        raise DataError(f"{path}: NSD design file not found") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise DataError(f"{path}: cannot read as a design file ({e})") from e
    if values.ndim != 2 or values.shape[1] != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"{path}: expected one integer column, got shape {values.shape}")
    return values[:, 0].astype(np.int64)


def design_events(path: str | Path, tr: float, stim_dur: float = 3.0) -> pd.DataFrame:
    """BIDS events (``onset, duration, stim_id``) of one run from its design file."""
    design = read_design_tsv(path)
    rows = np.flatnonzero(design)
    return pd.DataFrame(
        {
            "onset": rows * tr,
            "duration": stim_dur,
            "stim_id": [stim_id(k) for k in design[rows]],
        }
    )


def read_stim_info(path: str | Path) -> pd.DataFrame:
    """``nsd_stim_info_merged.csv`` indexed by ``nsdId`` (0-based): ``cocoId``, ``shared1000``."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: NSD stimulus table not found") from e
    need = {"nsdId", "cocoId", "shared1000"}
    if not need <= set(df.columns):
        raise DataError(f"{path}: needs columns {sorted(need)}, has {list(df.columns)[:12]}")
    return df.set_index("nsdId", drop=False)
