"""GLMdenoise pieces: tail threshold, noise pool, noise PCs per run, choice of their number.

- ``tail_threshold``: GLMsingle's automatic R2 cut: fit a two-Gaussian mixture to the values
  and return the point of the robust range where the two posteriors are equal. Our mixture
  is fitted by EM from a deterministic start (quartiles), so the result does not depend on a
  random seed.
- ``noise_pool``: bright voxels (mean above ``brainthresh[1]`` times its ``brainthresh[0]``
  percentile) whose on-off R2 is below the threshold.
- ``noise_pcs``: per run, the noise-pool time series with the drift polynomials projected
  out, each scaled to unit length; the leading left singular vectors, scaled to unit
  standard deviation, are the candidate nuisance regressors.
- ``choose_pcnum``: the smallest number of PCs whose cross-validated improvement over 0 PCs
  is within a factor ``pcstop`` of the best improvement.
"""

from __future__ import annotations

import numpy as np

from fmridecode.io import DataError


def robust_range(v: np.ndarray) -> tuple[float, float]:
    """The values' range without far outliers (GLMsingle's rule).

    Percentile-based bounds median -/+ 5 x (median - 10th / 90th - median percentile); while
    the 0.1th / 99.9th percentile lies beyond them, the values beyond are dropped. Then each
    end is the extreme value if it is close to the 0.1th / 99.9th percentile, else that
    percentile.
    """
    v = np.asarray(v, dtype=float)
    while True:
        p01, p10, p50, p90, p999 = np.percentile(v, [0.1, 10, 50, 90, 99.9])
        upper = p50 + 5 * (p90 - p50)
        lower = p50 - 5 * (p50 - p10)
        if p999 <= upper and p01 >= lower:
            hi = v.max() if v.max() <= p50 + 1.1 * (p999 - p50) else p999
            lo = v.min() if v.min() >= p50 - 1.1 * (p50 - p01) else p01
            return float(lo), float(hi)
        keep = np.ones(v.shape, bool)
        if p999 > upper:
            keep &= v <= upper
        if p01 < lower:
            keep &= v >= lower
        v = v[keep]


def _gmm2(v: np.ndarray, iters: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-component 1D Gaussian mixture by EM from the quartiles: (weights, means, sds)."""
    mu = np.percentile(v, [25, 75]).astype(float)
    spread = max(float(np.std(v)), 1e-12)
    sd = np.array([spread, spread]) / 2
    w = np.array([0.5, 0.5])
    for _ in range(iters):
        dens = w * np.exp(-0.5 * ((v[:, None] - mu) / sd) ** 2) / sd
        resp = dens / np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
        n = resp.sum(axis=0)
        new_mu = (resp * v[:, None]).sum(axis=0) / np.maximum(n, 1e-300)
        new_sd = np.sqrt((resp * (v[:, None] - new_mu) ** 2).sum(axis=0) / np.maximum(n, 1e-300))
        new_sd = np.maximum(new_sd, 1e-6 * spread)
        done = np.allclose(new_mu, mu, rtol=0, atol=1e-9 * spread) and np.allclose(
            new_sd, sd, rtol=1e-9
        )
        mu, sd, w = new_mu, new_sd, n / len(v)
        if done:
            break
    return w, mu, sd


def tail_threshold(values: np.ndarray, n_grid: int = 500) -> float:
    """Where the two mixture posteriors cross, on a grid of ``n_grid`` points over the robust range.

    The grid starts at the lower component's mean if that is above the robust minimum. (The
    official code at the reference commit searches the whole robust range, where a second,
    meaningless crossing below a narrow lower population can win; an older version started at
    the median, which misses the crossing when most voxels respond.)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 10:
        raise DataError(f"tail_threshold: {v.size} finite values, too few to fit a mixture")
    w, mu, sd = _gmm2(v)
    lo, hi = robust_range(v)
    # only crossings above the lower population's mean separate it from the upper one (a
    # narrow lower population is also "crossed" again below its mean)
    grid = np.linspace(max(lo, float(mu.min())), hi, n_grid)
    dens = w * np.exp(-0.5 * ((grid[:, None] - mu) / sd) ** 2) / sd
    post = dens[:, 0] / np.maximum(dens.sum(axis=1), 1e-300)
    if not (np.any(post > 0.5) and np.any(post < 0.5)):
        raise DataError(
            "tail_threshold: the on-off R2 values show no second population above the "
            "median (no posterior crossing); set glm.brain_r2 and glm.pc_r2_cutoff by hand"
        )
    return float(grid[np.argmin(np.abs(post - 0.5))])


def noise_pool(
    mean: np.ndarray, onoff_r2: np.ndarray, brain_r2: float, brainthresh: tuple[float, float]
) -> np.ndarray:
    """Boolean (V,): bright voxels whose on-off R2 is below ``brain_r2``."""
    bright = mean > np.percentile(mean, brainthresh[0]) * brainthresh[1]
    return bright & (onoff_r2 < brain_r2)


def noise_pcs(pool_data: np.ndarray, drift_q: np.ndarray, n_pcs: int) -> np.ndarray:
    """(T, n_pcs + 1) candidate regressors of one run from its (T, P) noise-pool data."""
    y = np.asarray(pool_data, dtype=np.float64)
    y = y - drift_q @ (drift_q.T @ y)
    norms = np.linalg.norm(y, axis=0)
    y = y / np.where(norms > 0, norms, 1.0)
    u = np.linalg.svd(y @ y.T)[0][:, : n_pcs + 1]
    return u / u.std(axis=0, ddof=1)


def choose_pcnum(xvaltrend: np.ndarray, pcstop: float) -> int:
    """Smallest PC count whose gain over 0 PCs reaches max gain / pcstop (first best if none)."""
    curve = np.asarray(xvaltrend, dtype=float) - xvaltrend[0]
    best_gain, chosen = -np.inf, 0
    for p, gain in enumerate(curve):
        if gain > best_gain:
            chosen, best_gain = p, gain
            if best_gain * pcstop >= curve.max():
                break
    return chosen
