"""Ridge regression from voxels to embeddings, alpha chosen by K-fold cross-validation.

Closed form through ONE symmetric eigendecomposition per training matrix (each CV fold's
training rows, then all rows), shared by every target and every alpha. With ``Xs`` the
centred (optionally standardised) training matrix, m rows by p columns, and ``Yc`` the centred
targets, the smaller of the two Gram matrices is decomposed:

* kernel form (p >= m): ``Xs Xs^T = U diag(lam) U^T`` (m x m) and
  ``W(alpha) = Xs^T U diag(1 / (lam + alpha)) U^T Yc``;
* primal form (p < m): ``Xs^T Xs = V diag(lam) V^T`` (p x p) and
  ``W(alpha) = V diag(1 / (lam + alpha)) V^T Xs^T Yc``.

Both give the same ridge solution (push-through identity); fMRI decoding is the kernel case
(NSD: m = 8,859 training images, p = 15,724 voxels). Eigenvalues below 0 (rounding) count as 0.

The intercept is explicit: X and Y are centred with the training means, and X is divided by
its training standard deviation when ``standardize``. A column constant over the training rows
drops out (its weight is exactly 0; ``scale`` 1). The penalty applies to the weights of the
(standardised) X, as in sklearn's ``Ridge`` on the same preprocessed X.

Cross-validation score (``cv_scores_``): the out-of-fold R^2 of each alpha and target,
``1 - sum (y - y_hat)^2 / sum (y - y_bar_train)^2`` with both sums over every held-out row
of every fold, ``y_bar_train`` being the mean of the fold's training rows (so the reference
is the intercept-only model under the same folds). A target constant over the training rows
scores 0. With one alpha for all targets, the chosen alpha maximises the mean over targets
of that R^2; per target, each target's own. Ties go to the first alpha in the given order.
Each fold recomputes its own means, scales and eigendecomposition from its training rows only.

Many targets (token-level CLIP: 257 x 768 = 197,376 columns) are fitted at once, in column
blocks (``target_block``; by default as many columns as fit a memory budget for the block's
temporaries: 256 MiB on the CPU, a quarter of the free memory on a GPU), so the working memory
stays bounded; only ``coef_`` (p, d) is held whole, on the host. Per fold, the out-of-fold
predictions of all L alphas for a block come out of one matrix product, either with the
precomputed smoother ``[A diag(1 / (lam + alpha_l)) R]_l`` (L n_te x m; A maps the spectrum
to the held-out rows, R the training targets to the spectrum) or by projecting the block
first (``R Yc``, r x b), whichever costs fewer flops for the number of targets.

Cost (kernel form; n rows, p voxels, d targets, L alphas, K folds, m = n (K-1)/K rows per
fold): O(m^2 p + m^3) per decomposition (Gram matrix and eigh, K + 1 of them); the targets
add O(L n_te m d) per fold for the CV predictions (O(L n m d) over the folds: the dominant
term when d is large) and O((n^2 + p n) d) for the final weights.

Compute: torch (default; the GPU when present, by ``fmridecode.devices.resolve_device``) or
numpy, in float32 (default: half the memory, twice the CPU throughput, GPU speed) or float64
(exact to rounding: the tests compare it with sklearn's ``Ridge`` and a brute-force CV).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fmridecode.io import DataError, atomic_path

#: format tag stored in the .npz, checked on load (coef_ may be float32 or float64).
FORMAT = "fmridecode.ridge.v1"
BACKENDS = ("torch", "numpy")
DTYPES = ("float32", "float64")
FORMS = ("auto", "kernel", "primal")
#: memory for one target block's temporaries on the CPU, and the share of free GPU memory
CPU_BLOCK_BYTES = 256 * 2**20
GPU_FREE_FRACTION = 0.25
#: rows per chunk of the finiteness check (bounds its temporary)
_CHECK_ROWS = 1024

#: a numpy array or a torch tensor; the code below uses only operations both support
Array = Any


def _check(a: Any, name: str) -> np.ndarray:
    """``a`` as a 2D array without non-finite values (checked in row chunks, no big copy)."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise DataError(f"RidgeCV: {name} must be 2D, got shape {a.shape}")
    if a.dtype.kind in "fc":
        bad = sum(
            int((~np.isfinite(a[i : i + _CHECK_ROWS])).sum())
            for i in range(0, a.shape[0], _CHECK_ROWS)
        )
        if bad:
            raise DataError(f"RidgeCV: {name} has {bad} non-finite values")
    return a


