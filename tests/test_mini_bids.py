"""The miniature BOLD5000 and GOD copies (tests/mini_bids.py): names, formats, contents."""

from __future__ import annotations

import itertools
import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mini_bids import (
    BOLD5000_EVENT_COLUMNS,
    GOD_EVENT_COLUMNS,
    _synth_bold,
    write_mini_bold5000,
    write_mini_god,
)
from PIL import Image

MAX_BYTES = 5 * 1024**2  # small enough to write in every test session


@pytest.fixture(scope="module")
def bold5000(tmp_path_factory):
    root = tmp_path_factory.mktemp("bold5000")
    return root, write_mini_bold5000(root)


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    root = tmp_path_factory.mktemp("god")
    return root, write_mini_god(root)


def _load_mask(path, shape, affine):
    img = nib.load(path)
    assert img.shape == shape
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(img.affine, affine)
    data = np.asarray(img.dataobj)
    assert set(np.unique(data)) <= {0, 1}
    return data.astype(bool)


def _check_rois(rois: dict, brain: np.ndarray, hemis=("LH", "RH")):
    half = brain.shape[0] / 2
    x = np.arange(brain.shape[0])[:, None, None] * np.ones(brain.shape)
    for name, m in rois.items():
        assert m.any(), name
        assert not (m & ~brain).any(), f"{name} leaves the brain mask"
        if name.startswith(hemis[0]):
            assert (x[m] < half).all(), name
        else:
            assert name.startswith(hemis[1]) and (x[m] >= half).all(), name
    for (a, ma), (b, mb) in itertools.combinations(rois.items(), 2):
        assert not (ma & mb).any(), f"{a} and {b} overlap"


def _check_bold(path, shape, affine, tr, n_vols, brain):
    img = nib.load(path)
    assert img.shape == (*shape, n_vols)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, affine)
    np.testing.assert_allclose(img.header.get_zooms(), [*np.diag(affine)[:3], tr])
    assert img.header.get_xyzt_units() == ("mm", "sec")
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all()
    assert 950 < data[brain].mean() < 1050
    assert data[~brain].min() >= 0 and data[~brain].max() <= 10
    return data


def _check_images(images: dict, path_of):
    for name, arr in images.items():
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
        with Image.open(path_of(name)) as im:
            assert im.format == "JPEG", name
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), arr)
    for (a, xa), (b, xb) in itertools.combinations(images.items(), 2):
        h, w = min(xa.shape[0], xb.shape[0]), min(xa.shape[1], xb.shape[1])
        diff = np.abs(xa[:h, :w].astype(int) - xb[:h, :w].astype(int)).mean()
        assert diff > 20, f"{a} and {b} look alike"


def _bold5000_kinds(out) -> dict[str, str]:
    """ImgName -> coco / imagenet / scenes, from the returned trial tables."""
    kinds = {}
    for table in out["trials"].values():
        kind = table["img_type"].str.removeprefix("rep_")
        kinds.update(zip(table["stim_id"], kind, strict=True))
    return kinds


def test_synth_bold_amplitude_is_peak_percent_change():
    rng = np.random.default_rng(0)
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = mask[1, 1, 2] = True
    amps = np.array([[2.0, 5.0]])
    for dur in (1.0, 9.0):
        data = _synth_bold(rng, [4.0], [dur], amps, 0.5, 80, mask, 1000.0, noise_sd=0.0)
        peak = (data[mask] / 1000.0 - 1).max(axis=1) * 100
        np.testing.assert_allclose(peak, [2.0, 5.0], rtol=0.01)
        assert np.abs(data[mask][:, :8] - 1000.0).max() < 1e-3  # nothing before the onset
        assert data[mask][:, 8:].min() < 1000.0  # undershoot
        assert data[~mask].min() >= 0 and data[~mask].max() <= 10
    with pytest.raises(ValueError):
        _synth_bold(rng, [4.0], [1.0], np.ones((1, 3)), 0.5, 80, mask)


