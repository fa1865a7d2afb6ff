"""One subject's ROI voxel matrix from its per-session single-trial betas, in bounded memory.

Sessions are read one at a time (each in one sequential pass, a block of trials at a time),
z-scored per voxel within the session, and added into an on-disk accumulator of output rows;
memory holds one session's masked betas whatever the number of sessions
(``bench/data_memory.py`` measures it). Steps:

1. rows: every test image averaged over its repeats; training images averaged too
   (``train_repeats="average"``) or one row per training trial (``"single"``);
2. per session: betas inside the mask, divided by ``scale`` (NSD's int16 x 300 -> %), z-scored
   per voxel with the mean and SD of that session's *training* trials (``zscore="train"``: the
   test images' statistics never normalise training data; a session of test images only, as
   GOD's, uses its own trials), of all its trials (``"all"``), or not at all (``"none"``);
3. voxels with a non-finite beta in any session are dropped and counted, never propagated.

Outputs (``write_voxel_matrix``): ``voxels.npy`` float32 + index (``stim_id, split, session,
n_repeats``), the mask actually used and each column's voxel coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from fmridecode.io import DataError, save_indexed_chunks, save_nifti, write_parquet

ZSCORE_MODES = ("train", "all", "none")
REPEAT_MODES = ("average", "single")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class SessionBetas:
    """One session's single-trial betas: a 4D NIfTI (X, Y, Z, trials) or an HDF5 file with a
    ``betas`` dataset (trials, Z, Y, X), and its trial table in volume order (columns
    ``session``, ``stim_id``; ``trial`` 0..n-1 when present). File values are divided by
    ``scale``."""

    path: Path
    trials: pd.DataFrame
    fmt: str = "nifti"
    scale: float = 1.0


def session_sources(
    betas: Sequence[str | os.PathLike],
    trials: pd.DataFrame,
    sessions: Sequence[str],
    fmt: str = "nifti",
    scale: float = 1.0,
) -> list[SessionBetas]:
    """Pair each session's betas file (``betas[i]`` holds session ``sessions[i]``) with its
    rows of ``trials`` (all sessions' trial tables concatenated; column ``session``)."""
    if len(betas) != len(sessions):
        raise DataError(f"{len(betas)} betas files for {len(sessions)} sessions {list(sessions)}")
    label = trials["session"].astype(str)
    out = []
    for ses, path in zip(sessions, betas, strict=True):
        table = trials[(label == str(ses)).to_numpy()]
        if table.empty:
            raise DataError(f"{path}: no trials of session {ses} in the trial tables")
        out.append(SessionBetas(Path(path), table, fmt, scale))
    return out


def _hdf5_chunks(path: Path, sel: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: cannot read as HDF5 ({e})") from e
    with f:
        if "betas" not in f:
            raise DataError(f"{path}: no dataset 'betas' (has {list(f)})")
        data = f["betas"]
        if data.ndim != 4 or tuple(data.shape[1:][::-1]) != sel.shape:
            raise DataError(
                f"{path}: betas of shape {data.shape} (trials, Z, Y, X) do not match the "
                f"mask's volume {sel.shape} (X, Y, Z)"
            )
        sel_t = sel.T  # (Z, Y, X): its C order is the volume's Fortran order
        order = np.argsort(np.ravel_multi_index(np.nonzero(sel), sel.shape, order="F"))
        # boolean indexing of (Z, Y, X) walks voxels in the volume's Fortran order; ``order``
        # puts them back into the C order used everywhere else
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        for t0 in range(0, data.shape[0], chunk):
            block = np.asarray(data[t0 : t0 + chunk])[:, sel_t]
            yield np.ascontiguousarray(block[:, back], dtype=np.float32)


def _nifti_chunks(path: Path, mask: nib.Nifti1Image, sel: np.ndarray, chunk: int):
    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises several types on corrupt files
        raise DataError(f"{path}: cannot read as NIfTI ({e})") from e
    if img.ndim != 4:
        raise DataError(f"{path}: betas must be 4D (X, Y, Z, trials), got shape {img.shape}")
    if img.shape[:3] != sel.shape or not np.allclose(img.affine, mask.affine, atol=1e-4):
        raise DataError(
            f"{path}: voxel grid differs from the ROI mask's ({mask.get_filename() or 'mask'}): "
            f"shape {img.shape[:3]} vs {sel.shape}, affines\n{img.affine}\nvs\n{mask.affine}"
        )
    # voxels inside the mask in C order of the volume (nilearn's apply_mask order), as
    # positions in a volume stored in the file's Fortran order
    flat = np.ravel_multi_index(np.nonzero(sel), sel.shape, order="F")
    proxy = img.dataobj  # its offset, dtype and scaling are what nibabel itself applies
    dtype = np.dtype(proxy.dtype)
    slope, inter = float(proxy.slope), float(proxy.inter)
    n_vol_vox = int(np.prod(sel.shape))
    n_trials = img.shape[3]
    nbytes = n_vol_vox * dtype.itemsize
    try:
        # one sequential pass through the (possibly gzipped) file, a block of volumes at a time
        with nib.openers.ImageOpener(path) as f:
            f.seek(proxy.offset)
            for t0 in range(0, n_trials, chunk):
                n = min(chunk, n_trials - t0)
                raw = f.read(n * nbytes)
                if len(raw) != n * nbytes:
                    raise DataError(f"{path}: file ends before volume {t0 + n} of {n_trials}")
                block = np.frombuffer(raw, dtype=dtype).reshape(n, n_vol_vox)[:, flat]
                block = block.astype(np.float32)
                if slope != 1.0:
                    block *= np.float32(slope)
                if inter != 0.0:
                    block += np.float32(inter)
                yield block
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the betas ({e})") from e


def beta_chunks(
    source: SessionBetas, mask: nib.Nifti1Image, chunk: int = 50
) -> Iterator[np.ndarray]:
    """Blocks of at most ``chunk`` trials of ``source`` inside ``mask``: float32 (trials,
    voxels) in file units, voxels in C order of the volume. A NIfTI's grid (shape and affine)
    must equal the mask's; an HDF5 file (no affine) must have the mask's shape."""
    path = Path(source.path)
    if not path.exists():
        raise DataError(f"{path}: betas file not found")
    sel = np.asarray(mask.dataobj) > 0
    if source.fmt == "hdf5":
        return _hdf5_chunks(path, sel, chunk)
    return _nifti_chunks(path, mask, sel, chunk)


def session_zscore(X: np.ndarray, stats_rows: np.ndarray | None) -> np.ndarray:
    """Z-score the columns of one session's ``X`` with the mean and SD (ddof 0) of the rows
    in ``stats_rows`` (boolean; None: no z-scoring), as float32. Constant voxels become 0."""
    if stats_rows is None:
        return X.astype(np.float32, copy=False)
    if stats_rows.sum() < 2:
        raise DataError(f"z-scoring needs at least 2 trials per session, got {stats_rows.sum()}")
    x = X[stats_rows].astype(np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    ok = x.max(axis=0) > x.min(axis=0)  # exact test: the SD of a constant can round to > 0
    z = np.zeros(X.shape, dtype=np.float32)
    z[:, ok] = ((X[:, ok] - mu[ok]) / sd[ok]).astype(np.float32)
    return z


def volume_order(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """A session's trial table (columns ``session``, ``stim_id``) in the order of its betas'
    volumes: by its ``trial`` column, which must then be 0..n-1, else as given."""
    need = {"session", "stim_id"}
    if not need <= set(df.columns):
        raise DataError(f"{name}: trial table needs columns {sorted(need)}, has {list(df.columns)}")
    if "trial" in df.columns:
        df = df.sort_values("trial", kind="stable")
        if not np.array_equal(df["trial"].to_numpy(), np.arange(len(df))):
            raise DataError(f"{name}: the trial table's 'trial' column is not 0..{len(df) - 1}")
    return df.reset_index(drop=True)


def _checked_trials(source: SessionBetas, split_of: dict[str, str]) -> pd.DataFrame:
    """A session's trial table in volume order with each trial's split."""
    df = volume_order(source.trials, str(source.path))
    stim = df["stim_id"].astype(str)
    unknown = sorted(set(stim) - set(split_of))
    if unknown:
        raise DataError(
            f"{source.path}: {len(unknown)} trial stimuli have no image in the stimulus set, "
            f"e.g. {unknown[:5]}"
        )
    split = stim.map(split_of).to_numpy()
    bad = sorted(set(split) - set(SPLITS))
    if bad:
        raise DataError(f"{source.path}: scanned stimuli with split {bad}, expected {SPLITS}")
    return pd.DataFrame({"session": df["session"].astype(str), "stim_id": stim, "split": split})


def row_layout(
    tables: Sequence[pd.DataFrame], train_repeats: str = "average"
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Output rows, and per session each trial's row. Averaged rows: one per (split,
    stim_id); single training rows: one per training trial. Rows are sorted by (split,
    stim_id, session, trial). Index columns ``stim_id, split, session, n_repeats`` (session:
    the sessions of the row's trials, comma-separated)."""
    if train_repeats not in REPEAT_MODES:
        raise ValueError(f"train_repeats must be one of {REPEAT_MODES}, got {train_repeats!r}")
    trials = pd.concat(
        [t.assign(_ses=i, _trial=np.arange(len(t))) for i, t in enumerate(tables)],
        ignore_index=True,
    )
    single = (trials["split"] == "train").to_numpy() & (train_repeats == "single")
    trial_key = trials["_ses"].astype(str) + ":" + trials["_trial"].astype(str)
    trials["_key"] = np.where(single, trials["stim_id"] + "|" + trial_key, trials["stim_id"])
    ordered = trials.sort_values(["split", "stim_id", "_ses", "_trial"], kind="stable")
    keys = pd.unique(ordered["_key"])
    trials["_row"] = pd.Series(np.arange(len(keys)), index=keys).loc[trials["_key"]].to_numpy()
    grouped = trials.groupby("_row", sort=True)
    index = pd.DataFrame(
        {
            "stim_id": grouped["stim_id"].first().to_numpy(),
            "split": grouped["split"].first().to_numpy(),
            "session": grouped["session"].agg(lambda s: ",".join(pd.unique(s))).to_numpy(),
            "n_repeats": grouped.size().to_numpy().astype(np.int64),
        }
    )
    rows = [trials.loc[trials["_ses"] == i, "_row"].to_numpy() for i in range(len(tables))]
    return index, rows


def voxel_coordinates(mask: nib.Nifti1Image) -> pd.DataFrame:
    """Voxel indices (i, j, k) and scanner coordinates (x, y, z in mm) of the mask's voxels,
    in the column order of the voxel matrix (C order of the volume)."""
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)  # argwhere walks C order
    xyz = nib.affines.apply_affine(mask.affine, ijk)
    cols = {"i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2]}
    return pd.DataFrame(cols | {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})


def to_volume(values: np.ndarray, mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """Per-voxel values of a voxel matrix's columns, (n_voxels,) or (n_voxels, k), put back
    into the brain on the mask's grid (0 outside), e.g. to draw them."""
    sel = np.asarray(mask.dataobj) > 0
    values = np.asarray(values, dtype=np.float32)
    if values.shape[0] != sel.sum():
        raise DataError(f"to_volume: {values.shape[0]} values for a mask of {sel.sum()} voxels")
    out = np.zeros(sel.shape + values.shape[1:], dtype=np.float32)
    out[sel] = values
    return nib.Nifti1Image(out, mask.affine)


def _accumulate(
    sessions: Sequence[SessionBetas],
    tables: Sequence[pd.DataFrame],
    rows: Sequence[np.ndarray],
    mask: nib.Nifti1Image,
    acc_path: Path,
    shape: tuple[int, int],
    zscore: str,
    chunk: int,
    progress: bool,
) -> np.ndarray:
    """Add every session's z-scored trials into the row sums on disk; returns the voxels
    that had a non-finite beta somewhere and the sessions without training trials (z-scored
    with their own statistics: no training data is normalised by them)."""
    bad = np.zeros(shape[1], dtype=bool)
    own_stats: list[str] = []
    np.memmap(acc_path, dtype=np.float32, mode="w+", shape=shape).flush()
    work = list(zip(sessions, tables, rows, strict=True))
    for source, table, row in tqdm(work, desc="sessions", disable=not progress):
        X = np.concatenate(list(beta_chunks(source, mask, chunk)), axis=0)
        if X.shape[0] != len(table):
            raise DataError(
                f"{source.path}: {X.shape[0]} beta volumes but {len(table)} trials in its table"
            )
        if source.scale != 1.0:
            X /= np.float32(source.scale)
        finite = np.isfinite(X)
        bad |= ~finite.all(axis=0)
        X[~finite] = 0.0
        del finite
        rows_for_stats = None
        if zscore != "none":
            rows_for_stats = np.ones(len(X), dtype=bool)
            train = table["split"].to_numpy() == "train"
            if zscore == "train" and train.any():
                rows_for_stats = train
            elif zscore == "train":  # a test-only session (GOD): nothing of training to use
                own_stats.append(str(table["session"].iloc[0]))
        try:
            Z = session_zscore(X, rows_for_stats)
        except DataError as e:
            raise DataError(f"{source.path}: {e}") from e
        del X
        uniq, inv = np.unique(row, return_inverse=True)
        block = np.zeros((len(uniq), shape[1]), dtype=np.float32)
        np.add.at(block, inv, Z)
        acc = np.memmap(acc_path, dtype=np.float32, mode="r+", shape=shape)
        acc[uniq] += block
        acc.flush()
        del acc, block, Z  # unmapped: the sums' pages do not stay in memory
    return bad, own_stats


def write_voxel_matrix(
    sessions: Sequence[SessionBetas],
    mask: nib.Nifti1Image,
    split_of: dict[str, str],
    voxels_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    coords_path: str | os.PathLike,
    *,
    train_repeats: str = "average",
    zscore: str = "train",
    chunk: int = 50,
    progress: bool = True,
) -> dict:
    """Build and write one subject's voxel matrix inside ``mask`` (see the module docstring).

    Returns a summary for the log and quality file: voxel counts (in the ROI, dropped for
    non-finite betas, kept), rows and trials per split, sessions.
    """
    if zscore not in ZSCORE_MODES:
        raise ValueError(f"zscore must be one of {ZSCORE_MODES}, got {zscore!r}")
    voxels_path = Path(voxels_path)
    if not sessions:
        raise DataError(f"{voxels_path}: no sessions given")
    sel = np.asarray(mask.dataobj) > 0
    n_vox = int(sel.sum())
    if n_vox == 0:
        raise DataError(f"{mask.get_filename() or 'ROI mask'}: the ROI has no voxels")
    tables = [_checked_trials(s, split_of) for s in sessions]
    index, rows = row_layout(tables, train_repeats)
    shape = (len(index), n_vox)
    voxels_path.parent.mkdir(parents=True, exist_ok=True)
    acc_path = voxels_path.with_name(f".{voxels_path.name}.sums")
    try:
        bad, own_stats = _accumulate(
            sessions, tables, rows, mask, acc_path, shape, zscore, chunk, progress
        )
        keep = ~bad
        if not keep.any():
            raise DataError(f"{voxels_path}: every voxel of the ROI has non-finite betas")
        counts = index["n_repeats"].to_numpy(dtype=np.float32)[:, None]

        def means(step: int = 256) -> Iterator[np.ndarray]:
            with open(acc_path, "rb") as f:
                for r0 in range(0, len(index), step):
                    n = min(step, len(index) - r0)
                    block = np.fromfile(f, dtype=np.float32, count=n * n_vox).reshape(n, n_vox)
                    yield block[:, keep] / counts[r0 : r0 + n]

        save_indexed_chunks(voxels_path, (len(index), int(keep.sum())), np.float32, means(), index)
    finally:
        acc_path.unlink(missing_ok=True)
    final = sel.copy()
    final[sel] = keep
    used = nib.Nifti1Image(final.astype(np.uint8), mask.affine)
    save_nifti(used, mask_path)
    write_parquet(voxel_coordinates(used), coords_path)
    trials = pd.concat(tables, ignore_index=True)
    return {
        "voxels_in_roi": n_vox,
        "voxels_dropped_nonfinite": int(bad.sum()),
        "dropped_ijk": np.argwhere(sel)[bad][:20].tolist(),
        "voxels": int(keep.sum()),
        "rows": {s: int((index["split"] == s).sum()) for s in SPLITS},
        "trials": {s: int((trials["split"] == s).sum()) for s in SPLITS},
        "sessions": [str(t["session"].iloc[0]) for t in tables],
        "train_repeats": train_repeats,
        "zscore": zscore,
        "zscored_with_own_trials": own_stats,
    }
