"""Metrics against hand-computed cases and brute-force references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmridecode.io import DataError
from fmridecode.metrics.glm_recovery import glm_recovery
from fmridecode.metrics.identification import two_way_identification
from fmridecode.metrics.image import pixcorr, pixcorr_each, resize, ssim, ssim_each
from fmridecode.metrics.prediction import cosine_scores, prediction_rows, r2_score
from fmridecode.metrics.retrieval import ranks, recall_at_k, retrieval_rows
from fmridecode.metrics.table import METRICS, validate

# -- retrieval -------------------------------------------------------------------------------

CANDS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])


def test_recall_hand_case_and_cosine():
    # cos with c0..c3: p0 -> .995, .0995, .777, -.995 ; p1 = (0, 3) -> 0, 1, .707, 0
    pred = np.array([[1.0, 0.1], [0.0, 3.0]])
    assert ranks(pred, CANDS, np.array([2, 1])).tolist() == [1, 0]
    assert recall_at_k(pred, CANDS, np.array([2, 1]), ks=(1, 2)) == {1: 0.5, 2: 1.0}
    # cosine: scaling a query or a candidate changes nothing
    assert recall_at_k(pred * 7, CANDS * [[1], [9], [0.1], [2]], np.array([2, 1]), ks=(1,)) == {
        1: 0.5
    }


def test_recall_ties_are_pessimistic():
    cands = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # 0 and 1 have the same direction
    pred = np.array([[1.0, 0.0]])
    assert ranks(pred, cands, np.array([1])).tolist() == [1]
    assert recall_at_k(pred, cands, np.array([1]), ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_recall_matches_argsort_reference():
    rng = np.random.default_rng(0)
    pred, cands = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    true = rng.integers(0, 50, size=30)
    got = recall_at_k(pred, cands, true, ks=(1, 5, 10))
    sim = (pred / np.linalg.norm(pred, axis=1, keepdims=True)) @ (
        cands / np.linalg.norm(cands, axis=1, keepdims=True)
    ).T
    order = np.argsort(-sim, axis=1)
    rank = np.array([np.flatnonzero(order[i] == true[i])[0] for i in range(30)])
    assert got == {k: float(np.mean(rank < k)) for k in (1, 5, 10)}


def test_retrieval_rows_both_directions():
    # forward: p0 -> c0 (.981) beats c1 (.614): hit; p1 -> c0 (.995) beats its c1 (.534): miss.
    # backward: c0 -> p1 (.995) beats its p0 (.981): miss; c1 -> p0 (.614) beats its p1: miss.
    pred = np.array([[1.0, 0.2], [1.0, 0.1]])
    cands = np.array([[1.0, 0.0], [0.5, 1.0], [-1.0, 0.0]])
    rows = retrieval_rows(pred, cands, np.array([0, 1]), target="image", ks=(1, 2))
    df = validate(pd.DataFrame(rows).assign(dataset="d", subject="01", mapper="ridge"))
    recall = df[df["metric"] == "recall_at_k"]
    got = {(r.direction, r.k): (r.value, r.chance, r.n) for r in recall.itertuples()}
    assert got == {
        ("forward", 1): (0.5, 1 / 3, 2),
        ("forward", 2): (1.0, 2 / 3, 2),
        ("backward", 1): (0.0, 0.5, 2),
        ("backward", 2): (1.0, 1.0, 2),
    }
    assert set(df["metric"]) == {"recall_at_k", "mean_recall"} and set(df["pool"]) == {"all"}
    # mean recall: the mean over k of each direction's recall and chance
    mean = df[df["metric"] == "mean_recall"].set_index("direction")
    assert mean.loc["forward", "value"] == pytest.approx(0.75)
    assert mean.loc["forward", "chance"] == pytest.approx(0.5)
    assert mean.loc["backward", "value"] == pytest.approx(0.5)
    # default true_index: candidate i belongs to prediction i
    one_k = retrieval_rows(pred, cands[:2], target="text", ks=(1,))
    assert [r for r in one_k if r["metric"] == "recall_at_k"] == [
        {**r, "target": "text", "chance": 0.5}
        for r in rows
        if r["metric"] == "recall_at_k" and r["k"] == 1
    ]
    assert {"recall_at_k", "mean_recall"} <= set(METRICS)


def test_mean_recall_is_unavailable_when_its_pooled_recalls_are():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(10, 4))
    rows = retrieval_rows(pred, pred, target="image", ks=(1, 5), pool=300)
    pooled = [r for r in rows if r["metric"] == "mean_recall" and r["pool"] == "300"]
    assert len(pooled) == 2 and all(np.isnan(r["value"]) and "status" in r for r in pooled)
    whole = [r for r in rows if r["metric"] == "mean_recall" and r["pool"] == "all"]
    assert [r["value"] for r in whole] == [1.0, 1.0]  # perfect predictions


def test_prediction_r2_and_cosine_hand_cases():
    truth = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert r2_score(truth, truth) == pytest.approx(1.0)
    # predicting each dimension's test mean scores 0
    assert r2_score(np.tile(truth.mean(axis=0), (3, 1)), truth) == pytest.approx(0.0)
    # hand case, dimension 0: truth (1, 0, 1), mean 2/3, ss_tot 2/3; pred (1, 1, 1): ss_res 1
    pred = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert r2_score(pred, truth) == pytest.approx(np.mean([1 - 1 / (2 / 3), 1.0]))
    own, others = cosine_scores(truth, truth)
    # cosines between distinct rows: (e0, e1) 0, (e0, e0+e1) and (e1, e0+e1) 1/sqrt 2
    assert own == pytest.approx(1.0)
    assert others == pytest.approx((0 + 2 * 2**-0.5) * 2 / 6)
    rows = prediction_rows(truth, truth, "image")
    assert {r["metric"] for r in rows} == {"prediction_r2", "prediction_cosine"}
    assert {"prediction_r2", "prediction_cosine"} <= set(METRICS)
    with pytest.raises(DataError):
        r2_score(truth[:, :1], truth)


def test_pooled_recall_matches_a_loop_over_the_draws():
    """MindEye's random-pool retrieval: the seeded draws redone by hand with recall_at_k."""
    from fmridecode.metrics.retrieval import pooled_recall

    rng = np.random.default_rng(7)
    cand = rng.normal(size=(40, 6))
    pred = cand + 1.0 * rng.normal(size=(40, 6))
    got = pooled_recall(pred, cand, (1, 5), pool=12, repeats=4, seed=3)
    draws = np.random.default_rng(3)
    expected = {"forward": {1: 0.0, 5: 0.0}, "backward": {1: 0.0, 5: 0.0}}
    for _ in range(4):
        idx = draws.choice(40, size=12, replace=False)
        own = np.arange(12)
        for k, v in recall_at_k(pred[idx], cand[idx], own, (1, 5)).items():
            expected["forward"][k] += v / 4
        for k, v in recall_at_k(cand[idx], pred[idx], own, (1, 5)).items():
            expected["backward"][k] += v / 4
    for d in expected:
        for k in (1, 5):
            assert got[d][k] == pytest.approx(expected[d][k], abs=1e-12)
    # the whole set as the pool is the plain recall
    whole = pooled_recall(pred, cand, (1,), pool=40, repeats=1)
    assert whole["forward"][1] == recall_at_k(pred, cand, np.arange(40), (1,))[1]


