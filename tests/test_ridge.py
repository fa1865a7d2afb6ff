"""RidgeCV against sklearn's closed-form Ridge and a brute-force cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from fmridecode.io import DataError
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


@pytest.mark.parametrize("n,p", [(60, 15), (20, 70)])  # n > p and the kernel case p > n
@pytest.mark.parametrize("standardize", [False, True])
def test_fixed_alpha_matches_sklearn(n, p, standardize):
    X, Y = _data(n, p, 4, noise=0.5)
    m = RidgeCV([3.0], cv=4, standardize=standardize).fit(X, Y)
    coef, intercept = _sk(X, Y, 3.0, standardize)
    assert m.alpha_ == 3.0 and m.coef_.shape == (p, 4) and m.intercept_.shape == (4,)
    np.testing.assert_allclose(m.coef_, coef, rtol=1e-6, atol=1e-9 * np.abs(coef).max())
    np.testing.assert_allclose(m.intercept_, intercept, rtol=1e-6)
    Xt = _data(10, p, 4, noise=0.5, seed=9)[0]
    ref = Xt @ coef + intercept
    np.testing.assert_allclose(m.predict(Xt), ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_cv_scores_match_brute_force_out_of_fold_r2():
    X, Y = _data(40, 8, 3, noise=2.0, seed=3)
    alphas = [0.1, 10.0, 1000.0]
    m = RidgeCV(alphas, cv=4, alpha_per_target=True, shuffle=False).fit(X, Y)
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
    shared = RidgeCV(alphas, cv=4, shuffle=False).fit(X, Y)
    np.testing.assert_allclose(shared.cv_scores_, expected.mean(1), rtol=1e-8)
    assert shared.alpha_ == alphas[int(expected.mean(1).argmax())]


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
    m = RidgeCV(alphas, alpha_per_target=True, seed=0).fit(X, Y)
    assert m.cv_scores_.shape == (15, 2) and m.alpha_.shape == (2,)
    assert m.alpha_[0] < 1.0 < 50.0 < m.alpha_[1]
    for j in range(2):  # each column is the closed-form fit with its own alpha
        coef, b = _sk(X, Y[:, [j]], m.alpha_[j], standardize=True)
        np.testing.assert_allclose(m.coef_[:, j], coef[:, 0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(m.intercept_[j], b[0], rtol=1e-6)


def test_float32_constant_columns_save_load(tmp_path):
    X, Y = _data(50, 12, 3, noise=1.0, seed=11)
    X[:, 4] = 7.0  # constant voxel: no NaN from standardising
    Y[:, 2] = -1.5  # constant target: predicted exactly, CV score 0
    m = RidgeCV([0.1, 1.0, 10.0], cv=5).fit(X.astype(np.float32), Y.astype(np.float32))
    assert np.all(np.isfinite(m.coef_)) and np.abs(m.coef_[4]).max() < 1e-12
    assert np.all(np.isfinite(m.cv_scores_))
    pred = m.predict(X.astype(np.float32))
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred[:, 2], -1.5, atol=1e-6)
    m64 = RidgeCV([0.1, 1.0, 10.0], cv=5).fit(X, Y)
    np.testing.assert_allclose(pred, m64.predict(X), rtol=1e-4, atol=1e-4)

    path = tmp_path / "model" / "ridge.npz"
    m.save(path)
    assert [q.name for q in path.parent.iterdir()] == ["ridge.npz"]  # no temp file left
    back = RidgeCV.load(path)
    np.testing.assert_array_equal(back.predict(X.astype(np.float32)), pred)
    assert back.alpha_ == m.alpha_ and back.standardize and back.cv == 5
    np.testing.assert_array_equal(back.cv_scores_, m.cv_scores_)

    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(DataError, match="other.npz: not a"):
        RidgeCV.load(tmp_path / "other.npz")
    with pytest.raises(DataError, match="missing.npz: file not found"):
        RidgeCV.load(tmp_path / "missing.npz")


def test_bad_inputs():
    with pytest.raises(ValueError, match="alphas"):
        RidgeCV([0.0, 1.0])
    X, Y = _data(20, 5, 2, noise=1.0)
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
