"""The encoding direction (Mind Reader A.8): per-voxel r, the ceiling fraction, ROI columns, and
on the synthetic dataset: r tracks the simulator's true noise ceiling."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from fmridecode.datasets import scenes
from fmridecode.datasets import synthetic as syn
from fmridecode.io import DataError, load_indexed, read_parquet
from fmridecode.metrics.encoding import (
    encoding_figure,
    encoding_rows,
    explained_fraction,
    fit_encoding,
    pearson_columns,
    roi_columns,
    voxel_labels,
    voxel_table,
)
from fmridecode.metrics.noise_ceiling import noise_ceiling, signal_noise_sd
from fmridecode.metrics.table import validate
from fmridecode.roi import average_repeats, zscore_by_session

SEED = 7
ALPHAS = [0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]


# ------------------------------------------------------------- simulated data (also used by
# test_microstim): one tiny subject, its nsdgeneral voxel matrix and stand-in embeddings


def simulate(root: Path) -> Path:
    """One tiny synthetic subject (sub-01) under ``root``."""
    syn.simulate_stimuli(root / "stim", root / "bids", "tiny", SEED)
    syn.simulate_subject(
        "01", root / "stim", root / "bids", root / "truth" / "sub-01.npz", "tiny", 1.0, SEED
    )
    return root


def voxel_matrix(root: Path, noise_sd: float = 0.5, seed: int = 0):
    """The nsdgeneral voxel matrix the roi rule would build, from the simulator's true
    single-trial amplitudes plus white measurement noise (``noise_sd`` % BOLD, the GLM's part):
    z-scored per session, repeats averaged. Returns (X, index, trial matrix, trials, truth of
    the nsdgeneral voxels in column order)."""
    t = np.load(root / "truth" / "sub-01.npz")
    ijk = t["voxel_ijk"]  # brain voxels in C order; nsdgeneral is inside the brain mask
    anat = root / "bids" / "sub-01" / "anat"
    vis = np.asarray(nib.load(anat / "sub-01_desc-nsdgeneral_mask.nii.gz").dataobj) > 0
    keep = vis[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    rng = np.random.default_rng(seed)
    amp = t["amplitudes"][:, keep]
    amp = amp + rng.normal(0.0, noise_sd, amp.shape)
    X_trials = zscore_by_session(amp, t["trial_session"])
    trials = pd.DataFrame({"stim_id": t["trial_stim_id"].astype(str)})
    _, index = load_indexed(root / "stim" / "images.npy", mmap=True)
    split_of = dict(zip(index["stim_id"], index["split"], strict=True))
    X, vindex = average_repeats(X_trials, trials, split_of)
    truth = {k: t[k][keep] for k in ("responsive", "noise_ceiling", "roi", "floc")}
    return X, vindex, X_trials, trials, truth


def _z(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def stand_in_embeddings(root: Path):
    """Image-computable stand-ins for CLIP image embeddings (no CLIP model is trained here):
    each image's scene features (categories, shapes, colours, object count and size,
    background: what high cortex is tuned to) and the simulator's pRF input maps (contrast,
    edges, colours: what early and mid cortex see) pooled to 8 x 8, each column z-scored.

    Also the class embedding of each category, in the same space: the scene features of a
    one-object scene of that category (mean size and background), low-level part at the mean.
    Returns (embeddings, stimulus ids, class embeddings, category names).
    """
    images, index = load_indexed(root / "stim" / "images.npy")
    ids = list(index["stim_id"])
    objects = read_parquet(root / "stim" / "objects.parquet")
    F = syn.scene_features(objects, ids)
    mu, sd = F.mean(axis=0), np.where(F.std(axis=0) > 0, F.std(axis=0), 1.0)
    maps = syn.image_feature_maps(np.asarray(images))  # (N, 32 * 32, 7)
    n = len(images)
    pooled = maps.reshape(n, 8, 4, 8, 4, 7).mean(axis=(2, 4)).reshape(n, -1)
    low = _z(np.sqrt(pooled))
    emb = np.hstack([(F - mu) / sd, low]).astype(np.float32)

    cats = scenes.all_categories()
    n_cat = len(cats)
    one = np.zeros((n_cat, F.shape[1]))
    for i, (shape, colour) in enumerate(cats):
        one[i, i] = 1  # category count
        one[i, n_cat + scenes.SHAPES.index(shape)] = 1
        one[i, n_cat + len(scenes.SHAPES) + list(scenes.COLOURS).index(colour)] = 1
        one[i, n_cat + 10] = 1  # one object
        one[i, n_cat + 11] = F[:, n_cat + 11].mean()  # its radius: the mean
        one[i, n_cat + 12 :] = 1 / len(scenes.BACKGROUNDS)
    class_emb = np.hstack([(one - mu) / sd, np.zeros((n_cat, low.shape[1]))])
    names = [scenes.category_name(s, c) for s, c in cats]
    return emb, ids, class_emb.astype(np.float32), names


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("enc"))


# ------------------------------------------------------------------------------- unit tests


def test_pearson_columns_matches_corrcoef_and_flags_constant_columns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    b[:, 1] = a[:, 1] * 2 + 1
    a[:, 3] = 5.0
    r = pearson_columns(a, b)
    for j in range(3):
        assert r[j] == pytest.approx(np.corrcoef(a[:, j], b[:, j])[0, 1], abs=1e-12)
    assert r[1] == pytest.approx(1.0)
    assert np.isnan(r[3])
    with pytest.raises(DataError):
        pearson_columns(a, b[:, :3])


def test_explained_fraction_is_signed_r2_over_ceiling():
    r = np.array([0.5, -0.5, 0.3, np.nan, 0.2])
    nc = np.array([50.0, 50.0, 0.0, 40.0, 4.0])
    f = explained_fraction(r, nc)
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(-0.5)
    assert np.isnan(f[2]) and np.isnan(f[3])  # no ceiling; undefined r
    assert f[4] == pytest.approx(1.0)  # r^2 = 0.04 = NC / 100: at the ceiling


def test_encoding_rows_medians_per_roi_and_unavailable_rows():
    r = np.array([0.1, 0.2, 0.3, 0.9, np.nan])
    nc = np.array([10.0, 0.0, 36.0, 81.0, 50.0])
    columns = {
        "nsdgeneral": np.ones(5, bool),
        "early": np.array([1, 1, 1, 0, 0], bool),
        "high": np.array([0, 0, 0, 1, 1], bool),
        "floc-x": np.zeros(5, bool),
    }
    base = {"dataset": "d", "subject": "01", "mapper": "none", "feature": "clip"}
    df = validate(pd.DataFrame(encoding_rows(r, nc, columns, base, "nsdgeneral")))
    get = df.set_index(["metric", "roi"])
    assert get.loc[("encoding_r", "early"), "value"] == pytest.approx(0.2)
    assert get.loc[("encoding_r", "early"), "n"] == 3
    assert get.loc[("encoding_r", "high"), "n"] == 1  # the NaN voxel is not counted
    # early: voxels with NC > 0 are 0 (0.01 / 0.1 = 0.1) and 2 (0.09 / 0.36 = 0.25)
    frac = get.loc[("encoding_ceiling_fraction", "early")]
    assert frac["value"] == pytest.approx(0.175) and frac["n"] == 2
    assert get.loc[("encoding_ceiling_fraction", "high"), "value"] == pytest.approx(1.0)
    empty = get.loc[("encoding_r", "floc-x")]
    assert np.isnan(empty["value"]) and empty["status"].startswith("unavailable")


def test_fit_encoding_joins_by_id_and_chooses_alpha_on_training_rows():
    rng = np.random.default_rng(1)
    n, d, v = 80, 6, 12
    emb = rng.normal(size=(n, d)).astype(np.float32)
    ids = [f"s{i:03d}" for i in range(n)]
    W = rng.normal(size=(d, v))
    Y = emb @ W + 0.5 * rng.normal(size=(n, v))
    index = pd.DataFrame({"stim_id": ids, "split": ["train"] * 60 + ["test"] * 20})
    fit = fit_encoding(emb, ids, Y, index, [0.1, 10.0, 1e4], cv=4, seed=0)
    assert fit.r.shape == (v,) and np.all(fit.r > 0.8)
    assert fit.test_ids == ids[60:] and fit.n_train == 60
    # embeddings in another order give the same fit (joined by id, never by position)
    perm = rng.permutation(n)
    again = fit_encoding(emb[perm], [ids[i] for i in perm], Y, index, [0.1, 10.0, 1e4], cv=4)
    np.testing.assert_allclose(again.r, fit.r, atol=1e-5)
    np.testing.assert_array_equal(again.alpha, fit.alpha)
    # the test rows never inform alpha or weights: scrambling them changes r, not the fit
    Y2 = Y.copy()
    Y2[60:] = rng.normal(size=(20, v))
    scrambled = fit_encoding(emb, ids, Y2, index, [0.1, 10.0, 1e4], cv=4, seed=0)
    np.testing.assert_array_equal(scrambled.alpha, fit.alpha)
    np.testing.assert_allclose(scrambled.pred, fit.pred, atol=1e-5)
    with pytest.raises(DataError, match="no embedding"):
        fit_encoding(emb[:50], ids[:50], Y, index, [1.0], cv=4)


def test_roi_columns_follow_the_voxel_matrix_order(sim):
    """Columns of the nsdgeneral matrix (C order inside its mask) carry the truth's labels."""
    _, _, _, _, truth = voxel_matrix(sim)
    cols = roi_columns(sim / "bids", "01", "nsdgeneral")
    assert set(cols) == {
        "nsdgeneral",
        "early",
        "mid",
        "high",
        *(f"floc-{n}" for n in syn.FLOC.values()),
    }
    assert cols["nsdgeneral"].all() and len(cols["nsdgeneral"]) == len(truth["roi"])
    for label, name in syn.STREAMS.items():
        np.testing.assert_array_equal(cols[name], truth["roi"] == label)
    for label, name in syn.FLOC.items():
        np.testing.assert_array_equal(cols[f"floc-{name}"], truth["floc"] == label)
    labels = voxel_labels(cols)
    assert set(labels) <= {"early", "mid", "high", *(f"floc-{n}" for n in syn.FLOC.values())}
    assert (labels[truth["floc"] == 1] == "floc-round").all()
    # a fit ROI that excludes a stream: that stream has no columns there
    early = roi_columns(sim / "bids", "01", "early", ["early", "high"])
    assert early["early"].all() and not early["high"].any()


