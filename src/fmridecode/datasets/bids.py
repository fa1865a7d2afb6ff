"""The project's one reader of raw BOLD datasets in BIDS layout (plain paths + nibabel).

Layout read: ``<bids>/sub-XX[/ses-YY]/func/sub-XX[_ses-YY]_task-T_run-ZZ_bold.nii[.gz]`` with
an ``..._events.tsv`` beside each run, and JSON sidecars resolved by BIDS inheritance
(top-level ``task-T_bold.json``, then subject, session and run level; lower levels win).
Labels are returned without their ``sub-``/``ses-`` prefixes; functions that take a
subject or session accept either form.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from fmridecode.io import DataError

_BOLD_RE = re.compile(
    r"^sub-(?P<subject>[a-zA-Z0-9]+)(?:_ses-(?P<session>[a-zA-Z0-9]+))?"
    r"_task-(?P<task>[a-zA-Z0-9]+)_run-(?P<run>[0-9]+)_bold\.nii(?:\.gz)?$"
)
#: TRs from the sidecar and the NIfTI header may differ by at most this (s).
TR_TOLERANCE_S = 1e-3
# What nibabel raises on unreadable files (corrupt gzip -> OSError/EOFError, bad header -> ...)
_READ_ERRORS = (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError)


@dataclass(frozen=True)
class EventSpec:
    """How a dataset's events files name their stimuli: the column holding the stimulus id,
    and which rows are stimulus trials (``type_column`` value in ``types``; no filter when
    ``type_column`` is None). ``design`` marks NSD's per-volume design files instead of BIDS
    events (read with the run's TR)."""

    stim_column: str = "stim_id"
    type_column: str | None = None
    types: tuple[str, ...] = ()
    design: bool = False


@dataclass(frozen=True)
class Run:
    """One functional run: its BIDS entities and the paths of its BOLD and events files
    (``tr``: a known TR in seconds, else read from the sidecars / header)."""

    subject: str
    session: str | None
    task: str
    run: int
    bold_path: Path
    events_path: Path
    events: EventSpec = EventSpec()
    tr: float | None = None


def _strip(label: str, prefix: str) -> str:
    label = str(label)
    return label[len(prefix) :] if label.startswith(prefix) else label


def _label_key(label: str | None) -> tuple[int, int, str]:
    """Sort labels numerically when they are numbers ('2' before '10'), else as text."""
    if label is None:
        return (0, 0, "")
    return (1, int(label), label) if label.isdigit() else (2, 0, label)


def list_subjects(bids_dir: str | Path) -> list[str]:
    """Subject labels (without ``sub-``) that have a folder in ``bids_dir``, sorted."""
    root = Path(bids_dir)
    if not root.is_dir():
        raise DataError(f"{root}: BIDS folder not found")
    labels = [p.name[4:] for p in root.glob("sub-*") if p.is_dir()]
    return sorted(labels, key=_label_key)


def list_sessions(bids_dir: str | Path, subject: str) -> list[str]:
    """Session labels (without ``ses-``) of one subject, sorted; [] if it has no sessions."""
    sub_dir = Path(bids_dir) / f"sub-{_strip(subject, 'sub-')}"
    if not sub_dir.is_dir():
        raise DataError(f"{sub_dir}: subject folder not found")
    labels = [p.name[4:] for p in sub_dir.glob("ses-*") if p.is_dir()]
    return sorted(labels, key=_label_key)


def find_runs(
    bids_dir: str | Path,
    subject: str,
    session: str | None = None,
    task: str | None = None,
) -> list[Run]:
    """All BOLD runs of a subject (optionally one session / task), sorted by session, run.

    Raises DataError on a BOLD file whose name does not follow the layout, on a run without
    its events file, and when nothing matches.
    """
    root = Path(bids_dir)
    subject = _strip(subject, "sub-")
    sub_dir = root / f"sub-{subject}"
    if not sub_dir.is_dir():
        raise DataError(f"{sub_dir}: subject folder not found (subjects: {list_subjects(root)})")
    if session is not None:
        session = _strip(session, "ses-")
        ses_dir = sub_dir / f"ses-{session}"
        if not ses_dir.is_dir():
            raise DataError(f"{ses_dir}: session folder not found")
        func_dirs = [(session, ses_dir / "func")]
    else:
        sessions = list_sessions(root, subject)
        if sessions:
            func_dirs = [(s, sub_dir / f"ses-{s}" / "func") for s in sessions]
        else:
            func_dirs = [(None, sub_dir / "func")]

    runs: list[Run] = []
    for ses, func in func_dirs:
        for bold in sorted(func.glob("*_bold.nii*")):
            m = _BOLD_RE.match(bold.name)
            if m is None:
                raise DataError(
                    f"{bold}: BOLD file name does not follow "
                    "sub-XX[_ses-YY]_task-T_run-ZZ_bold.nii[.gz]"
                )
            if m["subject"] != subject or m["session"] != ses:
                raise DataError(f"{bold}: subject/session in the file name do not match its folder")
            if task is not None and m["task"] != task:
                continue
            events = bold.with_name(re.sub(r"_bold\.nii(\.gz)?$", "_events.tsv", bold.name))
            if not events.is_file():
                raise DataError(f"{bold}: events file {events.name} not found beside it")
            runs.append(Run(subject, ses, m["task"], int(m["run"]), bold, events))
        _no_orphan_events(sorted(func.glob("*_events.tsv")), {r.events_path for r in runs}, task)
    if not runs:
        raise DataError(f"{sub_dir}: no BOLD runs found (session={session}, task={task})")
    runs.sort(key=lambda r: (_label_key(r.session), r.run, r.task))
    for a, b in zip(runs, runs[1:], strict=False):
        if (a.session, a.task, a.run) == (b.session, b.task, b.run):
            raise DataError(f"{b.bold_path}: duplicate run (also {a.bold_path.name})")
    return runs


def read_events(path: str | Path, spec: EventSpec | None = None) -> pd.DataFrame:
    """Read a BIDS events.tsv: columns ``onset``, ``duration``, ``stim_id`` (+ any others).

    With ``spec``: only the stimulus rows (``spec.type_column`` in ``spec.types``) are kept
    and ``spec.stim_column`` becomes ``stim_id``. Without, ``stim_id`` falls back to
    ``trial_type`` (renamed) when absent. Onsets must be finite, non-negative and sorted;
    durations finite and non-negative; stimulus ids present.
    """
    path = Path(path)
    spec = spec or EventSpec()
    text_cols = {c: str for c in ("stim_id", "trial_type", spec.stim_column, spec.type_column) if c}
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype=text_cols)
    except FileNotFoundError as e:
        raise DataError(f"{path}: events file not found") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as a tab-separated table ({e})") from e
    for col in ("onset", "duration"):
        if col not in df.columns:
            raise DataError(f"{path}: missing column '{col}' (columns: {list(df.columns)})")
    if spec.type_column is not None:
        if spec.type_column not in df.columns:
            raise DataError(
                f"{path}: missing column '{spec.type_column}' naming the trial types "
                f"(columns: {list(df.columns)})"
            )
        types = df[spec.type_column].astype(str).str.replace(r"\.0$", "", regex=True)
        df = df[types.isin(spec.types).to_numpy()].reset_index(drop=True)
    if spec.stim_column != "stim_id":
        if spec.stim_column not in df.columns:
            raise DataError(
                f"{path}: missing stimulus column '{spec.stim_column}' "
                f"(columns: {list(df.columns)})"
            )
        df = df.drop(columns=[c for c in ("stim_id",) if c in df.columns])
        df = df.rename(columns={spec.stim_column: "stim_id"})
    if "stim_id" not in df.columns:
        if "trial_type" not in df.columns:
            raise DataError(
                f"{path}: missing column 'stim_id' (or 'trial_type') (columns: {list(df.columns)})"
            )
        df = df.rename(columns={"trial_type": "stim_id"})
    for col in ("onset", "duration"):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{path}: column '{col}' must be finite and >= 0; row {i} has {df[col].iloc[i]!r}"
            )
        df[col] = values
    missing = np.flatnonzero(df["stim_id"].isna().to_numpy())
    if missing.size:
        raise DataError(f"{path}: row {int(missing[0])} has no stim_id")
    df["stim_id"] = df["stim_id"].astype(str)
    unsorted = np.flatnonzero(np.diff(df["onset"].to_numpy()) < 0)
    if unsorted.size:
        i = int(unsorted[0]) + 1
        raise DataError(f"{path}: onsets are not sorted (row {i}: {df['onset'].iloc[i]} s)")
    first = ["onset", "duration", "stim_id"]
    return df[first + [c for c in df.columns if c not in first]].reset_index(drop=True)


