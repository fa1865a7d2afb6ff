"""ROI masks (the synthetic dataset's anat files, or ``roi.definitions`` for real datasets)
and in-memory helpers on trial matrices (extract, z-score per session, average repeats) for
the analyses; the workflow's voxel matrices are built in bounded memory by ``voxel_matrix``.
Voxel (column) order is the C order of the volume inside the mask, as nilearn's masking
gives it, the same order as the simulator's ground truth over the brain mask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import masking

from fmridecode.io import DataError, read_parquet

#: streams dseg label of each visual stream (CONTRACTS.md: 0 none, 1 early, 2 mid, 3 high).
STREAMS = {"early": 1, "mid": 2, "high": 3}
#: splits a stimulus shown in the scanner may belong to.
SCANNED_SPLITS = ("train", "test")

ImgLike = str | os.PathLike | nib.Nifti1Image


def _sub(subject: str) -> str:
    """'01' or 'sub-01' -> 'sub-01'."""
    subject = str(subject)
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def _anat(bids_dir: str | os.PathLike, subject: str, suffix: str) -> Path:
    sub = _sub(subject)
    return Path(bids_dir) / sub / "anat" / f"{sub}_{suffix}"


def _load(img: ImgLike, what: str) -> nib.Nifti1Image:
    """Load a NIfTI image (or pass an image through), naming the file on failure."""
    if isinstance(img, nib.Nifti1Image):
        return img
    try:
        return nib.load(img)
    except FileNotFoundError as e:
        raise DataError(f"{img}: {what} file not found") from e
    except Exception as e:  # nibabel raises several types for corrupt files
        raise DataError(f"{img}: cannot read {what} as NIfTI ({e})") from e


def _name(img: nib.Nifti1Image, fallback: str) -> str:
    return img.get_filename() or fallback


def _dseg_labels(tsv: Path) -> dict[str, int]:
    """name -> label index of a BIDS dseg .tsv (columns ``index, name``)."""
    if not tsv.exists():
        raise DataError(f"{tsv}: label table not found")
    df = pd.read_csv(tsv, sep="\t")
    if not {"index", "name"} <= set(df.columns):
        raise DataError(f"{tsv}: needs columns 'index' and 'name', has {list(df.columns)}")
    if df["name"].duplicated().any():
        raise DataError(f"{tsv}: duplicated names {sorted(df['name'][df['name'].duplicated()])}")
    return {str(n): int(i) for n, i in zip(df["name"], df["index"], strict=True)}


def roi_names(bids_dir: str | os.PathLike, subject: str) -> list[str]:
    """Every ROI name ``roi_mask`` knows for this subject (floc names read from its .tsv)."""
    names = ["nsdgeneral", *STREAMS]
    floc_tsv = _anat(bids_dir, subject, "desc-floc_dseg.tsv")
    if floc_tsv.exists():
        names += [f"floc-{n}" for n, i in _dseg_labels(floc_tsv).items() if i != 0]
    return names


def roi_mask(bids_dir: str | os.PathLike, subject: str, roi: str) -> nib.Nifti1Image:
    """Binary (uint8 0/1) mask of ``roi`` on the subject's functional grid.

    ``nsdgeneral``: the visual mask; ``early``/``mid``/``high``: streams dseg labels 1/2/3;
    ``floc-<name>``: the floc dseg label whose name is ``<name>`` in its .tsv. The result is
    intersected with the brain mask when that file exists (betas are 0 outside it).
    """
    if roi == "nsdgeneral":
        src = _anat(bids_dir, subject, "desc-nsdgeneral_mask.nii.gz")
        img = _load(src, "nsdgeneral mask")
        sel = np.asarray(img.dataobj) > 0
    elif roi in STREAMS:
        src = _anat(bids_dir, subject, "desc-streams_dseg.nii.gz")
        img = _load(src, "streams dseg")
        sel = np.asarray(img.dataobj) == STREAMS[roi]
    elif roi.startswith("floc-") and roi in roi_names(bids_dir, subject):
        labels = _dseg_labels(_anat(bids_dir, subject, "desc-floc_dseg.tsv"))
        src = _anat(bids_dir, subject, "desc-floc_dseg.nii.gz")
        img = _load(src, "floc dseg")
        sel = np.asarray(img.dataobj) == labels[roi[5:]]
    else:
        raise DataError(
            f"{Path(bids_dir) / _sub(subject) / 'anat'}: unknown ROI {roi!r}; known ROIs are "
            f"{roi_names(bids_dir, subject)}"
        )
    if sel.ndim != 3:
        raise DataError(f"{src}: expected a 3D image, got shape {sel.shape}")
    brain = _anat(bids_dir, subject, "desc-brain_mask.nii.gz")
    if brain.exists():
        bimg = _load(brain, "brain mask")
        _check_grid(bimg, img, str(brain), str(src))
        sel &= np.asarray(bimg.dataobj) > 0
    if not sel.any():
        raise DataError(f"{src}: ROI {roi!r} of {_sub(subject)} has no voxels")
    return nib.Nifti1Image(sel.astype(np.uint8), img.affine)


def _check_grid(a: nib.Nifti1Image, b: nib.Nifti1Image, name_a: str, name_b: str) -> None:
    """Raise DataError unless ``a`` and ``b`` share the 3D voxel grid (shape and affine)."""
    if a.shape[:3] != b.shape[:3] or not np.allclose(a.affine, b.affine, atol=1e-5):
        raise DataError(
            f"{name_a} and {name_b}: voxel grids differ "
            f"(shape {a.shape[:3]} vs {b.shape[:3]}, affines\n{a.affine}\nvs\n{b.affine})"
        )


def extract(betas_img: ImgLike, mask_img: ImgLike) -> np.ndarray:
    """Betas inside the mask as float32 (n_trials, n_voxels), voxels in C order of the volume.

    The grids must match exactly (no resampling); non-finite betas inside the mask are an error.
    """
    betas = _load(betas_img, "betas")
    mask = _load(mask_img, "mask")
    b_name, m_name = _name(betas, "betas image"), _name(mask, "mask image")
    if betas.ndim != 4:
        raise DataError(f"{b_name}: betas must be 4D (X, Y, Z, n_trials), got {betas.shape}")
    _check_grid(betas, mask, b_name, m_name)
    mask_bin = nib.Nifti1Image((np.asarray(mask.dataobj) > 0).astype(np.uint8), mask.affine)
    X = masking.apply_mask(betas, mask_bin, dtype="f", ensure_finite=False)
    X = np.asarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        n_bad = int((~np.isfinite(X)).sum())
        raise DataError(f"{b_name}: {n_bad} non-finite betas inside the mask {m_name}")
    return X


def zscore_by_session(X: np.ndarray, sessions: Sequence | np.ndarray) -> np.ndarray:
    """Z-score every column of ``X`` within each session's rows over all of them (ddof=0), as
    float32 (``voxel_matrix.session_zscore`` per session). A voxel with zero variance within a
    session becomes 0 for that session, never NaN."""
    from fmridecode.voxel_matrix import session_zscore

    X = np.asarray(X)
    sessions = np.asarray(sessions)
    if X.ndim != 2 or sessions.shape != (X.shape[0],):
        raise DataError(f"zscore_by_session: X {X.shape} and sessions {sessions.shape} disagree")
    out = np.empty(X.shape, dtype=np.float32)
    for s in pd.unique(sessions):
        rows = sessions == s
        out[rows] = session_zscore(X[rows], np.ones(int(rows.sum()), dtype=bool))
    return out


def average_repeats(
    X: np.ndarray, trials: pd.DataFrame, split_of: Mapping[str, str]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Average the rows of each stimulus in memory (row i of ``X`` is the trial in row i of
    ``trials``), with the row order of ``voxel_matrix.row_layout``. Returns float32
    (n_stimuli, n_voxels) and an index ``stim_id, split, n_repeats``, sorted by (split,
    stim_id). Every stimulus needs a split in ``split_of`` that is ``train`` or ``test``."""
    from fmridecode.voxel_matrix import row_layout

    X = np.asarray(X)
    if "stim_id" not in trials.columns:
        raise DataError(f"average_repeats: trials table lacks 'stim_id' ({list(trials.columns)})")
    if len(trials) != X.shape[0]:
        raise DataError(f"average_repeats: {len(trials)} trials but X has {X.shape[0]} rows")
    stim = trials["stim_id"].astype(str)
    missing = sorted(set(stim) - set(split_of))
    if missing:
        raise DataError(
            f"average_repeats: {len(missing)} stimuli without a split, e.g. {missing[:5]}"
        )
    split = stim.map(split_of)
    bad = sorted(set(split) - set(SCANNED_SPLITS))
    if bad:
        raise DataError(
            f"average_repeats: scanned stimuli with split {bad}, expected {SCANNED_SPLITS}"
        )
    table = pd.DataFrame({"session": "", "stim_id": stim.to_numpy(), "split": split.to_numpy()})
    index, (rows,) = row_layout([table])
    sums = np.zeros((len(index), X.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, X.astype(np.float64))
    X_avg = (sums / index["n_repeats"].to_numpy()[:, None]).astype(np.float32)
    return X_avg, index[["stim_id", "split", "n_repeats"]]


def _trials_table(
    t: pd.DataFrame | str | os.PathLike, n_vols: int, betas_name: str
) -> pd.DataFrame:
    """A session's trials table in betas-volume order (by its ``trial`` column when present)."""
    name = str(t) if not isinstance(t, pd.DataFrame) else "trials table"
    from fmridecode.voxel_matrix import volume_order

    df = volume_order(t if isinstance(t, pd.DataFrame) else read_parquet(t), name)
    if len(df) != n_vols:
        raise DataError(f"{name} and {betas_name}: {len(df)} trials but {n_vols} beta volumes")
    return df


def trial_matrix(
    betas_imgs: Sequence[ImgLike],
    trials_tables: Sequence[pd.DataFrame | str | os.PathLike],
    mask_img: ImgLike,
) -> tuple[np.ndarray, pd.DataFrame]:
    """One subject's single-trial ROI betas: extract -> z-score per session.

    ``betas_imgs[i]`` and ``trials_tables[i]`` are one GLM session output (betas.nii.gz and
    trials.parquet, or loaded objects). Sessions are taken from the tables' ``session``
    column. Returns float32 (n_trials, n_voxels) and the trials table in the same row order.
    """
    if len(betas_imgs) != len(trials_tables):
        raise DataError(
            f"trial_matrix: {len(betas_imgs)} betas images but {len(trials_tables)} trials tables"
        )
    if not betas_imgs:
        raise DataError("trial_matrix: no sessions given")
    mask = _load(mask_img, "mask")
    blocks, tables = [], []
    for b, t in zip(betas_imgs, trials_tables, strict=True):
        img = _load(b, "betas")
        X = extract(img, mask)
        tables.append(_trials_table(t, X.shape[0], _name(img, "betas image")))
        blocks.append(X)
    trials = pd.concat(tables, ignore_index=True)
    X = zscore_by_session(np.concatenate(blocks, axis=0), trials["session"].astype(str).to_numpy())
    return X, trials


def defined_mask(
    root: str | os.PathLike, subject: str, definition: Mapping, name: str = "ROI"
) -> nib.Nifti1Image:
    """A ROI given in config (``roi.definitions``): the voxels whose label is in
    ``definition["labels"]`` in any of ``definition["files"]`` (paths under ``root`` with
    ``{subject}`` filled; e.g. both hemispheres' masks). Every file must share one grid."""
    from fmridecode.datasets.bids import fill

    labels = [int(v) for v in definition["labels"]]
    sel, ref, ref_name = None, None, ""
    for template in definition["files"]:
        path = Path(root) / fill(template, subject=_sub(subject)[4:])
        img = _load(path, f"ROI {name!r}")
        data = np.asarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DataError(f"{path}: expected a 3D label image, got shape {data.shape}")
        if ref is None:
            ref, ref_name, sel = img, str(path), np.zeros(data.shape, dtype=bool)
        else:
            _check_grid(ref, img, ref_name, str(path))
        sel |= np.isin(np.rint(np.nan_to_num(data)).astype(np.int64), labels)
    if ref is None:
        raise DataError(f"roi.definitions.{name}: no files given")
    if not sel.any():
        raise DataError(f"{ref_name}: ROI {name!r} (labels {labels}) has no voxels")
    return nib.Nifti1Image(sel.astype(np.uint8), ref.affine)
