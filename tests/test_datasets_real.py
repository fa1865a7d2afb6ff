"""Real-dataset adapters on miniature copies written in the datasets' own formats: NSD (both
entry points, NIfTI and HDF5 betas), BOLD5000 and GOD (BIDS), through the DAG's data stages."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from mini_bids import write_mini_bold5000, write_mini_god
from mini_nsd import TR, write_mini_nsd
from workflow_helpers import REPO, snakemake

from fmridecode.datasets import nsd
from fmridecode.datasets.bids import EventSpec, find_runs_templated, read_events
from fmridecode.datasets.sources import (
    bids_stimulus_index,
    nsd_image_loader,
    nsd_stimulus_index,
    session_brain_mask,
    subjects_and_sessions,
)
from fmridecode.datasets.stimuli import categories_from_ids, coco_captions, coco_ids, square
from fmridecode.io import DataError, load_indexed, read_json, read_parquet
from fmridecode.voxel_matrix import SessionBetas, write_voxel_matrix

PRESETS = REPO / "presets"


def _preset(name: str, **source) -> dict:
    cfg = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    kind = cfg["source"]["kind"]
    cfg["source"][kind].update(source)
    return cfg


def _config(cfg: dict) -> dict:
    """A full config: config.yaml overlaid with ``cfg`` (as Snakemake merges config files)."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    return merge(base, cfg)


@pytest.fixture(scope="module")
def mini_nsd(tmp_path_factory) -> dict:
    return write_mini_nsd(tmp_path_factory.mktemp("nsd") / "nsd")


@pytest.fixture(scope="module")
def mini_bold5000(tmp_path_factory) -> dict:
    return write_mini_bold5000(tmp_path_factory.mktemp("bold5000"))


@pytest.fixture(scope="module")
def mini_god(tmp_path_factory) -> dict:
    return write_mini_god(tmp_path_factory.mktemp("god"))


def _nsd_config(t: dict, **extra) -> dict:
    cfg = _preset("nsd", root=str(t["root"]), subjects=t["subjects"], trials_per_session=12)
    cfg["source"]["nsd"].update(extra)
    return _config(cfg)


# --- NSD readers -------------------------------------------------------------------------


def test_nsd_expdesign_gives_the_written_trials(mini_nsd: dict) -> None:
    layout = nsd.NSDLayout(mini_nsd["root"])
    design = nsd.read_expdesign(layout.expdesign)
    for (subj, ses), ids in mini_nsd["trials"].items():
        t = nsd.session_trials(design, subj, ses, 12)
        assert t["stim_id"].tolist() == [f"nsd{k + 1:05d}" for k in ids]
        assert t["nsd_id"].tolist() == ids.tolist()
        assert t["session"].unique().tolist() == [f"{ses:02d}"]
        assert t["run"].tolist() == [1] * 6 + [2] * 6  # from stimpattern
    assert set(design.sharedix) == set(mini_nsd["shared"])
    with pytest.raises(DataError, match="fewer than 4 sessions of 12"):
        nsd.session_trials(design, 1, 4, 12)


def test_nsd_sessions_on_disk_and_a_missing_one(mini_nsd: dict) -> None:
    subjects, sessions = subjects_and_sessions(_nsd_config(mini_nsd))
    assert subjects == ["01", "02"] and sessions["01"] == ["01", "02", "03"]
    _, sessions = subjects_and_sessions(_nsd_config(mini_nsd, entry="timeseries"))
    assert sessions["02"] == ["01", "02", "03"]
    with pytest.raises(DataError, match=r"betas_session07\.nii\.gz: session 7 of subject 01"):
        subjects_and_sessions(_nsd_config(mini_nsd, sessions=[1, 7]))