def bids_root(run: Run) -> Path:
    """The dataset folder a run belongs to (parent of ``sub-XX``)."""
    func = run.bold_path.parent
    return func.parents[2] if run.session is not None else func.parents[1]


def _entities(stem: str) -> dict[str, str] | None:
    """Entities of a sidecar name without its ``_bold.json``; None if it is not key-value."""
    if stem == "":
        return {}
    out = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if not sep or not key or not value:
            return None
        out[key] = value
    return out


def sidecars(bids_dir: str | Path, run: Run) -> list[Path]:
    """The ``*bold.json`` sidecars that apply to ``run``, in inheritance order (top first)."""
    root = Path(bids_dir)
    mine = {"sub": run.subject, "task": run.task, "run": str(run.run)}
    if run.session is not None:
        mine["ses"] = run.session
    levels = [root, root / f"sub-{run.subject}"]
    if run.session is not None:
        levels.append(levels[-1] / f"ses-{run.session}")
    levels.append(run.bold_path.parent)
    found: list[Path] = []
    for level in levels:
        hits = []
        for p in level.glob("*bold.json"):
            stem = p.name[: -len("bold.json")].rstrip("_")
            ent = _entities(stem)
            if ent is None:
                continue
            ent = {k: (str(int(v)) if k == "run" and v.isdigit() else v) for k, v in ent.items()}
            if all(mine.get(k) == v for k, v in ent.items()):
                hits.append((len(ent), p.name, p))
        found += [p for _, _, p in sorted(hits)]
    return found


