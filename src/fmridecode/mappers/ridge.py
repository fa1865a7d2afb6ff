"""Ridge regression from voxels to embeddings, alpha chosen by K-fold cross-validation.

Closed form through one thin SVD of the (centred, optionally standardised) training matrix,
shared by all targets and all alphas: with X = U S V^T,
``W(alpha) = V diag(s / (s^2 + alpha)) U^T Y``. numpy's thin SVD costs O(n p min(n, p)),
so it serves both n > p and p > n (the kernel case) without forming X^T X or X X^T.

The intercept is explicit: X and Y are centred with the training means, and X is divided by
its training standard deviation when ``standardize`` (a constant column keeps scale 1). The
penalty applies to the weights of the (standardised) X, as in sklearn's ``Ridge`` on the same
preprocessed X.

Cross-validation score (``cv_scores_``): the out-of-fold R^2 of each alpha and target,
``1 - sum (y - y_hat)^2 / sum (y - y_bar_train)^2`` with both sums over every held-out row
of every fold, ``y_bar_train`` being the mean of the fold's training rows (so the reference
is the intercept-only model under the same folds). A target constant over the training rows
scores 0. With one alpha for all targets, the chosen alpha maximises the mean over targets
of that R^2; per target, each target's own. Ties go to the first alpha in the given order.
Each fold recomputes its own means, scales and SVD from its training rows only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fmridecode.io import DataError, atomic_path

#: format tag stored in the .npz, checked on load.
FORMAT = "fmridecode.ridge.v1"


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise DataError(f"RidgeCV: {name} must be 2D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"RidgeCV: {name} has {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def _prep(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and scale of each column (scale 1 when not standardising or constant)."""
    mean = X.mean(axis=0)
    if not standardize:
        return mean, np.ones(X.shape[1])
    scale = X.std(axis=0)
    scale[~(X.max(axis=0) > X.min(axis=0))] = 1.0
    return mean, scale