def test_nsd_stimuli_split_captions_and_lazy_images(mini_nsd: dict) -> None:
    config = _nsd_config(mini_nsd)
    _, sessions = subjects_and_sessions(config)
    index = nsd_stimulus_index(config, sessions)
    shown = {int(k) for ids in mini_nsd["trials"].values() for k in ids}
    assert set(index["nsd_id"]) == shown
    test = set(index.loc[index["split"] == "test", "nsd_id"])
    assert test == shown & set(mini_nsd["shared"])
    shared_row = index[index["nsd_id"] == 0].iloc[0]
    assert shared_row["subjects"] == "01,02"
    assert (index["coco_id"] == mini_nsd["coco"][index["nsd_id"]]).all()
    load = nsd_image_loader(nsd.NSDLayout(mini_nsd["root"]).stimuli)
    ids = ["nsd00007", "nsd00002", "nsd00007"]  # unsorted, repeated: h5py needs neither
    for got, k in zip(load(ids), [6, 1, 6], strict=True):
        np.testing.assert_array_equal(got, mini_nsd["images"][k])
    coco_of = dict(zip(index["stim_id"], index["coco_id"], strict=True))
    files = [mini_nsd["root"] / f"annotations/captions_{p}2017.json" for p in ("train", "val")]
    caps = coco_captions(files, coco_of)
    assert caps.groupby("stim_id").size().eq(5).all() and set(caps["stim_id"]) == set(coco_of)
    first = caps[caps["stim_id"] == index["stim_id"].iloc[0]]
    assert first["caption"].tolist() == mini_nsd["captions"][int(index["coco_id"].iloc[0])]
    with pytest.raises(DataError, match=r"nope\.json: COCO caption file not found"):
        coco_captions([mini_nsd["root"] / "nope.json"], coco_of)


def test_nsd_design_files_give_the_onsets(mini_nsd: dict) -> None:
    layout = nsd.NSDLayout(mini_nsd["root"])
    ev = nsd.design_events(layout.design(1, 2, 2), TR)
    onsets, kids = mini_nsd["events"][(1, 2, 2)]
    np.testing.assert_allclose(ev["onset"], onsets)
    assert ev["stim_id"].tolist() == [f"nsd{k:05d}" for k in kids]
    bad = mini_nsd["root"] / "bad_design.tsv"
    bad.write_text("0\n1.5\nx\n")
    with pytest.raises(DataError, match="bad_design.tsv: expected one integer column"):
        nsd.read_design_tsv(bad)


# --- BIDS readers (BOLD5000, GOD) ----------------------------------------------------------


def test_bold5000_pairs_derivative_bold_with_raw_events(mini_bold5000: dict) -> None:
    t = mini_bold5000
    cfg = _config(_preset("bold5000", root=str(t["bids"])))
    runs = find_runs_templated(
        t["bids"], "CSI1", "01", "5000scenes", bold=cfg["source"]["bids"]["bold"],
        spec=EventSpec("ImgName"),
    )  # fmt: skip
    assert [r.run for r in runs] == [1, 2]
    assert "derivatives/fmriprep" in str(runs[0].bold_path)
    assert runs[0].events_path.name == "sub-CSI1_ses-01_task-5000scenes_run-01_events.tsv"
    ev = read_events(runs[1].events_path, runs[1].events)
    truth = t["trials"][("CSI1", "01")]
    assert ev["stim_id"].tolist() == truth.loc[truth["run"] == 2, "stim_id"].tolist()
    _, sessions = subjects_and_sessions(cfg)
    assert sessions == t["sessions"]
    index = bids_stimulus_index(cfg, sessions)
    assert sorted(index.loc[index["split"] == "test", "stim_id"]) == t["test_ids"]
    coco = coco_ids(index["stim_id"], cfg["source"]["bids"]["coco_id_pattern"])
    assert set(coco) == {s for s in index["stim_id"] if s.startswith("COCO_")}
    caps = coco_captions([t["captions"]], coco)
    for stim, texts in t["captions_by_id"].items():
        if stim in coco:
            assert caps.loc[caps["stim_id"] == stim, "caption"].tolist() == texts


