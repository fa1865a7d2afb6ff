"""RidgeCV against sklearn's closed-form Ridge and a brute-force cross-validation: float64
(numpy and torch) to rounding, the float32 default to float32 precision; both Gram forms,
both ways to the out-of-fold predictions, target blocks, and CUDA when a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from fmridecode.io import DataError
from fmridecode.mappers import ridge
from fmridecode.mappers.ridge import RidgeCV


def _data(n: int, p: int, d: int, noise: float, tau: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, size=p) + rng.normal(size=p)
    W = rng.normal(scale=tau, size=(p, d))
    Y = X @ W + 2.0 + noise * rng.normal(size=(n, d))
    return X, Y


def _sk(X, Y, alpha, standardize):
    """sklearn reference: (raw-X coef (p, d), intercept (d,))."""
    if standardize:
        sc = StandardScaler().fit(X)
        r = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(sc.transform(X), Y)
        coef = r.coef_.reshape(-1, X.shape[1]).T / sc.scale_[:, None]
        return coef, r.intercept_ - sc.mean_ @ coef
    r = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(X, Y)
    return r.coef_.reshape(-1, X.shape[1]).T, r.intercept_


EXACT = [  # float64 engines: equal to sklearn and the brute force up to rounding
    pytest.param({"backend": "numpy", "dtype": "float64"}, id="numpy64"),
    pytest.param({"backend": "torch", "dtype": "float64", "device": "cpu"}, id="torch64"),
]


@pytest.mark.parametrize("engine", EXACT)
@pytest.mark.parametrize("n,p", [(60, 15), (20, 70)])  # n > p and the kernel case p > n
@pytest.mark.parametrize("standardize", [False, True])
def test_fixed_alpha_matches_sklearn(n, p, standardize, engine):
    X, Y = _data(n, p, 4, noise=0.5)
    m = RidgeCV([3.0], cv=4, standardize=standardize, **engine).fit(X, Y)
    coef, intercept = _sk(X, Y, 3.0, standardize)
    assert m.alpha_ == 3.0 and m.coef_.shape == (p, 4) and m.intercept_.shape == (4,)
    np.testing.assert_allclose(m.coef_, coef, rtol=1e-6, atol=1e-9 * np.abs(coef).max())
    np.testing.assert_allclose(m.intercept_, intercept, rtol=1e-6)
    Xt = _data(10, p, 4, noise=0.5, seed=9)[0]
    ref = Xt @ coef + intercept
    np.testing.assert_allclose(m.predict(Xt), ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("n,p", [(80, 30), (40, 120)])
def test_float32_default_matches_sklearn_to_float32_precision(n, p):
    X, Y = _data(n, p, 6, noise=0.5, seed=2)
    alpha = 0.3 * p  # a moderately conditioned problem, as on real data
    m = RidgeCV([alpha], cv=4).fit(X.astype(np.float32), Y.astype(np.float32))
    assert m.coef_.dtype == np.float32  # torch float32 by default
    coef, intercept = _sk(X, Y, alpha, standardize=True)
    Xt = _data(15, p, 6, noise=0.5, seed=9)[0].astype(np.float32)
    ref = Xt.astype(np.float64) @ coef + intercept
    pred = m.predict(Xt)
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("engine", EXACT)
def test_cv_scores_match_brute_force_out_of_fold_r2(engine):
    X, Y = _data(40, 8, 3, noise=2.0, seed=3)
    alphas = [0.1, 10.0, 1000.0]
    m = RidgeCV(alphas, cv=4, alpha_per_target=True, shuffle=False, **engine).fit(X, Y)
    folds = np.array_split(np.arange(40), 4)  # contiguous folds when shuffle=False
    ss_res = np.zeros((3, 3))
    ss_ref = np.zeros(3)
    for te in folds:
        tr = np.setdiff1d(np.arange(40), te)
        ss_ref += ((Y[te] - Y[tr].mean(0)) ** 2).sum(0)
        for a, alpha in enumerate(alphas):
            coef, b = _sk(X[tr], Y[tr], alpha, standardize=True)
            ss_res[a] += ((Y[te] - X[te] @ coef - b) ** 2).sum(0)
    expected = 1 - ss_res / ss_ref
    np.testing.assert_allclose(m.cv_scores_, expected, rtol=1e-8)
    np.testing.assert_array_equal(m.alpha_, np.asarray(alphas)[expected.argmax(0)])
    shared = RidgeCV(alphas, cv=4, shuffle=False, **engine).fit(X, Y)
    np.testing.assert_allclose(shared.cv_scores_, expected.mean(1), rtol=1e-8)
    assert shared.alpha_ == alphas[int(expected.mean(1).argmax())]


def _brute_cv(X, Y, alphas, cv, seed):
    """Out-of-fold R^2 (n_alphas, d) by one sklearn fit per fold and alpha (shuffled folds)."""
    order = np.random.default_rng(seed).permutation(len(X))
    ss_res = np.zeros((len(alphas), Y.shape[1]))
    ss_ref = np.zeros(Y.shape[1])
    for te in np.array_split(order, cv):
        tr = np.setdiff1d(order, te)
        ss_ref += ((Y[te] - Y[tr].mean(0)) ** 2).sum(0)
        for a, alpha in enumerate(alphas):
            coef, b = _sk(X[tr], Y[tr], alpha, standardize=True)
            ss_res[a] += ((Y[te] - X[te] @ coef - b) ** 2).sum(0)
    return 1 - ss_res / ss_ref


@pytest.mark.parametrize("smoother", [True, False])  # both ways to the out-of-fold predictions
@pytest.mark.parametrize("n,p", [(30, 50), (50, 12)])
def test_cv_paths_and_forms_match_brute_force(monkeypatch, smoother, n, p):
    monkeypatch.setattr(ridge, "_smoother_wins", lambda *a: smoother)
    X, Y = _data(n, p, 5, noise=1.5, seed=4)
    alphas = [0.5, 5.0, 50.0]
    expected = _brute_cv(X, Y, alphas, 3, seed=2)
    for form in ("kernel", "primal", "auto"):
        m = RidgeCV(alphas, cv=3, seed=2, alpha_per_target=True, dtype="float64", form=form)
        m.fit(X, Y)
        np.testing.assert_allclose(m.cv_scores_, expected, rtol=1e-7, err_msg=form)


def test_kernel_and_primal_forms_give_the_same_coef():
    for n, p in [(40, 25), (25, 40)]:
        X, Y = _data(n, p, 3, noise=1.0, seed=6)
        fits = {
            form: RidgeCV([0.1, 10.0], alpha_per_target=True, dtype="float64", form=form).fit(X, Y)
            for form in ("kernel", "primal")
        }
        k, pr = fits["kernel"], fits["primal"]
        np.testing.assert_allclose(k.coef_, pr.coef_, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(k.intercept_, pr.intercept_, rtol=1e-8)
        np.testing.assert_allclose(k.cv_scores_, pr.cv_scores_, rtol=1e-8)


def test_cv_picks_alpha_near_the_bayes_optimum():
    # W ~ N(0, tau^2), noise sd sigma, unit-variance X: the optimal penalty is sigma^2/tau^2.
    rng = np.random.default_rng(5)
    n, p, d, sigma, tau = 250, 100, 30, 1.0, 0.15
    X = rng.normal(size=(n, p))
    Y = X @ rng.normal(scale=tau, size=(p, d)) + sigma * rng.normal(size=(n, d))
    alphas = np.logspace(-3, 5, 17)
    m = RidgeCV(alphas, cv=5, standardize=False, seed=1).fit(X, Y)
    best = sigma**2 / tau**2  # 44.4
    assert best / 5 <= m.alpha_ <= best * 5
    top = m.cv_scores_.max()
    assert m.cv_scores_[0] < top - 0.1  # too little shrinkage overfits
    assert m.cv_scores_[-1] < top - 0.1  # too much shrinks to the mean (R^2 ~ 0)
    assert abs(m.cv_scores_[-1]) < 0.05


def test_alpha_per_target_follows_noise_level():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 30))
    W = rng.normal(scale=0.3, size=(30, 2))
    Y = X @ W + rng.normal(size=(200, 2)) * np.array([0.05, 5.0])
    alphas = np.logspace(-3, 4, 15)
    m = RidgeCV(alphas, alpha_per_target=True, seed=0, dtype="float64").fit(X, Y)
    assert m.cv_scores_.shape == (15, 2) and m.alpha_.shape == (2,)
    assert m.alpha_[0] < 1.0 < 50.0 < m.alpha_[1]
    for j in range(2):  # each column is the closed-form fit with its own alpha
        coef, b = _sk(X, Y[:, [j]], m.alpha_[j], standardize=True)
        np.testing.assert_allclose(m.coef_[:, j], coef[:, 0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(m.intercept_[j], b[0], rtol=1e-6)


def test_alpha_per_target_takes_each_targets_best_alpha():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 90))
    noise = np.geomspace(0.01, 30.0, 12)  # from nearly noiseless to pure noise
    Y = X @ rng.normal(scale=0.2, size=(90, 12)) + rng.normal(size=(60, 12)) * noise
    alphas = np.logspace(-2, 5, 8)
    m = RidgeCV(alphas, alpha_per_target=True, dtype="float64").fit(X, Y)
    best = m.cv_scores_per_target_.argmax(axis=0)
    np.testing.assert_array_equal(m.alpha_, alphas[best])
    assert len(np.unique(best)) >= 3  # the targets really differ
    for a in np.unique(best):  # the columns with alpha a are the fixed-alpha fit's columns
        cols = best == a
        fixed = RidgeCV([alphas[a]], dtype="float64").fit(X, Y[:, cols])
        np.testing.assert_allclose(m.coef_[:, cols], fixed.coef_, rtol=1e-8, atol=1e-13)
        np.testing.assert_allclose(m.intercept_[cols], fixed.intercept_, rtol=1e-8)
    shared = RidgeCV(alphas, dtype="float64").fit(X, Y)
    assert shared.alpha_ == alphas[shared.cv_scores_.argmax()]
    np.testing.assert_allclose(shared.cv_scores_, m.cv_scores_per_target_.mean(1), rtol=1e-12)


def test_target_blocks_give_the_same_result_as_all_at_once():
    X, Y = _data(45, 70, 23, noise=1.0, seed=12)
    alphas = [0.3, 3.0, 30.0, 300.0]
    whole = RidgeCV(alphas, alpha_per_target=True, dtype="float64").fit(X, Y)
    for block in (1, 5, 23, 100):
        part = RidgeCV(alphas, alpha_per_target=True, dtype="float64", target_block=block)
        part.fit(X, Y)
        np.testing.assert_allclose(part.cv_scores_, whole.cv_scores_, rtol=1e-10)
        np.testing.assert_array_equal(part.alpha_, whole.alpha_)
        np.testing.assert_allclose(part.coef_, whole.coef_, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(part.intercept_, whole.intercept_, rtol=1e-9)


def test_torch_and_numpy_agree():
    X, Y = _data(50, 80, 7, noise=1.0, seed=13)
    X0, Y0 = X.copy(), Y.copy()
    alphas = [1.0, 30.0, 1000.0]
    fits = {
        (b, t): RidgeCV(alphas, alpha_per_target=True, backend=b, dtype=t, device="cpu").fit(X, Y)
        for b in ("torch", "numpy")
        for t in ("float32", "float64")
    }
    t64, n64 = fits["torch", "float64"], fits["numpy", "float64"]
    np.testing.assert_allclose(t64.cv_scores_, n64.cv_scores_, rtol=1e-10)
    np.testing.assert_allclose(t64.coef_, n64.coef_, rtol=1e-9, atol=1e-14)
    for engine in [("torch", "float32"), ("numpy", "float32")]:
        f32 = fits[engine]
        assert f32.coef_.dtype == np.float32
        np.testing.assert_allclose(f32.cv_scores_, n64.cv_scores_, atol=1e-4)
        np.testing.assert_array_equal(f32.alpha_, n64.alpha_)
        ref = n64.predict(X)
        np.testing.assert_allclose(f32.predict(X), ref, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(X, X0)  # the inputs are shared, never written to
    np.testing.assert_array_equal(Y, Y0)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
    "the same torch code is tested on the CPU above",
)
def test_cuda_matches_float64_cpu():
    X, Y = _data(300, 500, 40, noise=1.0, seed=14)
    alphas = [10.0, 100.0, 1000.0, 10000.0]
    gpu = RidgeCV(alphas, alpha_per_target=True, device="cuda").fit(X, Y)
    cpu = RidgeCV(alphas, alpha_per_target=True, backend="numpy", dtype="float64").fit(X, Y)
    assert gpu.coef_.dtype == np.float32
    np.testing.assert_allclose(gpu.cv_scores_, cpu.cv_scores_, atol=1e-4)
    same = gpu.alpha_ == cpu.alpha_  # float32 may break a near-tie the other way
    assert same.mean() >= 0.9
    ref = cpu.predict(X)[:, same]
    np.testing.assert_allclose(gpu.predict(X)[:, same], ref, atol=1e-4 * np.abs(ref).max())
    blocks = RidgeCV(alphas, alpha_per_target=True, device="cuda", target_block=7).fit(X, Y)
    np.testing.assert_allclose(blocks.coef_, gpu.coef_, rtol=1e-4, atol=1e-6)


def test_float32_constant_columns_save_load(tmp_path):
    X, Y = _data(50, 12, 3, noise=1.0, seed=11)
    X[:, 4] = 7.0  # constant voxel: no NaN from standardising
    Y[:, 2] = -1.5  # constant target: predicted exactly, CV score 0
    m = RidgeCV([0.1, 1.0, 10.0], cv=5).fit(X.astype(np.float32), Y.astype(np.float32))
    assert np.all(np.isfinite(m.coef_)) and np.abs(m.coef_[4]).max() < 1e-12
    assert np.all(np.isfinite(m.cv_scores_))
    assert np.all(m.cv_scores_per_target_[:, 2] == 0)
    pred = m.predict(X.astype(np.float32))
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred[:, 2], -1.5, atol=1e-6)
    m64 = RidgeCV([0.1, 1.0, 10.0], cv=5, dtype="float64").fit(X, Y)
    np.testing.assert_allclose(pred, m64.predict(X), rtol=1e-4, atol=1e-4)
    assert m.predict(X).dtype == np.float64  # float64 X: float64 out, from float32 coef_

    path = tmp_path / "model" / "ridge.npz"
    m.save(path)
    assert [q.name for q in path.parent.iterdir()] == ["ridge.npz"]  # no temp file left
    back = RidgeCV.load(path)
    assert back.coef_.dtype == np.float32
    np.testing.assert_array_equal(back.predict(X.astype(np.float32)), pred)
    assert back.alpha_ == m.alpha_ and back.standardize and back.cv == 5
    np.testing.assert_array_equal(back.cv_scores_, m.cv_scores_)
    m64.save(tmp_path / "m64.npz")  # float64 coef_, as every model written before float32
    back64 = RidgeCV.load(tmp_path / "m64.npz")
    assert back64.coef_.dtype == np.float64
    np.testing.assert_array_equal(back64.predict(X), m64.predict(X))

    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(DataError, match="other.npz: not a"):
        RidgeCV.load(tmp_path / "other.npz")
    with pytest.raises(DataError, match="missing.npz: file not found"):
        RidgeCV.load(tmp_path / "missing.npz")


def test_bad_inputs():
    with pytest.raises(ValueError, match="alphas"):
        RidgeCV([0.0, 1.0])
    for bad in ({"backend": "jax"}, {"dtype": "float16"}, {"form": "dual"}, {"target_block": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RidgeCV([1.0], **bad)
    X, Y = _data(20, 5, 2, noise=1.0)
    with pytest.raises(ValueError, match="numpy backend runs on the CPU"):
        RidgeCV([1.0], backend="numpy", device="cuda").fit(X, Y)
    X[3, 1] = np.nan
    with pytest.raises(DataError, match="X has 1 non-finite"):
        RidgeCV([1.0]).fit(X, Y)
    with pytest.raises(DataError, match="19 rows"):
        RidgeCV([1.0]).fit(X[:19, 2:], Y)
    m = RidgeCV([1.0]).fit(X[:, 2:], Y)
    with pytest.raises(DataError, match="fitted on 3"):
        m.predict(np.ones((2, 5)))


def test_match_target_stats_restores_the_training_scale():
    from fmridecode.mappers.targets import match_target_stats

    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, (200, 4)) * np.array([1, 2, 3, 4])
    shrunk = rng.normal(0.1, 0.05, (50, 4))
    shrunk[:, 3] = 0.7  # a constant prediction keeps the training mean
    out = match_target_stats(shrunk, train)
    np.testing.assert_allclose(out[:, :3].mean(0), train[:, :3].mean(0), rtol=1e-5)
    np.testing.assert_allclose(out[:, :3].std(0), train[:, :3].std(0), rtol=1e-5)
    np.testing.assert_allclose(out[:, 3], train[:, 3].mean(), rtol=1e-5)
    # order within a feature is kept (a monotone map per feature)
    assert (np.argsort(out[:, 0]) == np.argsort(shrunk[:, 0])).all()


def test_mean_per_stimulus_groups_by_id_not_position():
    import pandas as pd

    from fmridecode.mappers.targets import mean_per_stimulus

    rows = np.array([[1.0], [3.0], [10.0], [5.0]])
    index = pd.DataFrame({"stim_id": ["b", "b", "a", "b"]})
    means, ids = mean_per_stimulus(rows, index)
    assert ids == ["a", "b"] and means[:, 0].tolist() == [10.0, 3.0]
    means, ids = mean_per_stimulus(rows, index, ["b", "a"])
    assert means[:, 0].tolist() == [3.0, 10.0]
    with pytest.raises(DataError, match="no rows for 1 stimuli"):
        mean_per_stimulus(rows, index, ["c"])