def test_pooled_rows_and_small_test_sets():
    rng = np.random.default_rng(8)
    cand = rng.normal(size=(30, 5))
    rows = retrieval_rows(cand, cand, target="image", ks=(1,), pool=20, pool_repeats=3)
    pooled = [r for r in rows if r["pool"] == "20" and r["metric"] == "recall_at_k"]
    assert len(pooled) == 2 and all(r["value"] == 1.0 and r["chance"] == 1 / 20 for r in pooled)
    small = retrieval_rows(cand, cand, target="image", ks=(1, 5), pool=300)
    missing = [r for r in small if r["pool"] == "300" and r["metric"] == "recall_at_k"]
    assert len(missing) == 4 and all(np.isnan(r["value"]) for r in missing)
    assert missing[0]["status"] == "unavailable: 30 test items < pool 300"


def test_retrieval_errors():
    with pytest.raises(DataError, match="rows \\[1\\] are zero"):
        recall_at_k(np.array([[1.0, 0.0], [0.0, 0.0]]), CANDS, np.array([0, 1]))
    with pytest.raises(DataError, match="outside"):
        recall_at_k(np.array([[1.0, 0.0]]), CANDS, np.array([4]))


# -- two-way identification ------------------------------------------------------------------


def test_two_way_identification_matches_double_loop():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(12, 20))
    pred = true + 1.5 * rng.normal(size=(12, 20))
    expected = np.mean(
        [
            np.mean(
                [
                    np.corrcoef(pred[i], true[i])[0, 1] > np.corrcoef(pred[i], true[j])[0, 1]
                    for j in range(12)
                    if j != i
                ]
            )
            for i in range(12)
        ]
    )
    got = two_way_identification(pred, true)
    assert 0.5 < got < 1.0
    assert got == pytest.approx(expected, abs=1e-12)


