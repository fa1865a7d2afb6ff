"""The synthetic NSD-like dataset (tiny size): files, design, determinism, truth vs BOLD."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fmridecode.datasets import scenes
from fmridecode.datasets import synthetic as syn
from fmridecode.io import DataError, load_indexed

SEED = 7


def _simulate(root: Path, subjects: list[str], snr: float = 1.0, seed: int = SEED) -> Path:
    syn.simulate_stimuli(root / "stim", root / "bids", "tiny", seed)
    for s in subjects:
        syn.simulate_subject(
            s, root / "stim", root / "bids", root / "truth" / f"sub-{s}.npz", "tiny", snr, seed
        )
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _simulate(tmp_path_factory.mktemp("tiny"), ["01", "02"])


def _func(root: Path, sub: str, ses: str, run: str, kind: str) -> Path:
    ext = "bold.nii.gz" if kind == "bold" else "events.tsv"
    return (
        root
        / "bids"
        / f"sub-{sub}"
        / f"ses-{ses}"
        / "func"
        / f"sub-{sub}_ses-{ses}_task-images_run-{run}_{ext}"
    )


def _events(root: Path, sub: str) -> pd.DataFrame:
    d = syn.design_summary("tiny")
    rows = []
    for ses in d["sessions"][sub]:
        for run in d["runs"][(sub, ses)]:
            ev = pd.read_csv(_func(root, sub, ses, run, "events"), sep="\t")
            rows.append(ev.assign(session=ses, run=run))
    return pd.concat(rows, ignore_index=True)


def _anat(root: Path, sub: str, desc: str) -> nib.Nifti1Image:
    kind = "mask" if desc in ("brain", "nsdgeneral") else "dseg"
    return nib.load(root / "bids" / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-{desc}_{kind}.nii.gz")


def test_presets_are_consistent():
    for name, preset in syn.SIZES.items():
        preset.check()
        assert preset.n_pool > 0, name
    rng = np.random.default_rng(0)
    n_vis = {n: syn.make_anatomy(p, rng).visual.sum() for n, p in syn.SIZES.items()}
    assert 200 <= n_vis["tiny"] <= 600
    assert 1500 <= n_vis["default"] <= 2500
    assert 12000 <= n_vis["large"] <= 18000
    with pytest.raises(ValueError, match="unknown dataset size"):
        syn.get_size("huge")


def test_design_summary_labels():
    d = syn.design_summary("tiny")
    assert d["subjects"] == ["01", "02"]
    assert d["sessions"]["02"] == ["01", "02"]
    assert d["runs"][("01", "02")] == ["01", "02", "03"]
    assert syn.design_summary("default", n_subjects=1)["subjects"] == ["01"]
    with pytest.raises(ValueError, match="n_subjects"):
        syn.design_summary("tiny", n_subjects=3)


def test_stimuli_files(data):
    images, index = load_indexed(data / "stim" / "images.npy")
    p = syn.SIZES["tiny"]
    assert images.shape == (p.n_images, 64, 64, 3) and images.dtype == np.uint8
    assert list(index.columns) == ["stim_id", "split", "subjects"]
    assert (index["split"] == "test").sum() == p.n_test
    assert (index["split"] == "pool").sum() == p.n_pool
    assert set(index.loc[index["split"] == "test", "subjects"]) == {"01,02"}
    assert set(index.loc[index["split"] == "pool", "subjects"]) == {""}
    train = index[index["split"] == "train"]
    assert train["subjects"].value_counts().to_dict() == {"01": p.n_train, "02": p.n_train}
    caps = pd.read_parquet(data / "stim" / "captions.parquet")
    assert list(caps.columns) == ["stim_id", "caption_idx", "caption", "kind"]
    assert (caps.groupby("stim_id").size() == 5).all() and caps["stim_id"].nunique() == p.n_images
    assert set(caps["kind"]) == {"detailed", "colour_shape", "vague"}
    cats = pd.read_parquet(data / "stim" / "categories.parquet")
    assert list(cats.columns) == ["category", "shape", "colour", "zero_shot"]
    labels = pd.read_parquet(data / "stim" / "labels.parquet").merge(index, on="stim_id")
    zs = set(cats.loc[cats["zero_shot"], "category"])
    assert not set(labels.loc[labels["split"] != "test", "category"]) & zs
    assert zs <= set(labels.loc[labels["split"] == "test", "category"])
    assert set(labels["stim_id"]) == set(index["stim_id"])
    sidecar = json.loads((data / "bids" / "task-images_bold.json").read_text())
    assert sidecar == {"TaskName": "images", "RepetitionTime": 1.6}
    assert "BIDSVersion" in json.loads((data / "bids" / "dataset_description.json").read_text())


def test_bids_files_shapes_and_labels(data):
    d = syn.design_summary("tiny")
    grids = []
    for sub in d["subjects"]:
        brain = _anat(data, sub, "brain")
        assert brain.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(brain.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
        b = np.asarray(brain.dataobj) > 0
        vis = np.asarray(_anat(data, sub, "nsdgeneral").dataobj) > 0
        streams = np.asarray(_anat(data, sub, "streams").dataobj)
        floc = np.asarray(_anat(data, sub, "floc").dataobj)
        assert _anat(data, sub, "streams").get_data_dtype() == np.int16
        assert vis.sum() > 100 and not (vis & ~b).any()
        assert set(np.unique(streams[vis])) == {1, 2, 3} and not streams[~vis].any()
        assert set(np.unique(floc[floc > 0])) == {1, 2, 3} and (streams[floc > 0] == 3).all()
        tsv = pd.read_csv(
            data / "bids" / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-floc_dseg.tsv", sep="\t"
        )
        assert list(tsv.columns) == ["index", "name"] and list(tsv["index"]) == [1, 2, 3]
        grids.append(b.shape)
        for ses in d["sessions"][sub]:
            for run in d["runs"][(sub, ses)]:
                img = nib.load(_func(data, sub, ses, run, "bold"))
                assert img.get_data_dtype() == np.float32
                assert img.shape == b.shape + (syn.SIZES["tiny"].n_vols,)
                assert img.header.get_zooms()[3] == pytest.approx(1.6)
    bold = np.asarray(img.dataobj)
    assert np.isfinite(bold).all()
    assert 700 < np.median(bold[b]) < 1300  # baseline ~1000 inside the brain
    assert grids[0] != grids[1]  # each subject its own grid


def test_design_properties(data):
    index = load_indexed(data / "stim" / "images.npy")[1]
    test_ids = set(index.loc[index["split"] == "test", "stim_id"])
    seen_train = {}
    for sub in ("01", "02"):
        ev = _events(data, sub)
        assert list(ev.columns[:3]) == ["onset", "duration", "stim_id"]
        assert (ev["duration"] == 3.0).all()
        frac = (ev["onset"] / syn.TR) % 1
        assert (np.minimum(frac, 1 - frac) > 0.05).all()  # never on the TR grid
        assert ev.groupby(["session", "run"])["onset"].apply(lambda o: o.diff().min() >= 4).all()
        per_run = ev.groupby(["session", "run"]).size()
        assert (per_run <= syn.SIZES["tiny"].slots_per_run - 2).all() and per_run.min() > 30
        runs_of = ev.assign(r=ev["session"] + ev["run"]).groupby("stim_id")["r"]
        assert (runs_of.nunique() == runs_of.size()).all()  # repeats in different runs
        test = ev[ev["stim_id"].isin(test_ids)]
        assert set(test["stim_id"]) == test_ids
        assert (test.groupby("stim_id").size() == 3).all()
        assert (test.groupby("stim_id")["session"].nunique() == 2).all()  # both sessions
        train = ev[~ev["stim_id"].isin(test_ids)]
        reps = train.groupby("stim_id").size()
        assert set(reps) == {1, 2, 3} and (reps == 3).mean() > 0.5
        own = index.loc[index["subjects"] == sub, "stim_id"]
        assert set(train["stim_id"]) == set(own)
        seen_train[sub] = set(own)
        truth = np.load(data / "truth" / f"sub-{sub}.npz")
        np.testing.assert_array_equal(truth["trial_stim_id"], ev["stim_id"].to_numpy())
        np.testing.assert_allclose(truth["trial_onset"], ev["onset"].to_numpy())
        np.testing.assert_array_equal(truth["trial_session"], ev["session"].to_numpy())
    assert not seen_train["01"] & seen_train["02"]


def test_make_design_default_spreads_test_repeats_over_sessions():
    p = syn.SIZES["default"]
    trials = syn.make_design(
        [f"t{i}" for i in range(p.n_test)],
        [f"x{i}" for i in range(p.n_train)],
        p,
        np.random.default_rng(0),
    )
    df = pd.DataFrame([t.__dict__ for t in trials])
    assert len(df) == p.n_trials()
    test = df[df["stim_id"].str.startswith("t")]
    assert (test.groupby("stim_id")["session"].nunique() == 3).all()
    assert df.groupby(["session", "run"]).size().between(55, p.slots_per_run - p.min_blank).all()


def test_truth_contents(data):
    for sub in ("01", "02"):
        t = np.load(data / "truth" / f"sub-{sub}.npz")
        keys = {
            "voxel_ijk",
            "amplitudes",
            "trial_session",
            "trial_run",
            "trial_onset",
            "trial_stim_id",
            "hrf",
            "hrf_dt",
            "hrf_peak_s",
            "responsive",
            "noise_ceiling",
            "roi",
            "tr",
            "stim_dur",
        }
        assert keys <= set(t.files)
        brain = np.asarray(_anat(data, sub, "brain").dataobj) > 0
        streams = np.asarray(_anat(data, sub, "streams").dataobj)
        np.testing.assert_array_equal(t["voxel_ijk"], np.argwhere(brain))
        np.testing.assert_array_equal(t["roi"], streams[brain])
        v = len(t["voxel_ijk"])
        amp = t["amplitudes"]
        assert amp.shape == (syn.SIZES["tiny"].n_trials(), v) and amp.dtype == np.float32
        assert np.isfinite(amp).all()
        resp = t["responsive"]
        assert not resp[t["roi"] == 0].any() and resp[t["roi"] > 0].mean() > 0.8
        assert not amp[:, ~resp].any() and (amp[:, resp].std(0) > 0).all()
        nc = t["noise_ceiling"]
        assert ((nc >= 0) & (nc <= 100)).all() and not nc[~resp].any() and nc[resp].min() > 0
        assert t["hrf"].shape == (v, round(syn.HRF_LEN / float(t["hrf_dt"])))
        assert ((t["hrf_peak_s"] >= 4) & (t["hrf_peak_s"] <= 6.5)).all()
        assert float(t["tr"]) == 1.6 and float(t["stim_dur"]) == 3.0


def test_noise_ceiling_formula():
    np.testing.assert_allclose(
        syn.noise_ceiling(np.array([1.0, 0.0, 2.0]), np.array([1.0, 0.0, 0.0])), [75.0, 0.0, 100.0]
    )
    with pytest.raises(ValueError):
        syn.noise_ceiling(np.array([-1.0]), np.array([1.0]))


def test_hrf_boxcar_peak_is_one_and_peak_time_moves():
    hrf = syn.double_gamma_hrf(np.array([4.0, 6.0]))
    box = syn.boxcar_response(hrf.astype(float))
    np.testing.assert_allclose(box.max(1), 1.0, rtol=1e-6)
    t_imp = np.argmax(hrf, axis=1) * syn.HRF_DT
    np.testing.assert_allclose(t_imp, [4.0, 6.0], atol=0.11)
    t_box = np.argmax(box, axis=1) * syn.HRF_DT
    assert 5 <= t_box[0] < t_box[1] <= 8.5


def test_floc_rois_prefer_their_family(data):
    t = np.load(data / "truth" / "sub-01.npz")
    labels = pd.read_parquet(data / "stim" / "labels.parquet")
    shape_of = labels["category"].str.split().str[1]
    amp, resp = t["amplitudes"], t["responsive"]
    for lab, family in ((1, "round"), (2, "angular")):
        has = set(labels.loc[shape_of.isin(scenes.SHAPE_FAMILIES[family]), "stim_id"])
        trial_has = np.isin(t["trial_stim_id"], list(has))
        vox = resp & (t["floc"] == lab)
        assert amp[trial_has][:, vox].mean() - amp[~trial_has][:, vox].mean() > 0.5, family


def test_determinism(data, tmp_path):
    again = _simulate(tmp_path / "same", ["01"])
    other = _simulate(tmp_path / "other", ["01"], seed=SEED + 1)
    a, b, c = (np.load(r / "truth" / "sub-01.npz") for r in (data, again, other))
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["hrf_peak_s"], c["hrf_peak_s"])
    assert (data / "truth" / "sub-01.npz").read_bytes() == (
        again / "truth" / "sub-01.npz"
    ).read_bytes()
    for name in ("images.npy", "captions.parquet"):
        assert (data / "stim" / name).read_bytes() == (again / "stim" / name).read_bytes()
    assert not np.array_equal(
        np.load(data / "stim" / "images.npy"), np.load(other / "stim" / "images.npy")
    )
    bold = [
        np.asarray(nib.load(_func(r, "01", "02", "03", "bold")).dataobj)
        for r in (data, again, other)
    ]
    np.testing.assert_array_equal(bold[0], bold[1])
    assert bold[0].shape != bold[2].shape or not np.array_equal(bold[0], bold[2])


def _ols_amplitudes(root: Path, t, voxels: np.ndarray) -> np.ndarray:
    """Single-trial least squares with the TRUE HRF (+ quadratic drift) per run."""
    brain = np.asarray(_anat(root, "01", "brain").dataobj) > 0
    response = syn.boxcar_response(t["hrf"][voxels].astype(float))
    est = np.zeros((len(t["trial_onset"]), len(voxels)))
    for ses, run in sorted(set(zip(t["trial_session"], t["trial_run"], strict=True))):
        sel = np.flatnonzero((t["trial_session"] == ses) & (t["trial_run"] == run))
        data = np.asarray(nib.load(_func(root, "01", ses, run, "bold")).dataobj)[brain][voxels]
        n_vols = data.shape[1]
        x = np.linspace(-1, 1, n_vols)
        for n in range(len(voxels)):
            cols = [
                syn.signal_timecourse(
                    t["trial_onset"][[j]], np.ones((1, 1)), response[[n]], n_vols
                )[0]
                for j in sel
            ]
            design = np.column_stack(cols + [np.ones(n_vols), x, x**2])
            y = 100 * (data[n] / data[n].mean() - 1)
            est[sel, n] = np.linalg.lstsq(design, y, rcond=None)[0][: len(sel)]
    return est


def test_bold_recovers_true_amplitudes_at_high_snr(tmp_path):
    root = _simulate(tmp_path, ["01"], snr=20.0)
    t = np.load(root / "truth" / "sub-01.npz")
    resp = np.flatnonzero(t["responsive"])
    voxels = np.concatenate([resp[t["roi"][resp] == k][:2] for k in (1, 2, 3)])
    est = _ols_amplitudes(root, t, voxels)
    for n, v in enumerate(voxels):
        assert np.corrcoef(est[:, n], t["amplitudes"][:, v])[0, 1] > 0.9
    # a voxel outside the visual mask carries noise only: its estimates track nothing
    quiet = np.flatnonzero(t["roi"] == 0)[:1]
    est_q = _ols_amplitudes(root, t, quiet)[:, 0]
    assert abs(np.corrcoef(est_q, t["amplitudes"][:, voxels[0]])[0, 1]) < 0.3
    assert np.abs(est_q).mean() < 0.3 * np.abs(t["amplitudes"][:, voxels[0]]).mean()


def test_simulate_subject_rejects_mismatched_size(data, tmp_path):
    with pytest.raises(DataError, match="size preset"):
        syn.simulate_subject(
            "01", data / "stim", tmp_path / "bids", tmp_path / "t.npz", "default", 1.0, SEED
        )
    with pytest.raises(ValueError, match="snr"):
        syn.simulate_subject(
            "01", data / "stim", tmp_path / "bids", tmp_path / "t.npz", "tiny", 0.0, SEED
        )
    assert not (tmp_path / "t.npz").exists()


def test_simulate_subjects_selects_who_is_analysed() -> None:
    """``simulate.subjects`` picks subjects of the preset; one it does not simulate is refused."""
    from fmridecode.datasets.sources import subjects_and_sessions

    def config(subjects: list[int]) -> dict:
        return {"source": {"kind": "synthetic"}, "simulate": {"size": "tiny", "subjects": subjects}}

    design = syn.design_summary("tiny")
    assert subjects_and_sessions(config([])) == (design["subjects"], design["sessions"])
    subjects, sessions = subjects_and_sessions(config([2]))
    assert subjects == ["02"] and sessions == {"02": design["sessions"]["02"]}
    with pytest.raises(DataError, match=r"simulate.subjects: subject 03 is not simulated"):
        subjects_and_sessions(config([1, 3]))