# --- BOLD5000 ------------------------------------------------------------------------------


def test_bold5000_is_small_with_every_key(bold5000):
    root, out = bold5000
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < MAX_BYTES
    assert set(out) == {
        "bids",
        "stimuli",
        "captions",
        "tr",
        "affine",
        "shape",
        "subjects",
        "sessions",
        "trials",
        "test_ids",
        "images",
        "captions_by_id",
        "brain_mask",
        "rois",
    }


def test_bold5000_top_files(bold5000):
    root, out = bold5000
    assert out["bids"] == root / "ds001499"
    assert out["stimuli"] == root / "BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli"
    assert out["captions"] == root / "annotations/captions_train2014.json"
    desc = json.loads((root / "ds001499/dataset_description.json").read_text())
    assert desc == {"Name": "BOLD5000 mini", "BIDSVersion": "1.0.2"}
    side = json.loads((root / "ds001499/task-5000scenes_bold.json").read_text())
    assert side == {"TaskName": "5000scenes", "RepetitionTime": 2.0}
    assert out["subjects"] == ["CSI1", "CSI2"] and out["tr"] == 2.0 and out["shape"] == (8, 8, 6)
    assert out["sessions"] == {"CSI1": ["01", "02"], "CSI2": ["01", "02"]}
    np.testing.assert_array_equal(out["affine"], np.diag([2.0, 2.0, 2.0, 1.0]))


def test_bold5000_events_and_bold(bold5000):
    root, out = bold5000
    bids, brain = root / "ds001499", out["brain_mask"]
    assert set(out["trials"]) == {(s, ses) for s in ("CSI1", "CSI2") for ses in ("01", "02")}
    for (subject, ses), table in out["trials"].items():
        assert list(table.columns) == ["run", "onset", "stim_id", "img_type"]
        assert table["run"].tolist() == [1] * 10 + [2] * 10
        func = bids / f"sub-{subject}/ses-{ses}/func"
        prep = bids / f"derivatives/fmriprep/sub-{subject}/ses-{ses}/func"
        for run in (1, 2):
            stem = f"sub-{subject}_ses-{ses}_task-5000scenes_run-{run:02d}"
            ev = pd.read_csv(func / f"{stem}_events.tsv", sep="\t")
            assert list(ev.columns) == BOLD5000_EVENT_COLUMNS
            rows = table[table["run"] == run]
            np.testing.assert_allclose(ev["onset"], 6.0 + 10.0 * np.arange(10))
            np.testing.assert_allclose(ev["onset"], rows["onset"])
            assert (ev["duration"] == 1.0).all()
            assert ev["ImgName"].tolist() == rows["stim_id"].tolist()
            assert ev["ImgType"].tolist() == rows["img_type"].tolist()
            assert (ev["Subj"] == int(subject[-1])).all() and (ev["Sess"] == int(ses)).all()
            assert (ev["Run"] == run).all() and ev["Trial"].tolist() == list(range(1, 11))
            assert ((ev["StimOn(s)"] - ev["onset"]).between(0, 0.05)).all()
            assert ev["Response"].isna().equals(ev["RT"].isna())
            assert ev["Response"].dropna().isin([1, 2, 3]).all()

            n_vols = int(np.ceil((96.0 + 1.0 + 20.0) / 2.0))
            data = _check_bold(
                prep / f"{stem}_bold_space-T1w_preproc.nii.gz",
                (8, 8, 6),
                out["affine"],
                2.0,
                n_vols,
                brain,
            )
            mean = data[brain].mean(axis=0)
            at_onset = (ev["onset"].to_numpy() / 2.0).astype(int)
            assert (mean[at_onset + 3] - mean[at_onset]).mean() > 10  # response peaks ~6 s later
            assert abs(mean[:3].mean() - data[brain][:, :3].mean()) < 1e-3
            assert abs(mean[:3].mean() - 1000) < 10  # before the first response: baseline