def test_two_way_identification_extremes_and_errors():
    true = np.random.default_rng(2).normal(size=(5, 6))
    assert two_way_identification(true * 3 + 1, true) == 1.0  # r is scale/shift invariant
    assert two_way_identification(-true, true) == 0.0
    # identical targets tie with the true one: ties count as failures
    assert two_way_identification(np.tile(true[:1], (2, 1)), np.tile(true[:1], (2, 1))) == 0.0
    with pytest.raises(DataError, match="constant"):
        two_way_identification(np.ones((3, 4)), true[:3, :4])


def test_n_way_identification_matches_a_brute_force_loop():
    """Same seeded foil draws, scored by a plain loop over items, repeats and foils."""
    from fmridecode.metrics.identification import n_way_identification

    rng = np.random.default_rng(4)
    true = rng.normal(size=(15, 10))
    pred = true + 1.2 * rng.normal(size=(15, 10))
    for n, repeats in ((2, 7), (5, 4), (15, 3)):
        draws = np.random.default_rng(9)
        hits = 0
        for i in range(15):
            others = np.delete(np.arange(15), i)
            foils = draws.permuted(np.tile(others, (repeats, 1)), axis=1)[:, : n - 1]
            own = np.corrcoef(pred[i], true[i])[0, 1]
            for row in foils:
                hits += all(own > np.corrcoef(pred[i], true[j])[0, 1] for j in row)
        got = n_way_identification(pred, true, n, repeats=repeats, seed=9)
        assert got == pytest.approx(hits / (15 * repeats), abs=1e-12)


def test_n_way_chance_levels_and_errors():
    """Unrelated predictions score near 1/n; perfect ones 1; n beyond the items is refused."""
    from fmridecode.metrics.identification import n_way_identification, two_way_random

    rng = np.random.default_rng(5)
    true, noise = rng.normal(size=(400, 30)), rng.normal(size=(400, 30))
    for n in (2, 5, 10, 50):  # sd of the mean over items: < 0.015
        assert abs(n_way_identification(noise, true, n, repeats=20) - 1 / n) < 0.045
        assert n_way_identification(2 * true, true, n, repeats=5) == 1.0
    assert two_way_random(noise, true) == n_way_identification(noise, true, 2, repeats=50)
    with pytest.raises(DataError, match=r"n must be in \[2, 400\]"):
        n_way_identification(true, true, 401)


def test_correlation_distance_equals_scipy():
    from scipy.spatial.distance import correlation

    from fmridecode.metrics.identification import correlation_distance

    rng = np.random.default_rng(6)
    true = rng.normal(size=(8, 12))
    pred = true + rng.normal(size=(8, 12))
    expected = np.mean([correlation(pred[i], true[i]) for i in range(8)])
    assert correlation_distance(pred, true) == pytest.approx(expected, abs=1e-12)
    assert correlation_distance(3 * true + 2, true) == pytest.approx(0.0, abs=1e-12)
    assert correlation_distance(-true, true) == pytest.approx(2.0)


# -- image metrics ---------------------------------------------------------------------------


