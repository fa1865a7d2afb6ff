"""The bounded-memory voxel matrix: z-scoring by training trials, repeats, NaN voxels, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fmridecode.io import DataError, load_indexed, read_parquet
from fmridecode.voxel_matrix import (
    SessionBetas,
    beta_chunks,
    row_layout,
    to_volume,
    voxel_coordinates,
    write_voxel_matrix,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (4, 5, 3)


def _session(tmp: Path, name: str, stims: list[str], session: str, rng, nan_at=None):
    data = rng.normal(3.0, 2.0, SHAPE + (len(stims),)).astype(np.float32)
    if nan_at is not None:
        data[nan_at + (0,)] = np.nan
    path = tmp / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    trials = pd.DataFrame({"trial": range(len(stims)), "session": session, "stim_id": stims})
    return SessionBetas(path, trials), data


def _mask(sel=None) -> nib.Nifti1Image:
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[1:3, 1:4, :] = 1 if sel is None else sel
    return nib.Nifti1Image(m, AFFINE)


SPLIT = {"a": "train", "b": "train", "c": "train", "d": "train", "t1": "test", "t2": "test"}


def _build(tmp_path, sources, **kw):
    out = tmp_path / "out"
    summary = write_voxel_matrix(
        sources,
        _mask(),
        SPLIT,
        out / "voxels.npy",
        out / "mask.nii.gz",
        out / "coords.parquet",
        progress=False,
        **kw,
    )
    X, index = load_indexed(out / "voxels.npy")
    return X, index, summary, out


def test_zscore_uses_each_sessions_training_trials_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s1, d1 = _session(tmp_path, "s1", ["a", "t1", "b", "t2", "c"], "01", rng)
    s2, d2 = _session(tmp_path, "s2", ["t1", "d", "a", "c", "b", "t1"], "02", rng)
    X, index, summary, _ = _build(tmp_path, [s1, s2])
    sel = np.asarray(_mask().dataobj) > 0
    expected = {}
    for src, data in ((s1, d1), (s2, d2)):
        x = data[sel].T.astype(np.float64)  # trials x voxels, C order
        train = src.trials["stim_id"].map(SPLIT).to_numpy() == "train"
        z = (x - x[train].mean(0)) / x[train].std(0)  # test trials never in the statistics
        for stim, row in zip(src.trials["stim_id"], z, strict=True):
            expected.setdefault(stim, []).append(row)
    assert list(index.columns) == ["stim_id", "split", "session", "n_repeats"]
    assert index["stim_id"].tolist() == ["t1", "t2", "a", "b", "c", "d"]  # test first, sorted
    assert index["n_repeats"].tolist() == [3, 1, 2, 2, 2, 1]
    assert index.loc[0, "session"] == "01,02"
    for i, stim in enumerate(index["stim_id"]):
        np.testing.assert_allclose(X[i], np.mean(expected[stim], axis=0), rtol=1e-5, atol=1e-5)
    assert X.dtype == np.float32
    assert summary["trials"] == {"train": 7, "test": 4}
    # "all" z-scores with every trial of the session: different rows for the test images
    X_all, _, _, _ = _build(tmp_path, [s1, s2], zscore="all")
    assert not np.allclose(X_all[0], X[0])


def test_single_trial_rows_keep_training_repeats(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    s1, _ = _session(tmp_path, "s1", ["a", "t1", "a", "b"], "01", rng)
    s2, _ = _session(tmp_path, "s2", ["t1", "a", "b", "c"], "02", rng)
    X_avg, idx_avg, _, _ = _build(tmp_path, [s1, s2])
    X, index, _, _ = _build(tmp_path, [s1, s2], train_repeats="single")
    assert index["stim_id"].tolist() == ["t1", "a", "a", "a", "b", "b", "c"]
    assert index["n_repeats"].tolist() == [2, 1, 1, 1, 1, 1, 1]
    assert index["session"].tolist() == ["01,02", "01", "01", "02", "01", "02", "02"]
    np.testing.assert_allclose(X[1:4].mean(0), X_avg[idx_avg["stim_id"] == "a"][0], atol=1e-5)
    np.testing.assert_allclose(X[0], X_avg[0], atol=1e-6)  # test rows are averaged either way


def test_nan_voxels_are_dropped_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    s1, _ = _session(tmp_path, "s1", ["a", "b", "t1"], "01", rng, nan_at=(1, 2, 0))
    s2, _ = _session(tmp_path, "s2", ["c", "d", "t2"], "02", rng)
    X, _, summary, out = _build(tmp_path, [s1, s2])
    assert summary["voxels_in_roi"] == 18 and summary["voxels_dropped_nonfinite"] == 1
    assert summary["dropped_ijk"] == [[1, 2, 0]]
    assert X.shape[1] == 17 and np.isfinite(X).all()
    used = nib.load(out / "mask.nii.gz")
    assert int(np.asarray(used.dataobj).sum()) == 17 and np.asarray(used.dataobj)[1, 2, 0] == 0
    coords = read_parquet(out / "coords.parquet")
    assert len(coords) == 17 and [1, 2, 0] not in coords[["i", "j", "k"]].to_numpy().tolist()
    np.testing.assert_allclose(coords[["x", "y", "z"]], 2.0 * coords[["i", "j", "k"]])
    back = to_volume(X[0], used)  # values back into the brain for figures
    assert np.asarray(back.dataobj)[tuple(coords.loc[0, ["i", "j", "k"]])] == X[0, 0]


def test_hdf5_betas_give_the_nifti_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(-900, 900, SHAPE + (7,)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / "b.nii.gz")
    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f.create_dataset("betas", data=np.ascontiguousarray(data.T))  # (trials, Z, Y, X)
    t = pd.DataFrame({"session": "01", "stim_id": ["a"] * 7})
    mask = _mask()
    a = np.concatenate(list(beta_chunks(SessionBetas(tmp_path / "b.nii.gz", t), mask, chunk=3)))
    b = np.concatenate(
        list(beta_chunks(SessionBetas(tmp_path / "b.hdf5", t, "hdf5"), mask, chunk=3))
    )
    sel = np.asarray(mask.dataobj) > 0
    np.testing.assert_array_equal(a, data[sel].T.astype(np.float32))  # C order, as nilearn
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    s1, _ = _session(tmp_path, "s1", ["a", "b", "zz"], "01", rng)
    with pytest.raises(DataError, match=r"s1\.nii\.gz.*no image in the stimulus set.*zz"):
        _build(tmp_path, [s1])
    short = SessionBetas(s1.path, s1.trials.iloc[:2].assign(stim_id=["a", "b"]))
    with pytest.raises(DataError, match=r"s1\.nii\.gz: 3 beta volumes but 2 trials"):
        _build(tmp_path, [short, _session(tmp_path, "s2", ["c", "d"], "02", rng)[0]])
    other = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE + (2,), np.float32), np.diag([3, 3, 3, 1.0])), other)
    moved = SessionBetas(other, pd.DataFrame({"session": "01", "stim_id": ["a", "b"]}))
    with pytest.raises(DataError, match=r"moved\.nii\.gz: voxel grid differs from the ROI mask"):
        _build(tmp_path, [moved])
    with pytest.raises(DataError, match=r"missing\.nii\.gz: betas file not found"):
        _build(tmp_path, [SessionBetas(tmp_path / "missing.nii.gz", moved.trials)])
    assert not (tmp_path / "out" / "voxels.npy").exists()  # nothing half-written
    assert not list((tmp_path / "out").glob(".*sums"))


def test_row_layout_and_coordinates_follow_c_order() -> None:
    t = pd.DataFrame({"session": "01", "stim_id": ["b", "a", "b"], "split": "train"})
    index, rows = row_layout([t])
    assert index["stim_id"].tolist() == ["a", "b"] and rows[0].tolist() == [1, 0, 1]
    m = np.zeros((2, 2, 2), np.uint8)
    m[0, 1, 1] = m[1, 0, 0] = 1
    coords = voxel_coordinates(nib.Nifti1Image(m, np.eye(4)))
    assert coords[["i", "j", "k"]].to_numpy().tolist() == [[0, 1, 1], [1, 0, 0]]


def test_session_sources_pair_files_with_their_trials(tmp_path: Path) -> None:
    from fmridecode.voxel_matrix import session_sources

    trials = pd.DataFrame({"session": ["01", "01", "02"], "stim_id": ["a", "b", "c"]})
    out = session_sources(["s1.nii.gz", "s2.nii.gz"], trials, ["01", "02"], "hdf5", 300.0)
    assert [s.trials["stim_id"].tolist() for s in out] == [["a", "b"], ["c"]]
    assert out[1].path == Path("s2.nii.gz") and out[1].fmt == "hdf5" and out[1].scale == 300.0
    with pytest.raises(DataError, match=r"s3\.nii\.gz: no trials of session 03"):
        session_sources(["s1.nii.gz", "s3.nii.gz"], trials, ["01", "03"])
    with pytest.raises(DataError, match="1 betas files for 2 sessions"):
        session_sources(["s1.nii.gz"], trials, ["01", "02"])