def test_encoding_r_tracks_the_true_noise_ceiling(sim, tmp_path):
    """On the synthetic data: responsive voxels are predicted, unresponsive ones are not, and
    across responsive voxels the test r rises with the simulator's true noise ceiling."""
    X, vindex, X_trials, trials, truth = voxel_matrix(sim)
    emb, ids, _, _ = stand_in_embeddings(sim)
    fit = fit_encoding(emb, ids, X, vindex, ALPHAS, cv=5, seed=0)
    resp = truth["responsive"]
    r = fit.r
    assert np.nanmedian(r[resp]) > 0.3
    assert np.nanmedian(r[resp]) > np.nanmedian(r[~resp]) + 0.25
    rho = spearmanr(r[resp], truth["noise_ceiling"][resp]).statistic
    assert rho > 0.3, rho
    # the rule's path: NC from the (noisy) trials by NSD's formula, rows per ROI
    nc = noise_ceiling(*signal_noise_sd(X_trials, trials["stim_id"]), n_avg=3)
    assert spearmanr(nc[resp], truth["noise_ceiling"][resp]).statistic > 0.5
    cols = roi_columns(sim / "bids", "01", "nsdgeneral")
    base = {"dataset": "synthetic", "subject": "01", "mapper": "none", "feature": "clip"}
    df = validate(pd.DataFrame(encoding_rows(r, nc, cols, base, "nsdgeneral")))
    assert (df["status"] == "ok").all() and len(df) == 2 * len(cols)
    frac = df[df["metric"] == "encoding_ceiling_fraction"].set_index("roi")["value"]
    assert 0.1 < frac["nsdgeneral"] < 1.5, frac
    # outputs of the rule: per-voxel table and the figure
    table = voxel_table(r, nc, fit.alpha, voxel_labels(cols), np.zeros((len(r), 3), int))
    assert len(table) == len(r) and set(table["label"]) >= {"early", "mid", "high"}
    encoding_figure(r, nc, voxel_labels(cols), tmp_path / "fig.png", "test")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