def test_bold5000_masks(bold5000):
    root, out = bold5000
    bids, brain, affine = root / "ds001499", out["brain_mask"], out["affine"]
    expected = np.zeros((8, 8, 6), bool)
    expected[1:-1, 1:-1, 1:-1] = True
    np.testing.assert_array_equal(brain, expected)
    rois = out["rois"]
    names = {f"{h}{r}" for h in ("LH", "RH") for r in ("EarlyVis", "LOC", "OPA", "PPA", "RSC")}
    assert set(rois) == names
    _check_rois(rois, brain)
    for subject in out["subjects"]:
        for ses in out["sessions"][subject]:
            path = (
                bids
                / f"derivatives/fmriprep/sub-{subject}/ses-{ses}/func"
                / f"sub-{subject}_ses-{ses}_task-5000scenes_run-01_bold_space-T1w_brainmask.nii.gz"
            )
            np.testing.assert_array_equal(_load_mask(path, (8, 8, 6), affine), brain)
        for name in names:
            path = bids / f"derivatives/spm/sub-{subject}/sub-{subject}_mask-{name}.nii.gz"
            np.testing.assert_array_equal(_load_mask(path, (8, 8, 6), affine), rois[name])


def test_bold5000_design(bold5000):
    _, out = bold5000
    test_ids = out["test_ids"]
    assert len(test_ids) == 3 and test_ids == sorted(test_ids)
    seen = {}
    for (subject, _ses), table in out["trials"].items():
        types = dict(zip(table["stim_id"], table["img_type"], strict=True))
        assert sorted(types[t] for t in test_ids) == ["rep_coco", "rep_imagenet", "rep_scenes"]
        assert table["stim_id"].isin(test_ids).sum() == 3  # each test image once per session
        once = table[~table["stim_id"].isin(test_ids)]
        assert set(once["img_type"]) == {"coco", "imagenet", "scenes"}
        seen.setdefault(subject, []).extend(once["stim_id"])
    for subject, names in seen.items():
        assert len(names) == len(set(names)) == 34, subject  # each image once per subject
    a, b = set(seen["CSI1"]), set(seen["CSI2"])
    assert 0 < len(a & b) < len(a)  # partly overlapping
    assert set(out["images"]) == a | b | set(test_ids)
    kinds = _bold5000_kinds(out)
    for name in out["images"]:
        pattern = {
            "coco": r"COCO_train2014_\d{12}\.jpg",
            "imagenet": r"n\d{8}_\d+\.JPEG",
            "scenes": r"[a-z]+\d+\.jpg",
        }[kinds[name]]
        assert re.fullmatch(pattern, name), name


def test_bold5000_images(bold5000):
    _, out = bold5000
    kinds = _bold5000_kinds(out)
    folders = {"coco": "COCO", "imagenet": "ImageNet", "scenes": "Scene"}
    assert len(out["images"]) == 3 + 17 + 2 * 17  # test + shared + each subject's own
    _check_images(out["images"], lambda n: out["stimuli"] / folders[kinds[n]] / n)
    on_disk = {p.name for p in out["stimuli"].rglob("*") if p.is_file()}
    assert on_disk == set(out["images"])


def test_bold5000_captions(bold5000):
    _, out = bold5000
    coco = json.loads(out["captions"].read_text())
    assert {"info", "images", "annotations"} <= set(coco)
    shown = {n for n in out["images"] if n.startswith("COCO_")}
    assert set(out["captions_by_id"]) == shown and shown
    by_file = {im["file_name"]: im for im in coco["images"]}
    assert shown < set(by_file) and len(set(by_file) - shown) >= 1  # plus never-shown images
    caps = {}
    for ann in coco["annotations"]:
        caps.setdefault(ann["image_id"], []).append((ann["id"], ann["caption"]))
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    for name, im in by_file.items():
        assert im["id"] == int(name[len("COCO_train2014_") : -len(".jpg")])
        assert len(caps[im["id"]]) == 5
        if name in shown:
            assert [c for _, c in sorted(caps[im["id"]])] == out["captions_by_id"][name]
            assert (im["height"], im["width"]) == out["images"][name].shape[:2]