def _header_tr(path: Path) -> float | None:
    """TR from the NIfTI header (pixdim[4], converted to seconds), None if unset."""
    try:
        header = nib.load(path).header
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read NIfTI header ({e})") from e
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit = header.get_xyzt_units()[1]
    factor = {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
    return float(zooms[3]) * factor


def repetition_time(bids_dir: str | Path, run: Run) -> float:
    """The run's TR in seconds from its JSON sidecars (BIDS inheritance).

    Falls back to the NIfTI header's pixdim[4] with a warning when no sidecar gives
    ``RepetitionTime``; raises DataError when both exist and differ by more than 1 ms.
    """
    tr_json, source = None, None
    for p in sidecars(bids_dir, run):
        try:
            meta = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: invalid JSON ({e})") from e
        if isinstance(meta, dict) and "RepetitionTime" in meta:
            tr_json, source = meta["RepetitionTime"], p
    if tr_json is not None:
        if isinstance(tr_json, bool) or not isinstance(tr_json, int | float):
            raise DataError(f"{source}: RepetitionTime must be a number, got {tr_json!r}")
        if not (math.isfinite(tr_json) and tr_json > 0):
            raise DataError(f"{source}: RepetitionTime must be > 0, got {tr_json}")
    tr_header = _header_tr(run.bold_path)
    if tr_json is None:
        if tr_header is None:
            raise DataError(f"{run.bold_path}: no RepetitionTime in sidecars nor in the header")
        warnings.warn(
            f"{run.bold_path}: no RepetitionTime in any JSON sidecar; using the NIfTI header "
            f"pixdim[4] = {tr_header:.6g} s",
            stacklevel=2,
        )
        return tr_header
    if tr_header is not None and abs(tr_header - tr_json) > TR_TOLERANCE_S:
        raise DataError(
            f"{run.bold_path}: header TR {tr_header:.6g} s disagrees with RepetitionTime "
            f"{tr_json:.6g} s from {source}"
        )
    return float(tr_json)


def load_bold(run: Run) -> nib.Nifti1Image:
    """Load a run's BOLD image (lazily), checking that it is a 4D NIfTI with volumes."""
    path = run.bold_path
    try:
        img = nib.load(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: BOLD file not found") from e
    except _READ_ERRORS as e:
        raise DataError(f"{path}: not a readable NIfTI image ({e})") from e
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: expected a NIfTI image, got {type(img).__name__}")
    if img.ndim != 4 or img.shape[3] < 1:
        raise DataError(f"{path}: expected a 4D BOLD image, got shape {img.shape}")
    return img


def read_bold_data(img: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The voxel data of a BOLD image as float32; a truncated or corrupt file is a DataError
    naming it (nibabel reads lazily, so this is where a damaged file shows)."""
    try:
        return np.asarray(img.dataobj, dtype=np.float32)
    except (*_READ_ERRORS, zlib.error) as e:
        raise DataError(f"{path}: cannot read the image data, truncated or corrupt ({e})") from e


#: where the synthetic dataset (and any plain BIDS dataset) keeps its runs
BOLD_TEMPLATE = (
    "sub-{subject}/ses-{session}/func/sub-{subject}_ses-{session}_task-{task}_run-{run}_bold.nii.gz"
)
EVENTS_TEMPLATE = (
    "sub-{subject}/ses-{session}/func/sub-{subject}_ses-{session}_task-{task}_run-{run}_events.tsv"
)


def fill(template: str, **entities: str) -> str:
    """``template`` with the given ``{entity}`` placeholders filled (others left as they are)."""
    out = template
    for key, value in entities.items():
        out = out.replace("{" + key + "}", str(value))
    return out


def _no_orphan_events(events: list[Path], paired: set[Path], task: str | None = None) -> None:
    """A run whose events file is there but whose BOLD file is not (a failed download, a
    renamed file) is an error, not a run silently left out of the session."""
    for ev in events:
        if ev in paired or (task is not None and f"_task-{task}_" not in ev.name):
            continue
        raise DataError(f"{ev}: events of a run whose BOLD file is missing")


def find_runs_templated(
    root: str | Path,
    subject: str,
    session: str,
    task: str,
    *,
    bold: str = BOLD_TEMPLATE,
    events: str = EVENTS_TEMPLATE,
    events_root: str | Path | None = None,
    spec: EventSpec | None = None,
) -> list[Run]:
    """The runs of one subject-session whose BOLD files match ``bold`` under ``root`` and whose
    events files are ``events`` under ``events_root`` (default ``root``). Templates use
    ``{subject}``, ``{session}``, ``{task}`` and ``{run}`` (labels without their prefixes), so
    that preprocessed BOLD (fMRIPrep derivatives, any naming) pairs with the raw events."""
    root = Path(root)
    events_root = Path(events_root) if events_root is not None else root
    subject, session = _strip(subject, "sub-"), _strip(session, "ses-")
    pattern = fill(bold, subject=subject, session=session, task=task)
    if "{run}" not in pattern:
        raise DataError(f"BOLD template {bold!r} has no {{run}} placeholder")
    regex = re.compile(
        "^" + re.escape(pattern).replace(re.escape("{run}"), "(?P<run>[0-9]+)") + "$"
    )
    found = []
    for path in sorted(root.glob(pattern.replace("{run}", "*"))):
        m = regex.match(path.relative_to(root).as_posix())
        if m is None:
            continue
        ev = events_root / fill(events, subject=subject, session=session, task=task, run=m["run"])
        if not ev.is_file():
            raise DataError(f"{path}: its events file {ev} not found")
        found.append(Run(subject, session, task, int(m["run"]), path, ev, spec or EventSpec()))
    if not found:
        raise DataError(f"{root / pattern}: no BOLD runs match (sub-{subject}, ses-{session})")
    ev_pattern = fill(events, subject=subject, session=session, task=task)
    if "{run}" in ev_pattern:
        ev_regex = re.compile(
            "^" + re.escape(ev_pattern).replace(re.escape("{run}"), "[0-9]+") + "$"
        )
        candidates = sorted(events_root.glob(ev_pattern.replace("{run}", "*")))
        ours = [p for p in candidates if ev_regex.match(p.relative_to(events_root).as_posix())]
        _no_orphan_events(ours, {r.events_path for r in found})
    return sorted(found, key=lambda r: r.run)
