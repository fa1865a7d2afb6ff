"""Unit tests of the GLMsingle pieces: library, onset modes, cross-validation, ridge, denoise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from devices import DEVICES

from fmridecode.glm import denoise, design, hrf, ridge, xval
from fmridecode.glm.fit import fit_runs
from fmridecode.glm.single import GLMOptions
from fmridecode.io import DataError

TR = 1.6


def test_glmsingle_library_shapes_and_order() -> None:
    lib = hrf.library()
    assert len(lib) == 20
    peaks = [h.peak_s for h in lib]
    assert peaks == sorted(peaks) and 2.5 < peaks[0] < 3.0 and 5.5 < peaks[-1] < 6.0
    t = np.arange(-1, 50, 0.01)
    for h in (lib[0], lib[19]):
        r = h.response(t, 3.0)
        assert r.max() == pytest.approx(1.0, abs=1e-3) and np.all(r[t < 0] == 0)
        # a 3 s boxcar response peaks later than the impulse response
        assert t[np.argmax(r)] > t[np.argmax(h.impulse(t))]


def test_nearest_mode_samples_the_hrf_on_the_grid() -> None:
    h = hrf.library()[10]
    onsets = np.array([4.4, 8.4])  # volumes floor(2.75 + .5) = 3 and floor(5.25 + .5) = 5
    np.testing.assert_array_equal(design.onset_volumes(onsets, TR), [3, 5])
    X = design.trial_regressors(onsets, 40, TR, h, 3.0, mode="nearest")
    kernel = h.response(np.arange(40) * TR, 3.0)
    kernel /= kernel.max()
    np.testing.assert_allclose(X[3:, 0], kernel[:37], atol=1e-12)
    np.testing.assert_allclose(X[5:, 1], kernel[:35], atol=1e-12)
    assert X[:3, 0].max() == 0 and X[:, 0].max() == pytest.approx(1.0)
    with pytest.raises(DataError, match="run-07: two trials fall on volume 3"):
        design.run_design(np.array([4.4, 5.0]), 60, TR, h, 3.0, 2, "run-07", mode="nearest")


def brute_badness(levels, cond, run):
    """GLMsingle's loop: for every test trial, every training trial of its condition."""
    ref = levels[0]
    mn, sd = ref.mean(0), ref.std(0, ddof=1)
    z = [(b - mn) / sd for b in levels]
    out = np.zeros((len(levels), ref.shape[1]))
    for h, zh in enumerate(z):
        for t in range(len(cond)):
            for s in range(len(cond)):
                if cond[s] == cond[t] and run[s] != run[t]:
                    out[h] += (zh[s] - z[0][t]) ** 2
    return out


def test_badness_equals_the_trial_loop() -> None:
    rng = np.random.default_rng(0)
    cond = rng.integers(0, 6, 30)
    run = np.repeat(np.arange(5), 6)
    levels = [rng.standard_normal((30, 4)) for _ in range(3)]
    got = xval.badness(levels, xval.pair_matrix(cond, run))
    np.testing.assert_allclose(got, brute_badness(levels, cond, run), rtol=1e-10)
    assert xval.has_repeats_across_runs(cond, run)
    assert not xval.has_repeats_across_runs(np.arange(30), run)


def test_frac_ridge_hits_the_fractions_and_is_ridge() -> None:
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((40, 6)), rng.standard_normal((35, 5))]
    ys = [rng.standard_normal((40, 3)), rng.standard_normal((35, 3))]
    fracs = [1.0, 0.7, 0.3, 0.05]
    coefs, alphas = ridge.frac_ridge(blocks, ys, fracs)
    ols = [np.linalg.lstsq(X, y, rcond=None)[0] for X, y in zip(blocks, ys, strict=True)]
    ols = np.concatenate(ols)
    np.testing.assert_allclose(np.concatenate(coefs[0]), ols, atol=1e-10)
    X = np.zeros((75, 11))
    X[:40, :6], X[40:, 6:] = blocks
    Y = np.concatenate(ys)
    for i, f in enumerate(fracs):
        b = np.concatenate(coefs[i])
        ratio = np.linalg.norm(b, axis=0) / np.linalg.norm(ols, axis=0)
        # the grid step (10^0.2) and linear interpolation in log(1 + alpha) limit the accuracy
        np.testing.assert_allclose(ratio, f, atol=0.02)
        for v in range(3):  # each column is the ridge solution for its alpha
            a = alphas[i, v]
            direct = np.linalg.solve(X.T @ X + a * np.eye(11), X.T @ Y[:, v])
            np.testing.assert_allclose(b[:, v], direct, atol=1e-8)


def test_choose_pcnum_reproduces_the_official_choice() -> None:
    # GLMsingle's xvaltrend on the parity dataset; it chose 3 PCs with pcstop 1.05
    trend = np.array([-1332.3, -1244.3, -1178.1, -1154.4, -1147.2, -1153.8, -1156.5])
    assert denoise.choose_pcnum(trend, 1.05) == 3
    assert denoise.choose_pcnum(trend, 1.0) == 4  # plain maximum
    assert denoise.choose_pcnum(-np.arange(5.0), 1.05) == 0  # nothing helps


