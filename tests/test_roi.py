"""ROI masks and voxel matrices on small real NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fmridecode.io import DataError
from fmridecode.roi import (
    average_repeats,
    extract,
    roi_mask,
    roi_names,
    zscore_by_session,
)

SHAPE = (4, 5, 3)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _save(data: np.ndarray, path, affine=AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)


@pytest.fixture
def bids(tmp_path):
    """sub-01 anat: brain = all but x == 0; labels laid out along x and y."""
    anat = tmp_path / "sub-01" / "anat"
    brain = np.ones(SHAPE, np.uint8)
    brain[0] = 0
    nsd = np.zeros(SHAPE, np.uint8)
    nsd[:2, :2, :] = 1  # x == 0 is outside the brain: only x == 1 survives
    streams = np.zeros(SHAPE, np.int16)
    streams[:, 0] = 1
    streams[:, 1] = 2
    streams[:, 2:4] = 3
    floc = np.zeros(SHAPE, np.int16)
    floc[2, 2, 1] = 1
    floc[3, 3, :] = 2
    _save(brain, anat / "sub-01_desc-brain_mask.nii.gz")
    _save(nsd, anat / "sub-01_desc-nsdgeneral_mask.nii.gz")
    _save(streams, anat / "sub-01_desc-streams_dseg.nii.gz")
    pd.DataFrame({"index": [0, 1, 2, 3], "name": ["none", "early", "mid", "high"]}).to_csv(
        anat / "sub-01_desc-streams_dseg.tsv", sep="\t", index=False
    )
    _save(floc, anat / "sub-01_desc-floc_dseg.nii.gz")
    pd.DataFrame({"index": [0, 1, 2], "name": ["none", "faces", "places"]}).to_csv(
        anat / "sub-01_desc-floc_dseg.tsv", sep="\t", index=False
    )
    return tmp_path, brain.astype(bool), nsd, streams, floc


def _mask(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj) > 0


def test_roi_masks_follow_labels_inside_brain(bids):
    root, brain, nsd, streams, floc = bids
    m = roi_mask(root, "01", "nsdgeneral")
    assert np.asarray(m.dataobj).dtype == np.uint8 and np.array_equal(m.affine, AFFINE)
    assert np.array_equal(_mask(m), (nsd > 0) & brain)
    assert _mask(m).sum() == 1 * 2 * 3  # x == 1 only
    for name, label in (("early", 1), ("mid", 2), ("high", 3)):
        assert np.array_equal(_mask(roi_mask(root, "sub-01", name)), (streams == label) & brain)
    assert np.array_equal(_mask(roi_mask(root, "01", "floc-places")), floc == 2)
    assert _mask(roi_mask(root, "01", "floc-faces")).sum() == 1
    assert roi_names(root, "01") == [
        "nsdgeneral",
        "early",
        "mid",
        "high",
        "floc-faces",
        "floc-places",
    ]


def test_roi_mask_unknown_name_lists_known(bids):
    root = bids[0]
    with pytest.raises(DataError, match=r"unknown ROI 'floc-bodies'.*'floc-faces'"):
        roi_mask(root, "01", "floc-bodies")
    with pytest.raises(DataError, match="nsdgeneral"):
        roi_mask(root, "01", "V1")


def test_roi_mask_empty_and_missing_file(bids, tmp_path):
    root = bids[0]
    floc = np.zeros(SHAPE, np.int16)
    floc[0, 0, 0] = 1  # only outside the brain
    _save(floc, root / "sub-01" / "anat" / "sub-01_desc-floc_dseg.nii.gz")
    with pytest.raises(DataError, match="has no voxels"):
        roi_mask(root, "01", "floc-faces")
    with pytest.raises(DataError, match=r"sub-02_desc-nsdgeneral_mask.nii.gz: .*not found"):
        roi_mask(root, "02", "nsdgeneral")


def test_extract_is_c_order_and_checks_grid(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(*SHAPE, 6)).astype(np.float32)
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 2, 0] = mask[3, 0, 2] = mask[1, 0, 1] = 1
    _save(data, tmp_path / "betas.nii.gz")
    _save(mask, tmp_path / "mask.nii.gz")
    X = extract(tmp_path / "betas.nii.gz", tmp_path / "mask.nii.gz")
    assert X.dtype == np.float32 and X.shape == (6, 3)
    # C order of (x, y, z): (1,0,1) < (1,2,0) < (3,0,2)
    expected = np.stack([data[1, 0, 1], data[1, 2, 0], data[3, 0, 2]], axis=1)
    np.testing.assert_array_equal(X, expected)

    _save(mask, tmp_path / "mask3mm.nii.gz", affine=np.diag([3.0, 3.0, 3.0, 1.0]))
    with pytest.raises(DataError, match=r"betas.nii.gz and .*mask3mm.nii.gz: voxel grids differ"):
        extract(tmp_path / "betas.nii.gz", tmp_path / "mask3mm.nii.gz")
    _save(np.zeros((4, 5, 2), np.uint8), tmp_path / "small.nii.gz")
    with pytest.raises(DataError, match="small.nii.gz: voxel grids differ"):
        extract(tmp_path / "betas.nii.gz", tmp_path / "small.nii.gz")

    data[1, 2, 0, 4] = np.nan
    _save(data, tmp_path / "nan.nii.gz")
    with pytest.raises(DataError, match="nan.nii.gz: 1 non-finite"):
        extract(tmp_path / "nan.nii.gz", tmp_path / "mask.nii.gz")


def test_zscore_by_session_hand_case():
    X = np.array(
        [[1.0, 5.0, 0.1], [3.0, 5.0, 0.1], [10.0, 0.0, 0.1], [20.0, 2.0, 0.1], [30.0, 4.0, 0.1]]
    )
    sessions = np.array(["a", "a", "b", "b", "b"])
    Z = zscore_by_session(X, sessions)
    assert Z.dtype == np.float32
    s = np.sqrt(200.0 / 3.0)  # population sd of 10, 20, 30
    expected = np.array(
        [[-1, 0, 0], [1, 0, 0], [-10 / s, -np.sqrt(1.5), 0], [0, 0, 0], [10 / s, np.sqrt(1.5), 0]]
    )
    np.testing.assert_allclose(Z, expected, atol=1e-6)
    # each session on its own: shifting and scaling one session changes nothing
    X2 = X.copy()
    X2[2:] = 7 * X2[2:] - 100
    np.testing.assert_allclose(zscore_by_session(X2, sessions), Z, atol=1e-5)


def test_average_repeats_sorted_with_counts():
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 9.0], [0.0, 1.0]], np.float32)
    trials = pd.DataFrame({"stim_id": ["b", "a", "b", "c", "b"]})
    split_of = {"a": "train", "b": "test", "c": "train", "unused": "pool"}
    Xa, idx = average_repeats(X, trials, split_of)
    assert list(idx.columns) == ["stim_id", "split", "n_repeats"]
    assert idx.values.tolist() == [["b", "test", 3], ["a", "train", 1], ["c", "train", 1]]
    np.testing.assert_allclose(Xa, [[2.0, 3.0], [3.0, 4.0], [7.0, 9.0]])
    assert Xa.dtype == np.float32

    with pytest.raises(DataError, match=r"without a split.*'c'"):
        average_repeats(X, trials, {"a": "train", "b": "test"})
    with pytest.raises(DataError, match="pool"):
        average_repeats(X, trials, {**split_of, "c": "pool"})
    with pytest.raises(DataError, match="4 trials but X has 5"):
        average_repeats(X, trials.iloc[:4], split_of)