def _fold_ids(n: int, cv: int, shuffle: bool, seed: int) -> np.ndarray:
    """Fold number of each row: contiguous blocks (of a seeded permutation when shuffling)."""
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    folds = np.empty(n, dtype=np.int64)
    for k, rows in enumerate(np.array_split(order, cv)):
        folds[rows] = k
    return folds


class _Ops:
    """The few array operations that differ between numpy and torch, and where work runs."""

    def __init__(self, backend: str, device: str, dtype: str) -> None:
        self.numpy = backend == "numpy"
        self.np_dtype = np.dtype(dtype)
        self.itemsize = self.np_dtype.itemsize
        if self.numpy:
            if device not in ("auto", "cpu"):
                raise ValueError(f"RidgeCV: the numpy backend runs on the CPU, not {device!r}")
            self.device, self.budget = "cpu", CPU_BLOCK_BYTES
            return
        import torch

        from fmridecode.devices import resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        if self.device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            self.budget = int(free * GPU_FREE_FRACTION)
        else:
            self.budget = CPU_BLOCK_BYTES

    @property
    def on_cpu(self) -> bool:
        return self.device.startswith("cpu")

    def asarray(self, a: np.ndarray) -> Array:
        """Host array -> compute array (no copy when dtype and device already match)."""
        a = np.asarray(a, dtype=self.np_dtype)
        if self.numpy:
            return a
        with warnings.catch_warnings():  # read-only input (a memory map): never written to
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return self.torch.as_tensor(a, device=self.device)

    def index(self, idx: np.ndarray) -> Array:
        """Integer row/column index usable on compute arrays."""
        return idx if self.numpy else self.torch.as_tensor(idx, device=self.device)

    def to_numpy(self, a: Array) -> np.ndarray:
        return a if self.numpy else a.detach().cpu().numpy()

    def store(self, dst: np.ndarray, src: Array) -> None:
        """Copy a compute array into the host array ``dst`` (a view), with no host temporary."""
        if self.numpy:
            dst[...] = src
        else:
            self.torch.from_numpy(dst).copy_(src)

    def eigh(self, a: Array) -> tuple[Array, Array]:
        return np.linalg.eigh(a) if self.numpy else self.torch.linalg.eigh(a)

    def ones(self, n: int) -> Array:
        return self.asarray(np.ones(n))

    def constant_columns(self, a: Array) -> Array:
        """Boolean (columns,): the column has one value over all rows."""
        if self.numpy:
            return a.max(axis=0) == a.min(axis=0)
        return a.amax(dim=0) == a.amin(dim=0)


def _standardise(ops: _Ops, X: Array, standardize: bool) -> tuple[Array, Array, Array]:
    """Centre (and scale) ``X`` in place with its own column statistics.

    Returns ``(X, mean, inv_scale)``; ``inv_scale`` is 1/std (``standardize``) or 1, and 0 for a
    column constant over these rows, so that such a column is exactly 0 and drops out.
    """
    const = ops.constant_columns(X)
    mean = X.mean(axis=0)
    X -= mean
    if standardize:
        var = (X * X).mean(axis=0)
        var[const] = 1
        inv = var**-0.5
    else:
        inv = ops.ones(X.shape[1])
    inv[const] = 0
    X *= inv
    return X, mean, inv


def _decompose(ops: _Ops, Xs: Array, form: str) -> tuple[Array, Array, bool]:
    """``(lam (r,), Q, kernel)``: eigendecomposition of the smaller Gram matrix of ``Xs``."""
    m, p = Xs.shape
    kernel = p >= m if form == "auto" else form == "kernel"
    lam, Q = ops.eigh(Xs @ Xs.T if kernel else Xs.T @ Xs)
    return lam.clip(min=0), Q, kernel


def _smoother_wins(n_alphas: int, n_te: int, r: int, m: int, d: int) -> bool:
    """Whether forming the (L n_te, m) out-of-fold smoother once costs fewer flops than
    projecting every target block onto the r-dimensional spectrum."""
    return n_alphas * n_te * m * (r + d) < d * r * (m + n_alphas * n_te)


class _Columns:
    """Column blocks of the targets Y (n, d) as compute arrays.

    Y is used in place when that needs no copy (numpy or torch on the CPU, same dtype) and is
    uploaded once when it fits the GPU budget; otherwise each block is converted on demand.
    """

    def __init__(self, ops: _Ops, Y: np.ndarray) -> None:
        self.ops, self.Y = ops, Y
        same = Y.dtype == ops.np_dtype
        fits = Y.size * ops.itemsize <= ops.budget
        self.whole = ops.asarray(Y) if (same and ops.on_cpu) or (fits and not ops.on_cpu) else None

    def __call__(self, a0: int, a1: int) -> Array:
        if self.whole is not None:
            return self.whole[:, a0:a1]
        return self.ops.asarray(self.Y[:, a0:a1])