def _svd(Xs: np.ndarray, Yc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of ``Xs``: returns (V (p, r), s (r,), U^T Yc (r, d))."""
    U, s, Vt = np.linalg.svd(Xs, full_matrices=False)
    return Vt.T, s, U.T @ Yc


def _fold_ids(n: int, cv: int, shuffle: bool, seed: int) -> np.ndarray:
    """Fold number of each row: contiguous blocks (of a seeded permutation when shuffling)."""
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    folds = np.empty(n, dtype=np.int64)
    for k, rows in enumerate(np.array_split(order, cv)):
        folds[rows] = k
    return folds


class RidgeCV:
    """Ridge regression X (n, p) -> Y (n, d) with alpha chosen by K-fold CV on the training rows.

    Attributes after ``fit``: ``alpha_`` (float, or (d,) array when ``alpha_per_target``),
    ``cv_scores_`` ((n_alphas,) mean-over-targets R^2, or (n_alphas, d) when
    ``alpha_per_target``), ``cv_scores_per_target_`` ((n_alphas, d) always), ``coef_`` (p, d)
    and ``intercept_`` (d,) in the units of the raw X, so that ``Y_hat = X @ coef_ + intercept_``.
    """

    def __init__(
        self,
        alphas: Sequence[float],
        cv: int = 5,
        alpha_per_target: bool = False,
        standardize: bool = True,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.alphas = np.asarray(alphas, dtype=np.float64).ravel()
        if (
            self.alphas.size == 0
            or not np.all(np.isfinite(self.alphas))
            or np.any(self.alphas <= 0)
        ):
            raise ValueError(f"RidgeCV: alphas must be finite and > 0, got {list(alphas)}")
        if int(cv) < 2:
            raise ValueError(f"RidgeCV: cv must be >= 2 folds, got {cv}")
        self.cv = int(cv)
        self.alpha_per_target = bool(alpha_per_target)
        self.standardize = bool(standardize)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)

    # -- fitting -----------------------------------------------------------------------------

    def _cv_scores(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Out-of-fold R^2, shape (n_alphas, d) (see the module docstring)."""
        n, d = Y.shape
        folds = _fold_ids(n, self.cv, self.shuffle, self.seed)
        ss_res = np.zeros((self.alphas.size, d))
        ss_ref = np.zeros(d)
        for k in range(self.cv):
            tr, te = folds != k, folds == k
            mx, sx = _prep(X[tr], self.standardize)
            my = Y[tr].mean(axis=0)
            V, s, UtY = _svd((X[tr] - mx) / sx, Y[tr] - my)
            XV = ((X[te] - mx) / sx) @ V  # (n_te, r)
            Yc_te = Y[te] - my
            ss_ref += (Yc_te**2).sum(axis=0)
            for a, alpha in enumerate(self.alphas):
                pred = XV @ ((s / (s**2 + alpha))[:, None] * UtY)
                ss_res[a] += ((Yc_te - pred) ** 2).sum(axis=0)
        ok = ss_ref > 0
        scores = np.zeros_like(ss_res)
        scores[:, ok] = 1.0 - ss_res[:, ok] / ss_ref[ok]
        return scores

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RidgeCV:
        """Choose alpha by CV on (X, Y), then refit on all rows with the chosen alpha(s)."""
        X = _as_2d(X, "X").astype(np.float64)
        Y = _as_2d(Y, "Y").astype(np.float64)
        if X.shape[0] != Y.shape[0]:
            raise DataError(f"RidgeCV: X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        if X.shape[0] < self.cv:
            raise DataError(f"RidgeCV: {X.shape[0]} rows cannot make {self.cv} folds")
        per_target = self._cv_scores(X, Y)
        self.cv_scores_per_target_ = per_target
        if self.alpha_per_target:
            self.cv_scores_ = per_target
            alpha = self.alphas[np.argmax(per_target, axis=0)]
        else:
            self.cv_scores_ = per_target.mean(axis=1)
            alpha = np.full(Y.shape[1], self.alphas[int(np.argmax(self.cv_scores_))])
        self.alpha_ = alpha if self.alpha_per_target else float(alpha[0])
        self._fit_alpha(X, Y, alpha)
        return self

    def _fit_alpha(self, X: np.ndarray, Y: np.ndarray, alpha: np.ndarray) -> None:
        """Closed-form weights for per-target ``alpha`` (d,), folded into raw-X units."""
        mx, sx = _prep(X, self.standardize)
        my = Y.mean(axis=0)
        V, s, UtY = _svd((X - mx) / sx, Y - my)
        W = np.empty((X.shape[1], Y.shape[1]))
        for a in np.unique(alpha):
            cols = alpha == a
            W[:, cols] = V @ ((s / (s**2 + a))[:, None] * UtY[:, cols])
        self.coef_ = W / sx[:, None]
        self.intercept_ = my - mx @ self.coef_
        self.n_features_in_ = X.shape[1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X @ coef_ + intercept_``; float32 for float32 (or integer) X, else float64."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeCV: predict before fit")
        X = _as_2d(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"RidgeCV: X has {X.shape[1]} columns, fitted on {self.n_features_in_}")
        out_dtype = np.float64 if X.dtype == np.float64 else np.float32
        return (X.astype(np.float64) @ self.coef_ + self.intercept_).astype(out_dtype)

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` (.npz, atomic, no pickles)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeCV: save before fit")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                format=np.array(FORMAT),
                alphas=self.alphas,
                cv=np.array(self.cv),
                alpha_per_target=np.array(self.alpha_per_target),
                standardize=np.array(self.standardize),
                seed=np.array(self.seed),
                shuffle=np.array(self.shuffle),
                alpha_=np.asarray(self.alpha_, dtype=np.float64),
                cv_scores_=self.cv_scores_,
                cv_scores_per_target_=self.cv_scores_per_target_,
                coef_=self.coef_,
                intercept_=self.intercept_,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> RidgeCV:
        """Read a model written by ``save``."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != FORMAT:
                    raise DataError(f"{path}: not a {FORMAT} file")
                m = cls(
                    alphas=z["alphas"],
                    cv=int(z["cv"]),
                    alpha_per_target=bool(z["alpha_per_target"]),
                    standardize=bool(z["standardize"]),
                    seed=int(z["seed"]),
                    shuffle=bool(z["shuffle"]),
                )
                m.alpha_ = z["alpha_"] if m.alpha_per_target else float(z["alpha_"])
                m.cv_scores_ = z["cv_scores_"]
                m.cv_scores_per_target_ = z["cv_scores_per_target_"]
                m.coef_ = z["coef_"]
                m.intercept_ = z["intercept_"]
        except DataError:
            raise
        except FileNotFoundError as e:
            raise DataError(f"{path}: file not found") from e
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: cannot read as a ridge model ({e})") from e
        m.n_features_in_ = m.coef_.shape[0]
        return m