def test_god_keeps_stimulus_blocks_and_marks_zero_shot_categories(mini_god: dict) -> None:
    t = mini_god
    cfg = _config(_preset("god", root=str(t["bids"])))
    _, sessions = subjects_and_sessions(cfg)
    assert {s: sorted(v) for s, v in sessions.items()} == {
        s: sorted(v) for s, v in t["sessions"].items()
    }
    index = bids_stimulus_index(cfg, sessions)
    assert sorted(index.loc[index["split"] == "test", "stim_id"]) == sorted(t["test_ids"])
    assert sorted(index.loc[index["split"] == "train", "stim_id"]) == sorted(t["train_ids"])
    labels, categories = categories_from_ids(index, cfg["source"]["bids"]["category_pattern"])
    assert dict(zip(labels["stim_id"], labels["category"], strict=True)) == t["categories"]
    zero_shot = set(categories.loc[categories["zero_shot"], "category"])
    assert zero_shot == {t["categories"][s] for s in t["test_ids"]}
    runs = find_runs_templated(
        t["bids"], "01", "perceptionTest01", "perception",
        spec=EventSpec("stimulus_name", "event_type", ("1",)),
    )  # fmt: skip
    ev = read_events(runs[0].events_path, runs[0].events)
    truth = t["trials"][("01", "perceptionTest01")]
    assert ev["stim_id"].tolist() == truth.loc[truth["run"] == 1, "stim_id"].tolist()  # no rests


# --- the DAG's data stages on each dataset ------------------------------------------------

#: the miniature GOD's brain mask (ds001246 ships none; the preset computes one)
GOD_MASK = "derivatives/preproc/sub-{subject}/sub-{subject}_desc-brain_mask.nii.gz"
GLM_LIGHT = {"types": ["A", "B"], "use_type": "B", "wantglmdenoise": False, "wantfracridge": False}


def _run_data(tmp_path: Path, cfg: dict, preset: str, target: str = "data") -> Path:
    cfg = {**cfg, "results": str(tmp_path / "results")}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, target, configfiles=[PRESETS / f"{preset}.yaml", tmp_path / "paths.yaml"])
    return tmp_path / "results" / cfg["dataset"]