def test_tail_threshold_separates_two_populations() -> None:
    rng = np.random.default_rng(2)
    v = np.concatenate([np.abs(rng.normal(0, 0.2, 300)), rng.normal(10, 4, 500)])
    t = denoise.tail_threshold(v)
    assert 0.4 < t < 3.0
    assert denoise.tail_threshold(v) == t  # deterministic
    with pytest.raises(DataError, match="too few"):
        denoise.tail_threshold(np.arange(5.0))


def test_noise_pcs_are_unit_sd_and_drift_free() -> None:
    rng = np.random.default_rng(3)
    q = np.linalg.qr(design.drift_regressors(80, 2))[0]
    pcs = denoise.noise_pcs(rng.standard_normal((80, 40)) + 50, q, 4)
    assert pcs.shape == (80, 5)
    np.testing.assert_allclose(pcs.std(axis=0, ddof=1), 1.0)
    np.testing.assert_allclose(q.T @ pcs, 0, atol=1e-8)


def test_types_c_d_need_repeats_across_runs() -> None:
    rng = np.random.default_rng(4)
    data = [1000 + rng.standard_normal((100, 5)) for _ in range(2)]
    ev = [
        pd.DataFrame(
            {"onset": np.arange(4.4, 120, 8.0), "stim_id": [f"a{r}{i}" for i in range(15)]}
        )
        for r in range(2)
    ]
    with pytest.raises(DataError, match="r1.nii.gz...: GLM types C/D .* none of the 30"):
        fit_runs(data, ev, TR, 3.0, GLMOptions(), progress=False, run_names=["r1.nii.gz", "r2"])
    res = fit_runs(data, ev, TR, 3.0, GLMOptions(types=("A", "B")), progress=False)
    assert set(res.betas) == {"B"} and set(res.r2) == {"A", "B"}


def test_runs_of_different_lengths_fit_all_types() -> None:
    """Per-run drift and per-run noise PCs: runs need not share a length."""
    rng = np.random.default_rng(5)
    lengths = [100, 130, 115]
    ids = [f"s{i}" for i in range(8)]
    ev, data = [], []
    for T in lengths:
        ev.append(
            pd.DataFrame({"onset": 4.4 + 8.0 * np.arange(8), "stim_id": rng.permutation(ids)})
        )
        data.append(1000 + 3 * rng.standard_normal((T, 60)))
    opts = GLMOptions(n_pcs=3, brain_r2=50.0, pc_r2_cutoff=0.0)
    res = fit_runs(data, ev, TR, 3.0, opts, progress=False)
    assert [p.shape for p in res.pc_regressors] == [(T, 4) for T in lengths]
    for t in "BCD":
        assert res.betas[t].shape == (24, 60) and np.all(np.isfinite(res.betas[t]))
    assert res.r2_run["D"].shape == (3, 60)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_backend_gives_the_numpy_results(device: str) -> None:
    """glm.backend: torch (on the CPU, and on CUDA when present) computes the same fit as
    numpy, type by type."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    ids = [f"s{i}" for i in range(10)]
    ev = [
        pd.DataFrame({"onset": 4.4 + 8.0 * np.arange(10), "stim_id": rng.permutation(ids)})
        for _ in range(3)
    ]
    X = [design.trial_regressors(e["onset"], 110, TR, hrf.library()[12], 3.0) for e in ev]
    effect = rng.uniform(0.5, 2.0, (10, 40))
    data = [
        1000
        + 10 * x @ effect[[ids.index(i) for i in e["stim_id"]]]
        + 4 * rng.standard_normal((110, 40))
        for x, e in zip(X, ev, strict=True)
    ]
    data = [np.hstack([d, 1000 + 4 * rng.standard_normal((110, 30))]) for d in data]  # noise voxels
    for base in (GLMOptions(n_pcs=3, chunk_size=25), GLMOptions(pcstop=-2, chunk_size=25)):
        ref = fit_runs(data, ev, TR, 3.0, base, progress=False)
        torch_opts = GLMOptions(**{**base.__dict__, "backend": "torch", "device": device})
        tor = fit_runs(data, ev, TR, 3.0, torch_opts, progress=False)
        assert ref.pcnum == tor.pcnum
        if base.pcstop > 0:  # the cross-validation curve over 0..3 PCs
            np.testing.assert_allclose(tor.glmbadness, ref.glmbadness, rtol=1e-6)
        np.testing.assert_array_equal(ref.hrf_index, tor.hrf_index)
        np.testing.assert_array_equal(ref.frac, tor.frac)
        for t in "BCD":
            np.testing.assert_allclose(tor.betas[t], ref.betas[t], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(tor.r2[t], ref.r2[t], atol=1e-4)
    assert ref.pcnum == 2 and len(np.unique(ref.frac)) > 3  # PCs used, fractions vary