class RidgeCV:
    """Ridge regression X (n, p) -> Y (n, d) with alpha chosen by K-fold CV on the training rows.

    Attributes after ``fit``: ``alpha_`` (float, or (d,) array when ``alpha_per_target``),
    ``cv_scores_`` ((n_alphas,) mean-over-targets R^2, or (n_alphas, d) when
    ``alpha_per_target``), ``cv_scores_per_target_`` ((n_alphas, d) always), ``coef_`` (p, d;
    in the compute dtype) and ``intercept_`` (d,) in the units of the raw X, so that
    ``Y_hat = X @ coef_ + intercept_``.

    Compute settings (not saved with the model): ``backend`` 'torch' or 'numpy'; ``device``
    'auto' (CUDA when present), 'cpu' or 'cuda[:i]' (torch only); ``dtype`` 'float32' or
    'float64'; ``target_block`` columns per block (None: from the memory budget); ``form``
    'auto' (the smaller Gram matrix), 'kernel' or 'primal' (same result; for tests).
    """

    def __init__(
        self,
        alphas: Sequence[float],
        cv: int = 5,
        alpha_per_target: bool = False,
        standardize: bool = True,
        seed: int = 0,
        shuffle: bool = True,
        *,
        backend: str = "torch",
        device: str = "auto",
        dtype: str = "float32",
        target_block: int | None = None,
        form: str = "auto",
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
        for name, value, allowed in (
            ("backend", backend, BACKENDS),
            ("dtype", dtype, DTYPES),
            ("form", form, FORMS),
        ):
            if value not in allowed:
                raise ValueError(f"RidgeCV: {name} must be one of {allowed}, got {value!r}")
        if target_block is not None and int(target_block) < 1:
            raise ValueError(f"RidgeCV: target_block must be >= 1 or None, got {target_block}")
        self.cv = int(cv)
        self.alpha_per_target = bool(alpha_per_target)
        self.standardize = bool(standardize)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.target_block = None if target_block is None else int(target_block)
        self.form = form

    # -- fitting -----------------------------------------------------------------------------

    def _block(self, ops: _Ops, d: int, per_column: int) -> int:
        """Target columns per block: ``target_block``, or what the memory budget allows."""
        if self.target_block is not None:
            return min(d, self.target_block)
        return int(min(d, max(1, ops.budget // (per_column * ops.itemsize))))

    def _cv_scores(self, ops: _Ops, X: Array, Y: _Columns, d: int) -> np.ndarray:
        """Out-of-fold R^2, shape (n_alphas, d) (see the module docstring)."""
        n = X.shape[0]
        L = self.alphas.size
        alphas = ops.asarray(self.alphas)
        folds = _fold_ids(n, self.cv, self.shuffle, self.seed)
        ss_res = np.zeros((L, d))
        ss_ref = np.zeros(d)
        const = np.zeros(d, dtype=bool)
        for k in range(self.cv):
            tr, te = ops.index(np.flatnonzero(folds != k)), ops.index(np.flatnonzero(folds == k))
            Xtr, mx, inv = _standardise(ops, X[tr], self.standardize)
            Xte = (X[te] - mx) * inv
            lam, Q, kernel = _decompose(ops, Xtr, self.form)
            A, R = ((Xte @ Xtr.T) @ Q, Q.T) if kernel else (Xte @ Q, (Xtr @ Q).T)
            del Xtr, Xte, Q
            m, t, r = R.shape[1], A.shape[0], lam.shape[0]
            # A diag(1 / (lam + alpha_l)) for every alpha, stacked: (L t, r)
            AD = (A[None] * (1.0 / (lam[None, :] + alphas[:, None]))[:, None, :]).reshape(L * t, r)
            del A
            smoother = None
            if _smoother_wins(L, t, r, m, d):
                smoother, AD, R = AD @ R, None, None
            per_column = n + m + t + L * t + (0 if smoother is not None else r)
            block = self._block(ops, d, per_column)
            for a0 in range(0, d, block):
                a1 = min(d, a0 + block)
                Yb = Y(a0, a1)
                if k == 0:
                    const[a0:a1] = ops.to_numpy(ops.constant_columns(Yb))
                Ytr, Yte = Yb[tr], Yb[te]
                my = Ytr.mean(axis=0)
                Ytr -= my
                Yte -= my
                ss_ref[a0:a1] += ops.to_numpy((Yte * Yte).sum(axis=0))
                P = smoother @ Ytr if smoother is not None else AD @ (R @ Ytr)
                P = P.reshape(L, t, a1 - a0)
                P -= Yte
                P *= P
                ss_res[:, a0:a1] += ops.to_numpy(P.sum(axis=1))
                del Yb, Ytr, Yte, P
        ok = (ss_ref > 0) & ~const
        scores = np.zeros_like(ss_res)
        scores[:, ok] = 1.0 - ss_res[:, ok] / ss_ref[ok]
        return scores

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RidgeCV:
        """Choose alpha by CV on (X, Y), then refit on all rows with the chosen alpha(s)."""
        X = _check(X, "X")
        Y = _check(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise DataError(f"RidgeCV: X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        if X.shape[0] < self.cv:
            raise DataError(f"RidgeCV: {X.shape[0]} rows cannot make {self.cv} folds")
        ops = _Ops(self.backend, self.device, self.dtype)
        Xd = ops.asarray(X)
        Yd = _Columns(ops, Y)
        d = Y.shape[1]
        per_target = self._cv_scores(ops, Xd, Yd, d)
        self.cv_scores_per_target_ = per_target
        if self.alpha_per_target:
            self.cv_scores_ = per_target
            chosen = np.argmax(per_target, axis=0)
            self.alpha_ = self.alphas[chosen]
        else:
            self.cv_scores_ = per_target.mean(axis=1)
            chosen = np.full(d, int(np.argmax(self.cv_scores_)))
            self.alpha_ = float(self.alphas[chosen[0]])
        self._fit_alpha(ops, Xd, Yd, d, chosen)
        return self

    def _fit_alpha(self, ops: _Ops, X: Array, Y: _Columns, d: int, chosen: np.ndarray) -> None:
        """Closed-form weights on all rows, target j with ``alphas[chosen[j]]``, in raw-X units."""
        n, p = X.shape
        Xs, mx, inv = _standardise(ops, X[ops.index(np.arange(n))], self.standardize)
        lam, Q, kernel = _decompose(ops, Xs, self.form)
        # W = E diag(1 / (lam + alpha)) F Yc
        E, F = (Xs.T @ Q, Q.T) if kernel else (Q, (Xs @ Q).T)
        del Xs, Q
        Dt = 1.0 / (lam[:, None] + ops.asarray(self.alphas)[None, :])  # (r, L)
        chosen_d = ops.index(chosen)
        self.coef_ = np.empty((p, d), dtype=ops.np_dtype)
        self.intercept_ = np.empty(d)
        block = self._block(ops, d, 2 * n + lam.shape[0] + p)
        for a0 in range(0, d, block):
            a1 = min(d, a0 + block)
            Yb = Y(a0, a1)
            my = Yb.mean(axis=0)
            FY = F @ (Yb - my)
            FY *= Dt[:, chosen_d[a0:a1]]
            W = E @ FY
            W *= inv[:, None]
            ops.store(self.coef_[:, a0:a1], W)
            self.intercept_[a0:a1] = ops.to_numpy(my - mx @ W)
            del Yb, FY, W
        self.n_features_in_ = p

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X @ coef_ + intercept_``; float32 for float32 (or integer) X, else float64.

        Computed in float64 when X or ``coef_`` is float64, else in float32; in column blocks
        when ``coef_`` has to be converted, so the converted copy stays small.
        """
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeCV: predict before fit")
        X = _check(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"RidgeCV: X has {X.shape[1]} columns, fitted on {self.n_features_in_}")
        out_dtype = np.float64 if X.dtype == np.float64 else np.float32
        work = np.result_type(out_dtype, self.coef_.dtype)
        Xw = X.astype(work, copy=False)
        d = self.coef_.shape[1]
        if self.coef_.dtype == work:
            return (Xw @ self.coef_ + self.intercept_).astype(out_dtype, copy=False)
        out = np.empty((X.shape[0], d), dtype=out_dtype)
        block = max(1, CPU_BLOCK_BYTES // (8 * max(1, self.n_features_in_)))
        for a0 in range(0, d, block):
            coef = self.coef_[:, a0 : a0 + block].astype(work)
            out[:, a0 : a0 + block] = Xw @ coef + self.intercept_[a0 : a0 + block]
        return out

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
        """Read a model written by ``save`` (coef_ keeps the dtype it was saved in)."""
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