def _expected_nsd_rows(t: dict, subj: int, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The voxel matrix rows recomputed from the written int16 betas (x / 300, z-scored per
    session by its training trials, averaged over repeats)."""
    rows: dict[str, list] = {}
    for ses in range(1, t["sessions"] + 1):
        x = t["betas"][(subj, ses)][mask].T.astype(np.float64) / 300.0
        ids = t["trials"][(subj, ses)]
        train = ~np.isin(ids, t["shared"])
        z = (x - x[train].mean(0)) / x[train].std(0)
        for k, row in zip(ids, z, strict=True):
            rows.setdefault(f"nsd{k + 1:05d}", []).append(row)
    return {k: np.mean(v, axis=0) for k, v in rows.items()}


#: the whole DAG at its lightest: ridge, the tiny generator, a few epochs
LIGHT = {
    "embed": {"train": {"epochs": 3, "max_minutes": 1.0, "batch_size": 32}},
    "fit": {"roi": "nsdgeneral", "mappers": ["ridge"], "ridge": {"cv_folds": 3}},
    "generate": {
        "generators": ["tiny"],
        "mappers": ["ridge"],
        "tiny": {"image_size": 16, "epochs": 2, "steps": 4, "batch_size": 32},
        "noise_sensitivity": {"amplitudes": []},
        "truth": False,
    },
    "metrics": {"supervision_ablation": [], "retrieval_examples": 0, "pool": 4,
                "pool_repeats": 2, "n_way": [2], "category_decoding": {"epochs": 5}},
}  # fmt: skip


@pytest.mark.workflow
def test_nsd_released_betas_through_the_whole_dag(tmp_path: Path, mini_nsd: dict) -> None:
    """The data stages checked against what was written; then the same DAG as the synthetic
    run to the metric table and the report, without the simulator's truth metrics and the
    anat-label analyses, and with unavailable rows where NSD has no category labels."""
    t = mini_nsd
    cfg = {
        "dataset": "nsd-mini",
        "source": {"image_size": 16, "nsd": {"root": str(t["root"]), "subjects": [1, 2],
                                             "trials_per_session": 12}},
        "roi": {"sets": ["nsdgeneral", "V1", "FFA"]},
        **LIGHT,
    }  # fmt: skip
    out = _run_data(tmp_path / "nifti", cfg, "nsd", target="all")
    metrics = read_parquet(out / "metrics.parquet")
    assert (out / "report/report.html").stat().st_size > 0
    assert not {"glm_recovery_r", "noise_ceiling", "encoding_r", "microstim_shift"} & set(
        metrics["metric"]
    )
    r1 = metrics.query("metric == 'recall_at_k' and k == 1 and pool == 'all'")
    assert set(r1["subject"]) == {"01", "02"} and (r1["status"] == "ok").all()
    zero_shot = metrics[metrics["metric"] == "zero_shot_top1"]
    assert len(zero_shot) and (zero_shot["status"].str.contains("no test image shows")).all()
    # COCO's object categories (instances files) as labels: category decoding is scored
    auc = metrics.query("metric == 'category_auc' and category == 'mean'")
    assert set(auc["feature"]) == {"fmri", "clip", "mapped_clip"}
    assert (auc["status"] == "ok").all() and auc["value"].between(0, 1).all()
    labels = read_parquet(out / "stimuli/labels.parquet")
    shown = read_parquet(out / "stimuli/images.index.parquet")
    coco = dict(zip(shown["stim_id"], shown["coco_id"], strict=True))
    for stim, group in labels.groupby("stim_id"):
        assert set(group["category"]) == t["labels"][coco[stim]]
    assert metrics.query("metric == 'pixcorr' and mapper == 'ridge'")["value"].notna().all()
    rois = t["rois"]
    selections = {
        "nsdgeneral": rois["nsdgeneral"] == 1,
        "V1": np.isin(rois["prf-visualrois"], [1, 2]),
        "FFA": np.isin(rois["floc-faces"], [2, 3]),
    }
    for subj in (1, 2):
        for roi, sel in selections.items():
            folder = out / f"roi/sub-{subj:02d}/{roi}"
            X, index = load_indexed(folder / "voxels.npy")
            assert X.dtype == np.float32 and X.shape[1] == sel.sum()
            mask = nib.load(folder / "mask.nii.gz")
            np.testing.assert_array_equal(np.asarray(mask.dataobj) > 0, sel)
            np.testing.assert_allclose(mask.affine, t["affine"])
            coords = read_parquet(folder / "coords.parquet")
            np.testing.assert_array_equal(coords[["i", "j", "k"]], np.argwhere(sel))
            expected = _expected_nsd_rows(t, subj, sel)
            assert sorted(index["stim_id"]) == sorted(expected)
            for i, stim in enumerate(index["stim_id"]):
                np.testing.assert_allclose(X[i], expected[stim], atol=2e-5)
            n_trials = np.concatenate([t["trials"][(subj, s)] for s in (1, 2, 3)])
            test = index["split"] == "test"
            assert set(index.loc[test, "stim_id"]) == {
                f"nsd{k + 1:05d}" for k in np.intersect1d(n_trials, t["shared"])
            }
            assert index["n_repeats"].sum() == len(n_trials) == 36
    # the same matrix from the HDF5 variant of the betas (what format: hdf5 reads)
    layout = nsd.NSDLayout(t["root"], fmt="hdf5")
    trials = read_parquet(out / "nsd/sub-01/trials.parquet")
    images = read_parquet(out / "stimuli/images.index.parquet")
    sources = [
        SessionBetas(
            layout.betas_file(1, s), trials[trials["session"] == f"{s:02d}"], "hdf5", 300.0
        )
        for s in (1, 2, 3)
    ]
    mask = nib.load(out / "roi/sub-01/V1/mask.nii.gz")
    h5 = tmp_path / "h5"
    write_voxel_matrix(
        sources, mask, dict(zip(images["stim_id"], images["split"], strict=True)),
        h5 / "voxels.npy", h5 / "mask.nii.gz", h5 / "coords.parquet", progress=False,
    )  # fmt: skip
    X, index = load_indexed(out / "roi/sub-01/V1/voxels.npy")
    X_h5, index_h5 = load_indexed(h5 / "voxels.npy")
    np.testing.assert_array_equal(X, X_h5)
    assert index.equals(index_h5)
    images, img_index = load_indexed(out / "stimuli/images.npy")
    assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8
    assert set(img_index["split"]) == {"train", "test"}
    caps = read_parquet(out / "stimuli/captions.parquet")
    assert caps.groupby("stim_id").size().eq(5).all()
    assert read_json(out / "roi/sub-01/nsdgeneral/quality.json")["voxels_dropped_nonfinite"] == 0


@pytest.mark.workflow
def test_nsd_time_series_through_the_glm_stage(tmp_path: Path, mini_nsd: dict) -> None:
    t = mini_nsd
    cfg = {
        "dataset": "nsd-mini-ts",
        "source": {"image_size": 16, "nsd": {"root": str(t["root"]), "subjects": [1],
                                             "entry": "timeseries", "trials_per_session": 12}},
        "glm": GLM_LIGHT,
        "roi": {"sets": ["nsdgeneral"]},
    }  # fmt: skip
    out = _run_data(tmp_path, cfg, "nsd")
    for ses in (1, 2, 3):
        trials = read_parquet(out / f"glm/sub-01/ses-{ses:02d}/trials.parquet")
        assert trials["stim_id"].tolist() == [f"nsd{k + 1:05d}" for k in t["trials"][(1, ses)]]
        betas = nib.load(out / f"glm/sub-01/ses-{ses:02d}/betas_type-B.nii.gz")
        assert betas.shape == t["shape"] + (12,)
    X, index = load_indexed(out / "roi/sub-01/nsdgeneral/voxels.npy")
    assert X.shape == (len(index), int((t["rois"]["nsdgeneral"] == 1).sum()))
    assert index["n_repeats"].sum() == 36 and np.isfinite(X).all()
    train = X[(index["split"] == "train").to_numpy()]
    assert abs(train.mean()) < 0.5  # z-scored by session on training trials


@pytest.mark.workflow
def test_bold5000_and_god_through_the_glm_stage(tmp_path: Path, mini_bold5000, mini_god) -> None:
    b, g = mini_bold5000, mini_god
    cfg = {
        "dataset": "bold5000-mini",
        "source": {"image_size": 16, "bids": {"root": str(b["bids"]), "subjects": ["CSI2"]}},
        "glm": GLM_LIGHT,
        "roi": {"sets": ["visual", "PPA"]},
    }
    out = _run_data(tmp_path / "bold5000", cfg, "bold5000")  # one subject: the other's the same
    assert not (out / "glm/sub-CSI1").exists()
    for subj in ["CSI2"]:
        sessions = b["sessions"][subj]
        for ses in sessions:
            trials = read_parquet(out / f"glm/sub-{subj}/ses-{ses}/trials.parquet")
            truth = b["trials"][(subj, ses)]
            assert trials["stim_id"].tolist() == truth["stim_id"].tolist()
        X, index = load_indexed(out / f"roi/sub-{subj}/PPA/voxels.npy")
        ppa = b["rois"]["LHPPA"] | b["rois"]["RHPPA"]
        assert X.shape[1] == ppa.sum() and np.isfinite(X).all()
        assert sorted(index.loc[index["split"] == "test", "stim_id"]) == b["test_ids"]
        n_ses = len(sessions)
        assert (index.loc[index["split"] == "test", "n_repeats"] == n_ses).all()
    images, img_index = load_indexed(out / "stimuli/images.npy")
    for i, stim in enumerate(img_index["stim_id"]):  # centre-cropped, resized to 16
        np.testing.assert_array_equal(images[i], square(b["images"][stim], 16))
    caps = read_parquet(out / "stimuli/captions.parquet")
    assert set(caps["stim_id"]) == {s for s in img_index["stim_id"] if s.startswith("COCO_")}

    cfg = {
        "dataset": "god-mini",
        "source": {
            "image_size": 16,
            "bids": {
                "root": str(g["bids"]),
                "subjects": ["01"],
                "brain_mask": GOD_MASK,
            },
        },
        "glm": {**GLM_LIGHT, "stim_dur": 9.0},
        "roi": {"sets": ["VC", "V1"]},
    }
    out = _run_data(tmp_path / "god", cfg, "god")
    for subj in ["01"]:
        X, index = load_indexed(out / f"roi/sub-{subj}/V1/voxels.npy")
        assert X.shape[1] == (g["rois"]["LH_V1"] | g["rois"]["RH_V1"]).sum()
        test = index[index["split"] == "test"]
        assert sorted(test["stim_id"]) == sorted(g["test_ids"])
        assert (test["n_repeats"] > 1).all() and (
            index.loc[index["split"] == "train", "n_repeats"] == 1
        ).all()
        # z-scored per session by its training trials: GOD's training images are seen once,
        # so each training session's rows have mean 0 and SD 1 per voxel
        for ses in ("perceptionTraining01", "perceptionTraining02"):
            rows = X[(index["session"] == ses).to_numpy()]
            assert len(rows) == 16
            np.testing.assert_allclose(rows.mean(0), 0.0, atol=1e-4)
            np.testing.assert_allclose(rows.std(0), 1.0, atol=1e-3)
    categories = read_parquet(out / "stimuli/categories.parquet")
    assert set(categories.loc[categories["zero_shot"], "category"]) == {
        g["categories"][s] for s in g["test_ids"]
    }


@pytest.mark.workflow
def test_nsd_bad_inputs_stop_with_the_file_named(tmp_path: Path, mini_nsd: dict) -> None:
    """A missing session, a stimulus without an image, a mask on another grid."""
    broken = tmp_path / "nsd"
    shutil.copytree(mini_nsd["root"], broken)
    cfg = {
        "dataset": "nsd-bad",
        "results": str(tmp_path / "results"),
        "source": {"image_size": 16, "nsd": {"root": str(broken), "subjects": [1],
                                             "trials_per_session": 12, "sessions": [1, 5]}},
        "roi": {"sets": ["nsdgeneral"]},
    }  # fmt: skip
    paths = tmp_path / "paths.yaml"
    paths.write_text(yaml.safe_dump(cfg))
    files = [PRESETS / "nsd.yaml", paths]
    proc = snakemake(tmp_path, "data", "-n", configfiles=files, check=False)
    assert proc.returncode != 0
    assert "betas_session05.nii.gz: session 5 of subject 01 not found" in proc.stdout + proc.stderr
    cfg["source"]["nsd"]["sessions"] = None
    paths.write_text(yaml.safe_dump(cfg))
    roi = broken / "nsddata/ppdata/subj01/func1pt8mm/roi/nsdgeneral.nii.gz"
    img = nib.load(roi)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([2.0, 2.0, 2.0, 1.0])), roi)
    proc = snakemake(tmp_path, "data", configfiles=files, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/nsd-bad/logs/roi/sub-01_nsdgeneral.log").read_text()
    assert "betas_session01.nii.gz: voxel grid differs from the ROI mask" in log
    assert not (tmp_path / "results/nsd-bad/roi/sub-01/nsdgeneral/voxels.npy").exists()


def test_bold5000_stimulus_without_an_image_file_is_named(mini_bold5000: dict) -> None:
    """An events row whose stimulus has no image file stops with the folders looked in."""
    from fmridecode.datasets.stimuli import image_file_loader

    t = mini_bold5000
    dirs = [t["stimuli"] / d for d in ("COCO", "ImageNet", "Scene")]
    load = image_file_loader(dirs)
    name = sorted(t["images"])[0]
    np.testing.assert_array_equal(load([name])[0], t["images"][name])
    with pytest.raises(DataError, match=r"stimulus 'missing\.jpg': no image file missing\.jpg in"):
        load(["missing.jpg"])
    broken = dirs[0] / "COCO_train2014_000000000001.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"COCO_train2014_000000000001\.jpg: cannot read the image"):
        load([broken.name])
    broken.unlink()


def test_nsd_coco_instances_give_category_labels(mini_nsd: dict) -> None:
    from fmridecode.datasets.stimuli import coco_categories

    config = _nsd_config(mini_nsd)
    _, sessions = subjects_and_sessions(config)
    index = nsd_stimulus_index(config, sessions)
    coco_of = dict(zip(index["stim_id"], index["coco_id"], strict=True))
    files = [mini_nsd["root"] / f"annotations/instances_{p}2017.json" for p in ("train", "val")]
    labels, categories = coco_categories(files, coco_of, index)
    got = labels.groupby("stim_id")["category"].agg(set).to_dict()
    assert got == {s: mini_nsd["labels"][c] for s, c in coco_of.items()}
    test_only = set(labels["category"]) - set(
        labels.loc[
            labels["stim_id"].isin(index.loc[index["split"] == "train", "stim_id"]), "category"
        ]
    )
    assert set(categories.loc[categories["zero_shot"], "category"]) == test_only
    with pytest.raises(DataError, match=r"captions_train2017\.json: not a COCO instances file"):
        coco_categories([mini_nsd["root"] / "annotations/captions_train2017.json"], coco_of, index)


def test_god_without_a_brain_mask_gets_one_from_the_mean_epi(tmp_path: Path, mini_god) -> None:
    """presets/god.yaml sets no brain mask (ds001246 ships none): the glm stage computes one
    from the session's first run (nilearn's compute_epi_mask) - on a volume big enough to
    have a brain; the miniature's 8 x 8 x 6 is not, and the error says what to set."""
    from fmridecode.datasets.bids import Run
    from fmridecode.glm.fit import epi_mask

    cfg = _config(_preset("god", root=str(mini_god["bids"])))
    assert session_brain_mask(cfg, "01", "perceptionTest01", tmp_path) is None
    shape = (24, 24, 16)
    ijk = np.indices(shape).transpose(1, 2, 3, 0) - np.array(shape) / 2
    brain = ((ijk / np.array([9, 9, 6])) ** 2).sum(-1) < 1  # an ellipsoid
    rng = np.random.default_rng(0)
    data = np.where(brain[..., None], 1000.0, 5.0) + rng.normal(0, 5, shape + (10,))
    bold = tmp_path / "sub-01_task-x_run-1_bold.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([3, 3, 3, 1.0])), bold)
    mask = np.asarray(epi_mask(Run("01", None, "x", 1, bold, bold)).dataobj) > 0
    assert (mask == brain).mean() > 0.97
    tiny = find_runs_templated(mini_god["bids"], "01", "perceptionTest01", "perception")[0]
    with pytest.raises(DataError, match="no brain found in its mean EPI.*source.bids.brain_mask"):
        epi_mask(tiny)