def test_bold5000_deterministic(bold5000, tmp_path):
    _, out = bold5000
    again = write_mini_bold5000(tmp_path / "same")
    for key, table in out["trials"].items():
        pd.testing.assert_frame_equal(again["trials"][key], table)
    stem = "sub-CSI1/ses-01/func/sub-CSI1_ses-01_task-5000scenes_run-01_bold_space-T1w_preproc"
    path = f"derivatives/fmriprep/{stem}.nii.gz"
    a = np.asarray(nib.load(out["bids"] / path).dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(again["bids"] / path).dataobj), a)
    other = write_mini_bold5000(tmp_path / "other", seed=1, subjects=("CSI1",), sessions=1)
    assert other["sessions"] == {"CSI1": ["01"]}
    assert (
        other["trials"]["CSI1", "01"]["stim_id"].tolist()
        != out["trials"]["CSI1", "01"]["stim_id"].tolist()
    )


# --- GOD -----------------------------------------------------------------------------------


def test_god_is_small_with_every_key(god):
    root, out = god
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < MAX_BYTES
    assert set(out) == {
        "bids",
        "images_dirs",
        "tr",
        "affine",
        "shape",
        "subjects",
        "sessions",
        "trials",
        "test_ids",
        "train_ids",
        "categories",
        "images",
        "brain_mask",
        "rois",
    }


def test_god_top_files(god):
    root, out = god
    assert out["bids"] == root / "ds001246"
    assert out["images_dirs"] == [root / "god_images/training", root / "god_images/test"]
    assert json.loads((root / "ds001246/dataset_description.json").read_text())["Name"]
    side = json.loads((root / "ds001246/task-perception_bold.json").read_text())
    assert side == {"TaskName": "perception", "RepetitionTime": 3.0}
    assert out["subjects"] == ["01", "02"] and out["tr"] == 3.0
    sessions = ["perceptionTraining01", "perceptionTraining02", "perceptionTest01"]
    assert out["sessions"] == {"01": sessions, "02": sessions}
    np.testing.assert_array_equal(out["affine"], np.diag([3.0, 3.0, 3.0, 1.0]))


def test_god_events_and_bold(god):
    root, out = god
    bids, brain = root / "ds001246", out["brain_mask"]
    assert len(out["trials"]) == 6
    for (subject, ses), table in out["trials"].items():
        assert list(table.columns) == ["run", "onset", "stim_id", "category"]
        n = 8 if ses.startswith("perceptionTraining") else 4 * 2
        func = bids / f"sub-{subject}/ses-{ses}/func"
        for run in (1, 2):
            stem = f"sub-{subject}_ses-{ses}_task-perception_run-{run:02d}"
            ev = pd.read_csv(func / f"{stem}_events.tsv", sep="\t", dtype={"stimulus_id": str})
            assert list(ev.columns) == GOD_EVENT_COLUMNS
            assert len(ev) == n + 2
            first, stim, last = ev.iloc[0], ev.iloc[1:-1], ev.iloc[-1]
            assert (first["onset"], first["duration"], first["event_type"]) == (0.0, 33.0, -1)
            assert (last["onset"], last["duration"], last["event_type"]) == (33 + 9 * n, 6.0, -2)
            for row in (first, last):
                assert pd.isna(row["stimulus_id"]) and pd.isna(row["stimulus_name"])
            assert (stim["event_type"] == 1).all() and (stim["duration"] == 9.0).all()
            np.testing.assert_allclose(stim["onset"], 33.0 + 9.0 * np.arange(n))
            assert ev["trial_no"].tolist() == list(range(1, n + 3))
            rows = table[table["run"] == run]
            np.testing.assert_allclose(stim["onset"], rows["onset"])
            assert stim["stimulus_name"].tolist() == rows["stim_id"].tolist()
            for sid, name in zip(stim["stimulus_id"], stim["stimulus_name"], strict=True):
                synset, number = name.split("_")
                assert re.fullmatch(r"n\d{8}", synset) and re.fullmatch(r"\d+\.\d{6}", sid)
                assert float(sid) == pytest.approx(int(synset[1:]) + int(number) / 1e6, abs=1e-7)
            raw = (func / f"{stem}_events.tsv").read_text().splitlines()
            assert raw[1].split("\t")[4:] == ["n/a", "n/a", "n/a"]

            data = _check_bold(
                func / f"{stem}_bold.nii.gz", (8, 8, 6), out["affine"], 3.0, 13 + 3 * n, brain
            )
            mean = data[brain].mean(axis=0)
            assert abs(mean[:10].mean() - 1000) < 10  # 33 s rest: baseline
            assert mean[14:-5].mean() - 1000 > 15  # blocks back to back: sustained response