def _images(n: int = 3, size: int = 24, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_identical_and_negative_images():
    img = _images()
    assert pixcorr(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert pixcorr(255 - img, img) == pytest.approx(-1.0, abs=1e-12)
    # uint8 and float [0, 1] inputs agree
    assert pixcorr(img / 255.0, 255 - img) == pytest.approx(-1.0, abs=1e-12)


def test_pixcorr_hand_case():
    a = np.zeros((1, 11, 11, 3))
    b = np.zeros((1, 11, 11, 3))
    a[0, 0, 0] = [1.0, 0.0, 0.0]  # one red pixel
    b[0, 0, 0] = [1.0, 1.0, 0.0]  # one yellow pixel at the same place
    # x = e_1, y = e_1 + e_2 over N = 363 values: r = (N - 2) / sqrt((N - 1)(2N - 4))
    N = 363
    expected = (N - 2) / np.sqrt((N - 1) * (2 * N - 4))
    assert pixcorr_each(a, b)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(DataError, match=r"recons \[0\] are constant"):
        pixcorr(np.zeros_like(a), b)


def test_ssim_closed_form_on_flat_images():
    # flat images: SSIM = luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1), C1 = 0.01^2
    a = np.full((1, 16, 16, 3), 0.5)
    b = np.full((1, 16, 16, 3), 0.25)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim_each(a, b)[0] == pytest.approx(expected, rel=1e-9)
    # grayscale uses 0.2125 R + 0.7154 G + 0.0721 B: pure green (0.7154) vs gray 0.7154
    g = np.zeros((1, 16, 16, 3))
    g[..., 1] = 1.0
    assert ssim(g, np.full((1, 16, 16, 3), 0.7154)) == pytest.approx(1.0, abs=1e-9)


def test_ssim_falls_with_noise_and_needs_size():
    img = _images(n=2, size=32) / 255.0
    rng = np.random.default_rng(4)
    small = np.clip(img + 0.05 * rng.normal(size=img.shape), 0, 1)
    large = np.clip(img + 0.3 * rng.normal(size=img.shape), 0, 1)
    assert 1.0 > ssim(small, img) > ssim(large, img) > 0.0
    with pytest.raises(DataError, match="smaller than the 11-pixel window"):
        ssim(img[:, :8, :8], img[:, :8, :8])
    with pytest.raises(DataError, match="resize them first"):
        pixcorr(img[:, :16, :16], img)


def test_resize_antialiases():
    check = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    img = np.repeat(check[None, :, :, None], 3, axis=3)
    small = resize(img, 16)
    assert small.shape == (1, 16, 16, 3) and small.dtype == np.uint8
    assert np.abs(small.astype(int) - 127.5).max() < 10  # averaged, not aliased to 0 or 255
    flat = np.full((2, 40, 30, 3), 77, np.uint8)
    assert np.all(resize(flat, 64) == 77)
    with pytest.raises(DataError, match="uint8"):
        resize(img / 255.0, 16)


# -- GLM recovery ----------------------------------------------------------------------------


def _truth(rng):
    """Two sessions of 4 trials; voxel 2 is not responsive (its betas are garbage)."""
    n, v = 8, 3
    amp = rng.normal(size=(n, v))
    truth = {
        "amplitudes": amp,
        "trial_session": np.array([1, 1, 1, 1, 2, 2, 2, 2]),
        "trial_run": np.array([1, 1, 2, 2, 1, 1, 2, 2]),
        "trial_onset": np.array([3.25, 9.5, 3.25, 12.125, 3.25, 9.5, 4.0, 10.0]),
        "trial_stim_id": np.array([f"img{i % 5:05d}" for i in range(n)]),
        "responsive": np.array([True, True, False]),
    }
    betas = np.stack([2 * amp[:, 0] + 1, 0.5 * amp[:, 1] + rng.normal(size=n), np.zeros(n)], axis=1)
    trials = pd.DataFrame(
        {
            "session": [f"{s:02d}" for s in truth["trial_session"]],
            "run": truth["trial_run"],
            "onset": truth["trial_onset"] + 1e-6,  # float noise: matched after rounding
            "stim_id": truth["trial_stim_id"],
        }
    )
    return truth, betas, trials


def test_glm_recovery_hand_case_and_row_order():
    rng = np.random.default_rng(5)
    truth, betas, trials = _truth(rng)
    amp = truth["amplitudes"]
    r1 = np.corrcoef(betas[:, 1], amp[:, 1])[0, 1]
    s1 = np.polyfit(amp[:, 1], betas[:, 1], 1)[0]
    res = glm_recovery(betas, trials, truth)
    assert res["r_median"] == pytest.approx((1 + r1) / 2, rel=1e-12)
    assert res["r_mean"] == pytest.approx((1 + r1) / 2, rel=1e-12)
    assert res["slope_median"] == pytest.approx((2 + s1) / 2, rel=1e-12)
    assert (res["n_voxels"], res["n_trials"]) == (2, 8)

    perm = rng.permutation(8)  # shuffled estimated trials (betas rows follow their table)
    shuffled = glm_recovery(betas[perm], trials.iloc[perm].reset_index(drop=True), truth)
    assert shuffled == pytest.approx(res, rel=1e-12)
    perm2 = rng.permutation(8)  # shuffled truth order too
    truth2 = {k: (v[perm2] if k != "responsive" else v) for k, v in truth.items()}
    assert glm_recovery(betas, trials, truth2) == pytest.approx(res, rel=1e-12)
    # row-order pairing would be wrong: the shuffled betas against the unshuffled table differ
    assert glm_recovery(betas[perm], trials, truth)["r_median"] != pytest.approx(res["r_median"])


def test_glm_recovery_subset_of_sessions_and_errors():
    truth, betas, trials = _truth(np.random.default_rng(6))
    one = glm_recovery(betas[:4], trials.iloc[:4], truth)  # session 2 not estimated: fine
    assert one["n_trials"] == 4
    with pytest.raises(DataError, match="3 true trials of the estimated sessions have no estimate"):
        glm_recovery(betas[:1], trials.iloc[:1], truth)
    bad = trials.copy()
    bad.loc[3, "onset"] = 13.0
    with pytest.raises(DataError, match="1 estimated trials have no true trial"):
        glm_recovery(betas, bad, truth)
    bad = trials.copy()
    bad.loc[5, "stim_id"] = "img00099"
    with pytest.raises(DataError, match="disagree on stim_id.*img00099"):
        glm_recovery(betas, bad, truth)
    with pytest.raises(DataError, match="constant betas"):
        glm_recovery(np.zeros_like(betas), trials, truth)


def test_recon_rows_score_perfect_and_shuffled_reconstructions():
    from fmridecode.metrics.recon import recon_rows

    rng = np.random.default_rng(3)
    stimuli = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    emb = rng.normal(size=(6, 8))
    base = {"dataset": "d", "subject": "01", "mapper": "m", "generator": "g"}
    rows = recon_rows(stimuli, stimuli, emb, emb, 16, base, n_way=(3, 10))
    assert all(r["n"] == 6 for r in rows)  # n counts the test items on every row
    perfect = {(r["metric"], r.get("ways")): r for r in rows}
    assert perfect[("pixcorr", None)]["value"] == pytest.approx(1.0)
    assert perfect[("ssim", None)]["value"] == pytest.approx(1.0)
    assert perfect[("two_way_identification", None)]["value"] == 1.0
    assert perfect[("two_way_identification", None)]["chance"] == 0.5
    assert perfect[("two_way_identification", None)]["feature"] == "clip"
    assert perfect[("two_way_random", None)]["value"] == 1.0
    assert perfect[("n_way", 3)]["value"] == 1.0 and perfect[("n_way", 3)]["chance"] == 1 / 3
    # 10-way needs 10 test items: written as unavailable with the reason, never a number
    ten = perfect[("n_way", 10)]
    assert np.isnan(ten["value"]) and ten["status"] == "unavailable: 6 test items < 10"
    assert all(r["generator"] == "g" for r in rows) and len(rows) == 6
    order = [1, 2, 3, 4, 5, 0]
    shuffled = {
        r["metric"]: r["value"]
        for r in recon_rows(stimuli[order], stimuli, emb[order], emb, 16, base, n_way=())
    }
    assert shuffled["pixcorr"] < 0.2 and shuffled["two_way_identification"] < 0.5


def test_columnwise_r_hand_case():
    from fmridecode.metrics.glm_recovery import columnwise_r

    a = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    b = np.array([[2.0, 3.0], [4.0, 2.0], [6.0, 1.0]])
    np.testing.assert_allclose(columnwise_r(a, b), [1.0, -1.0])
    with pytest.raises(DataError, match="must be equal"):
        columnwise_r(a, b[:2])


def test_ncsnr_recovers_known_signal_and_noise():
    """Simulated voxels with signal sd s and trial noise sd 1, 3 repeats: after z-scoring the
    estimated ncsnr is s (NSD's formula), and the ceiling that of the true sds."""
    from fmridecode.metrics.noise_ceiling import noise_ceiling, signal_noise_sd
    from fmridecode.roi import zscore_by_session

    rng = np.random.default_rng(11)
    s = np.array([0.0, 0.5, 1.0, 2.0])
    signal = rng.normal(size=(3000, 1)) * s  # 3000 stimuli
    X = np.repeat(signal, 3, axis=0) + rng.normal(size=(9000, 4))
    ids = np.repeat([f"img{i}" for i in range(3000)], 3)
    X = zscore_by_session(X, np.zeros(9000))
    sig, noise = signal_noise_sd(X, ids)
    # sampling error of the noise variance (sd ~ 0.015 here) biases a zero ncsnr upwards
    assert sig[0] / noise[0] < 0.2
    np.testing.assert_allclose((sig / noise)[1:], s[1:], rtol=0.06)
    nc = noise_ceiling(sig, noise, 3)
    np.testing.assert_allclose(nc, noise_ceiling(s, np.ones(4), 3), atol=4.0)  # percent
    assert nc[0] < 4 and noise_ceiling(np.array([1.0]), np.array([1.0]), 3)[0] == 75.0
    with pytest.raises(DataError, match="shown twice"):
        signal_noise_sd(X[:3], ["a", "b", "c"])


def test_repeats_averaged_counts_the_test_stimuli():
    from fmridecode.metrics.noise_ceiling import repeats_averaged

    ids = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["t"]  # a, b, c test; t train (once)
    assert repeats_averaged(ids, {"a", "b", "c"}) == 3
    assert repeats_averaged(["x", "x", "y", "y", "z"], set()) == 2  # no test stimulus: all


def test_decoding_rows_score_perfect_predictions_perfectly():
    from fmridecode.metrics.decoding import DecodingSettings, Truth, decoding_rows

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 6))
    ids = [f"s{i}" for i in range(12)]
    classes = pd.DataFrame({"category": ["a", "b"], "zero_shot": [True, False]})
    truth = Truth({"image": (emb, ids), "text": (emb[::-1], ids[::-1])}, rng.normal(size=(2, 6)),
                  classes, {s: {"a"} for s in ids[:3]})  # fmt: skip
    index = pd.DataFrame({"stim_id": ids[4:]})  # test rows in another order than the cache
    preds = {"image": (emb[4:], index), "text": (emb[4:], index)}
    settings = DecodingSettings((1, 5), None, 30, (2,), 10, 0, "all")
    df = pd.DataFrame(decoding_rows(preds, truth, settings))
    recall = df[df["metric"] == "recall_at_k"]
    assert set(recall["target"]) == {"image", "text"} and (recall["value"] == 1.0).all()
    cos = df[df["metric"] == "prediction_cosine"]
    assert np.allclose(cos["value"], 1.0)
    # no test image shows the held-out category: zero-shot rows say so instead of a number
    assert df.loc[df["metric"] == "zero_shot_top1", "value"].isna().all()


def test_top_k_orders_candidates_by_cosine():
    from fmridecode.metrics.retrieval import top_k

    cands = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    pred = np.array([[2.0, 0.1], [0.1, 3.0]])
    assert top_k(pred, cands, 3).tolist() == [[0, 2, 1], [1, 2, 0]]
    with pytest.raises(DataError):
        top_k(pred, cands, 5)