def test_nsd_and_god_stimulus_sets(mini_nsd: dict, mini_god: dict) -> None:
    """What rule prepare_stimuli writes: NSD with COCO captions and object labels (none
    without instances files), GOD with its synsets and zero-shot test categories."""
    from fmridecode.datasets.sources import stimulus_set
    from fmridecode.metrics.categories import no_labels_rows

    config = _nsd_config(mini_nsd)
    _, sessions = subjects_and_sessions(config)
    nsd_set = stimulus_set(config, sessions)
    assert set(nsd_set["captions"]["stim_id"]) == set(nsd_set["index"]["stim_id"])
    assert len(nsd_set["labels"]) and not nsd_set["categories"]["zero_shot"].all()
    first = nsd_set["index"].iloc[:2]
    images = nsd_set["load"](list(first["stim_id"]))
    np.testing.assert_array_equal(images[1], mini_nsd["images"][first["nsd_id"].iloc[1]])
    config["source"]["nsd"]["instances"] = []
    bare = stimulus_set(config, sessions)
    assert bare["labels"].empty and bare["categories"].empty
    rows = no_labels_rows({"dataset": "d", "subject": "01"}, ["ridge"], "unavailable: x")
    assert [(r["mapper"], r["feature"]) for r in rows] == [
        ("none", "fmri"), ("none", "clip"), ("ridge", "mapped_clip")
    ]  # fmt: skip
    assert all(np.isnan(r["value"]) and r["status"] == "unavailable: x" for r in rows)
    god = _config(_preset("god", root=str(mini_god["bids"])))
    _, sessions = subjects_and_sessions(god)
    god_set = stimulus_set(god, sessions)
    assert god_set["captions"].empty
    zero_shot = set(god_set["categories"].loc[god_set["categories"]["zero_shot"], "category"])
    assert zero_shot == {mini_god["categories"][s] for s in mini_god["test_ids"]}