def test_god_masks(god):
    root, out = god
    bids, brain, affine = root / "ds001246", out["brain_mask"], out["affine"]
    assert brain.sum() == 6 * 6 * 4 and not brain[0].any() and not brain[:, :, -1].any()
    names = {
        f"{h}_{r}" for h in ("LH", "RH") for r in ("V1", "V2", "V3", "hV4", "LOC", "FFA", "PPA")
    }
    assert set(out["rois"]) == names
    _check_rois(out["rois"], brain)
    for subject in out["subjects"]:
        path = bids / f"derivatives/preproc/sub-{subject}/sub-{subject}_desc-brain_mask.nii.gz"
        np.testing.assert_array_equal(_load_mask(path, (8, 8, 6), affine), brain)
        for name in names:
            path = bids / f"sourcedata/sub-{subject}/anat/sub-{subject}_mask_{name}.nii.gz"
            np.testing.assert_array_equal(_load_mask(path, (8, 8, 6), affine), out["rois"][name])


def test_god_design(god):
    _, out = god
    train, test, cats = out["train_ids"], out["test_ids"], out["categories"]
    assert len(train) == 32 and len(test) == 4 and train == sorted(train) and test == sorted(test)
    assert not set(train) & set(test)
    assert set(cats) == set(train) | set(test)
    assert all(cats[n] == n.split("_")[0] for n in cats)
    train_cats = pd.Series([cats[n] for n in train]).value_counts()
    assert len(train_cats) >= 2 and (train_cats >= 2).all()  # a few categories, several images
    test_cats = [cats[n] for n in test]
    assert len(set(test_cats)) == 4 and not set(test_cats) & set(train_cats.index)  # zero-shot
    orders = []
    for subject in out["subjects"]:
        shown = []
        for ses in out["sessions"][subject]:
            table = out["trials"][subject, ses]
            assert (table["category"] == table["stim_id"].map(cats)).all()
            if ses.startswith("perceptionTraining"):
                shown.extend(table["stim_id"])
            else:
                for _, run in table.groupby("run"):
                    counts = run["stim_id"].value_counts()
                    assert set(counts.index) == set(test) and (counts == 2).all()
        assert sorted(shown) == train  # every training image exactly once
        orders.append(shown)
    assert orders[0] != orders[1]  # own presentation order per subject


def test_god_images(god):
    _, out = god
    train_dir, test_dir = out["images_dirs"]
    assert sorted(p.name for p in train_dir.iterdir()) == [f"{n}.JPEG" for n in out["train_ids"]]
    assert sorted(p.name for p in test_dir.iterdir()) == [f"{n}.JPEG" for n in out["test_ids"]]
    assert set(out["images"]) == set(out["train_ids"]) | set(out["test_ids"])
    test = set(out["test_ids"])
    _check_images(out["images"], lambda n: (test_dir if n in test else train_dir) / f"{n}.JPEG")
