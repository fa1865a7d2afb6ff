"""Mind Reader's fusion: the simplex grid, the fused prediction, weights chosen on validation."""

import numpy as np
import pytest

from fmridecode.io import DataError
from fmridecode.mappers.fusion import choose_weights, fuse, simplex_grid
from fmridecode.mappers.targets import l2_normalize
from fmridecode.metrics.retrieval import ranks


def test_simplex_grid_counts_sums_and_order():
    g = simplex_grid(3, 0.1)
    assert g.shape == (66, 3)  # C(10 + 2, 2)
    assert np.allclose(g.sum(axis=1), 1.0) and (g >= 0).all()
    assert len({tuple(r) for r in g.round(6)}) == 66
    # single mappers first, in mapper order
    assert np.array_equal(g[:3], np.eye(3))
    with pytest.raises(ValueError):
        simplex_grid(2, 0.3)


def test_fused_similarity_is_the_weighted_sum_of_similarity_matrices():
    rng = np.random.default_rng(0)
    P = [rng.normal(size=(6, 4)) * s for s in (1.0, 7.0)]  # scale must not matter
    C = l2_normalize(rng.normal(size=(9, 4)))
    w = np.array([0.3, 0.7])
    direct = sum(wi * (l2_normalize(p) @ C.T) for wi, p in zip(w, P, strict=True))
    assert np.allclose(fuse(P, w) @ C.T, direct, atol=1e-6)
    with pytest.raises(DataError):
        fuse([P[0], P[1][:3]], w)


def test_fusion_weights_prefer_the_informative_mapper_and_can_beat_both():
    rng = np.random.default_rng(1)
    n, d = 40, 16
    truth = rng.normal(size=(n, d))
    good = truth + 0.8 * rng.normal(size=(n, d))
    noise = rng.normal(size=(n, d))  # uninformative
    w, table = choose_weights([noise, good], truth, np.arange(n), 0.1)
    assert w[1] >= 0.8 and len(table) == 11
    # two half-informative mappers with independent errors: fusing beats each alone
    a = truth + 1.5 * rng.normal(size=(n, d))
    b = truth + 1.5 * rng.normal(size=(n, d))
    w, table = choose_weights([a, b], truth, np.arange(n), 0.1)
    alone = [float(np.mean(1 / (ranks(p, truth, np.arange(n)) + 1))) for p in (a, b)]
    assert 0 < w[0] < 1 and table["mrr"].max() > max(alone)
