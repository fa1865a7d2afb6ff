"""Fractional ridge regression (Rokem & Kay 2020), vectorised over voxels and fractions.

For each voxel and each target fraction f the ridge penalty alpha is chosen so that the
length of the coefficient vector is f times the length of the least-squares solution. As in
the ``fracridge`` package: in the rotated (SVD) basis the coefficients are
s^2 / (s^2 + alpha) times the least-squares ones; the length ratio is computed on a grid of
alphas (0 and 10^k in steps of 0.2 from 1e-2 min(s)^2 to 1e4 max(s)^2) and log(1 + alpha)
is interpolated linearly in the ratio. Unlike the package, the grid step and the
interpolation run for all voxels at once, and the design may be given as blocks (one per
run; the design is block diagonal when trials never span runs), whose SVDs together are the
SVD of the whole design.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmridecode.glm.backend import NUMPY, Backend

BIG_BIAS = 1e4
SMALL_BIAS = 1e-2
BIAS_STEP = 0.2
#: singular values below this are treated as 0 (their coefficients are set to 0).
SVD_TOL = 1e-10


def alpha_grid(singular_values: np.ndarray) -> np.ndarray:
    """0, then 10^k for k from floor(log10(1e-2 s_min^2)) to ceil(log10(1e4 s_max^2)) by 0.2."""
    s = np.asarray(singular_values, dtype=float)
    s = s[s >= SVD_TOL]
    lo = np.floor(np.log10(SMALL_BIAS * s.min() ** 2))
    hi = np.ceil(np.log10(BIG_BIAS * s.max() ** 2))
    return np.concatenate([[0.0], 10.0 ** np.arange(lo, hi, BIAS_STEP)])


def _interp_rows(f: float, ratio: Any, x: Any, bk: Backend) -> Any:
    """Per column v: np.interp(f, ratio[::-1, v], x[::-1]) for ratio decreasing along axis 0."""
    r = bk.flip0(ratio)  # increasing
    xs = bk.flip0(x)
    g = r.shape[0]
    k = (r < f).sum(0)  # first index with r >= f
    hi = bk.clip(k, 1, g - 1)
    lo = hi - 1
    cols = bk.index(np.arange(r.shape[1]))
    r0, r1 = r[lo, cols], r[hi, cols]
    w = bk.clip(bk.divide(f - r0, r1 - r0, 1.0), 0.0, 1.0)
    w = bk.where(r1 > r0, w, 1.0)
    out = xs[lo] + w * (xs[hi] - xs[lo])
    out = bk.where(k == 0, xs[0], out)
    return bk.where(k >= g, xs[-1], out)


def frac_ridge(
    blocks: Sequence[Any], targets: Sequence[Any], fracs: Sequence[float], bk: Backend = NUMPY
) -> tuple[list[list[Any]], Any]:
    """Fractional ridge of block-diagonal designs.

    ``blocks[r]`` (n_r, p_r) and ``targets[r]`` (n_r, V): the design block and data of run
    r, as arrays of backend ``bk``. Returns (coef, alphas): ``coef[i][r]`` (p_r, V) the
    coefficients of block r at ``fracs[i]``, and ``alphas`` (len(fracs), V).
    """
    svds = [bk.svd(X) for X in blocks]
    rot = []
    for (u, s, _), y in zip(svds, targets, strict=True):
        keep = (s >= SVD_TOL)[:, None]
        rot.append(bk.where(keep, bk.divide(u.T @ y, bk.where(keep, s[:, None], 1.0), 0.0), 0.0))
    s_all = bk.cat([s for _, s, _ in svds])
    c_all = bk.cat(rot)  # (K, V) least-squares coefficients in the rotated basis
    grid = bk.array(alpha_grid(bk.numpy(s_all)))
    s2 = s_all**2
    shrink_sq = (s2 / (s2 + grid[:, None])) ** 2  # (G, K)
    length = bk.sqrt(shrink_sq @ c_all**2)  # (G, V)
    ratio = bk.where(length[0] > 0, bk.divide(length, length[0], 1.0), 1.0)
    x = bk.log1p(grid)
    coefs, alphas = [], []
    for f in fracs:
        alpha = bk.expm1(_interp_rows(float(f), ratio, x, bk))
        alphas.append(alpha)
        per_block, start = [], 0
        for _, s, vt in svds:
            sl = slice(start, start + len(s))
            start += len(s)
            shrink = s[:, None] ** 2 / (s[:, None] ** 2 + alpha[None, :])
            per_block.append(vt.T @ (shrink * c_all[sl]))
        coefs.append(per_block)
    return coefs, bk.stack(alphas)


def match_scale(betas: Any, reference: Any, bk: Backend = NUMPY) -> tuple[Any, Any, Any]:
    """Per column, the line a * betas + b that best fits ``reference`` (least squares).

    GLMsingle's autoscale of ridge betas towards the unregularised ones. Columns where the
    slope would be negative or undefined keep (a, b) = (1, 0). Returns (scaled, a, b).
    """
    xm, ym = betas.mean(0), reference.mean(0)
    dx = betas - xm
    var = (dx**2).sum(0)
    slope = bk.divide((dx * (reference - ym)).sum(0), var, 1.0)
    ok = (var > 0) & (slope >= 0) & bk.isfinite(slope)
    slope = bk.where(ok, slope, 1.0)
    offset = bk.where(ok, ym - slope * xm, 0.0)
    return betas * slope + offset, slope, offset
