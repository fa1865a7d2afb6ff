"""How close predicted embeddings are to the true ones, row by row (not only by rank).

- ``prediction_r2``: the coefficient of determination of each embedding dimension over the
  test images, ``1 - sum_i (y_id - p_id)^2 / sum_i (y_id - mean_i y_id)^2``, averaged over
  dimensions (scikit-learn's ``r2_score`` with uniform averaging). 0 is what predicting the
  test mean scores; it can be negative. Rank-based metrics ignore the scale that regression
  losses shrink, this does not.
- ``prediction_cosine``: the mean cosine similarity of each prediction with its own image's
  true embedding; its ``chance`` is the mean cosine with the other test images' embeddings
  (what a prediction that knows the embedding space but not the image scores).
"""

from __future__ import annotations

import numpy as np

from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.ndim != 2 or len(pred) < 2:
        raise DataError(f"prediction metrics: pred {pred.shape} and truth {truth.shape} must be "
                        "equal 2D shapes with at least 2 rows")  # fmt: skip
    if not (np.isfinite(pred).all() and np.isfinite(truth).all()):
        raise DataError("prediction metrics: non-finite values")
    return pred, truth


def r2_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over dimensions of each dimension's R^2 (constant dimensions left out)."""
    pred, truth = _check(pred, truth)
    ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = ((truth - pred) ** 2).sum(axis=0)
    ok = ss_tot > 0
    if not ok.any():
        raise DataError("prediction_r2: every true dimension is constant")
    return float(np.mean(1.0 - ss_res[ok] / ss_tot[ok]))


def cosine_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean cosine with the own image's embedding, mean cosine with the other images')."""
    pred, truth = _check(pred, truth)
    S = l2_normalize(pred) @ l2_normalize(truth).T
    n = len(S)
    own = float(np.mean(np.diag(S)))
    others = float((S.sum() - np.trace(S)) / (n * (n - 1)))
    return own, others


def prediction_rows(pred: np.ndarray, truth: np.ndarray, target: str) -> list[dict]:
    """The ``prediction_r2`` and ``prediction_cosine`` rows of one target."""
    own, others = cosine_scores(pred, truth)
    n = len(pred)
    return [
        {"metric": "prediction_r2", "target": target, "value": r2_score(pred, truth), "n": n},
        {"metric": "prediction_cosine", "target": target, "value": own, "chance": others, "n": n},
    ]
