"""Haemodynamic response functions: a canonical HRF and libraries of shapes.

``library()`` is GLMsingle's library: 20 impulse responses tabulated every 0.1 s (the
``getcanonicalhrflibrary`` table of cvnlab/GLMsingle, BSD-3-Clause, derived from NSD; shipped
as ``data/glmsingle_hrf_library.tsv``). They are ``SampledHRF``: the boxcar response is the
0.1 s convolution with a ``duration`` boxcar, evaluated at any time by PCHIP interpolation,
as GLMsingle does before sampling at the TR.

``glmsingle_canonical()`` is GLMsingle's canonical HRF (its ``basichrf`` table, same source),
used for the on-off model (type A) and when the library is off.

``stretched_library()`` and ``canonical()`` are double gammas:
h(t) = g(t; a1, s) - ratio * g(t; a2, s), with g the gamma density of shape a and scale s.
The canonical HRF is SPM's (a1=6, a2=16, ratio=1/6, s=1; impulse peak at 4.9985 s). The
stretched library time-stretches it: HRF i has scale ``peak_s / CANONICAL_PEAK_S`` so
that its impulse response peaks exactly at ``peak_s``, with ``LIBRARY_PEAKS_S`` = 3.0,
3.3, ..., 9.0 s (21 shapes). Stretching keeps the canonical shape (undershoot at ~2.4x the
peak time, undershoot/peak ratio fixed) and widens the response as it slows, as in
measured HRFs.

The response to a stimulus of ``duration`` seconds (boxcar convolved with h) is computed
in closed form from the gamma CDFs, so it can be evaluated exactly at any time (off the TR
grid), and is normalised so that its peak is 1: a regressor's beta is then the peak
response, in the data's units (% BOLD after the GLM's scaling).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import interpolate, optimize, special

#: Impulse peak times of the library HRFs, in seconds (index = HRF index).
LIBRARY_PEAKS_S: tuple[float, ...] = tuple(round(3.0 + 0.3 * i, 1) for i in range(21))

_A1, _A2, _RATIO = 6.0, 16.0, 1.0 / 6.0


def _gamma_pdf(t: np.ndarray, a: float, scale: float) -> np.ndarray:
    x = np.maximum(np.asarray(t, dtype=float), 0.0) / scale
    with np.errstate(divide="ignore"):
        logp = (a - 1.0) * np.log(x) - x - special.gammaln(a) - np.log(scale)
    return np.where(x > 0, np.exp(logp), 0.0)


def _gamma_cdf(t: np.ndarray, a: float, scale: float) -> np.ndarray:
    return special.gammainc(a, np.maximum(np.asarray(t, dtype=float), 0.0) / scale)


def _double_gamma(t: np.ndarray, scale: float) -> np.ndarray:
    return _gamma_pdf(t, _A1, scale) - _RATIO * _gamma_pdf(t, _A2, scale)


def _mode(scale: float) -> float:
    """Time of the maximum of the double gamma with this scale (for scale=1: 4.9985 s)."""
    res = optimize.minimize_scalar(
        lambda t: -float(_double_gamma(np.array(t), scale)),
        bounds=(1.0 * scale, 10.0 * scale),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(res.x)


#: Impulse peak time of the canonical (SPM) double gamma, in seconds.
CANONICAL_PEAK_S: float = _mode(1.0)


@dataclass(frozen=True)
class HRF:
    """A double-gamma HRF with time scale ``scale`` (1 = SPM canonical).

    ``impulse(t)`` is the impulse response scaled to peak 1; ``response(t, duration)`` the
    boxcar response (stimulus on from 0 to ``duration``) scaled to peak 1. Both are 0 for
    t < 0 and accept any real times.
    """

    scale: float

    @property
    def peak_s(self) -> float:
        """Time of the impulse response's peak (seconds)."""
        return CANONICAL_PEAK_S * self.scale

    def impulse(self, t: np.ndarray) -> np.ndarray:
        """Impulse response at times ``t`` (s), peak 1."""
        return _double_gamma(t, self.scale) / _impulse_peak(self.scale)

    def _cumulative(self, t: np.ndarray) -> np.ndarray:
        """Integral of the (unscaled) double gamma from 0 to t; 0 for t <= 0."""
        t = np.asarray(t, dtype=float)
        return _gamma_cdf(t, _A1, self.scale) - _RATIO * _gamma_cdf(t, _A2, self.scale)

    def response(self, t: np.ndarray, duration: float) -> np.ndarray:
        """Response at times ``t`` (s after onset) to a boxcar of ``duration`` s, peak 1."""
        if duration < 0 or not np.isfinite(duration):
            raise ValueError(f"stimulus duration must be finite and >= 0, got {duration}")
        if duration == 0:
            return self.impulse(t)
        t = np.asarray(t, dtype=float)
        raw = self._cumulative(t) - self._cumulative(t - duration)
        return raw / _response_peak(self.scale, float(duration))


@functools.cache
def _impulse_peak(scale: float) -> float:
    return float(_double_gamma(np.array(_mode(scale)), scale))


@functools.cache
def _response_peak(scale: float, duration: float) -> float:
    """Peak of the unnormalised boxcar response: coarse grid, then bounded refinement."""
    h = HRF(scale)

    def raw(t: np.ndarray) -> np.ndarray:
        return h._cumulative(t) - h._cumulative(np.asarray(t) - duration)

    grid = np.arange(0.0, duration + 40.0 * scale, 0.01 * scale)
    k = int(np.argmax(raw(grid)))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(
        lambda t: -float(raw(np.array(t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(max(raw(np.array(res.x)), raw(grid[k])))


def canonical() -> HRF:
    """The canonical HRF (SPM double gamma, impulse peak 4.9985 s)."""
    return HRF(1.0)


def stretched_library() -> list[HRF]:
    """21 time-stretched canonical HRFs, impulse peaks 3.0 to 9.0 s (a smooth alternative)."""
    return [HRF(p / CANONICAL_PEAK_S) for p in LIBRARY_PEAKS_S]


#: Sampling step of the GLMsingle library table (s).
SAMPLED_DT = 0.1


@dataclass(frozen=True)
class SampledHRF:
    """An impulse response tabulated every ``dt`` seconds from t = 0 (GLMsingle's format).

    ``response(t, duration)``: the table convolved with a boxcar of round(duration / dt)
    samples (at least 1), PCHIP-interpolated at ``t`` and scaled so the table's peak is 1;
    0 before the onset and after the table ends.
    """

    values: tuple[float, ...]
    dt: float = SAMPLED_DT

    @property
    def peak_s(self) -> float:
        """Time of the impulse response's peak (seconds)."""
        return float(np.argmax(self.values)) * self.dt

    def impulse(self, t: np.ndarray) -> np.ndarray:
        return self.response(t, 0.0)

    def response(self, t: np.ndarray, duration: float) -> np.ndarray:
        if duration < 0 or not np.isfinite(duration):
            raise ValueError(f"stimulus duration must be finite and >= 0, got {duration}")
        n = max(1, round(duration / self.dt))
        table = _boxcar_table(self.values, self.dt, n)
        t = np.asarray(t, dtype=float)
        inside = (t >= 0) & (t <= (len(table) - 1) * self.dt)
        out = np.zeros(t.shape)
        out[inside] = _pchip(self.values, self.dt, n)(t[inside])
        return out / table.max()


@functools.lru_cache(maxsize=256)
def _boxcar_table(values: tuple[float, ...], dt: float, n: int) -> np.ndarray:
    return np.convolve(np.asarray(values), np.ones(n))


@functools.lru_cache(maxsize=256)
def _pchip(values: tuple[float, ...], dt: float, n: int) -> interpolate.PchipInterpolator:
    table = _boxcar_table(values, dt, n)
    return interpolate.PchipInterpolator(np.arange(len(table)) * dt, table, extrapolate=False)


@functools.cache
def glmsingle_canonical() -> SampledHRF:
    """GLMsingle's canonical HRF (its ``basichrf`` table, 0.1 s steps): types A and no-library."""
    path = resources.files("fmridecode.glm") / "data" / "glmsingle_canonical_hrf.tsv"
    table = np.loadtxt(str(path))
    if table.ndim != 1 or not np.all(np.isfinite(table)):
        raise RuntimeError(f"{path}: expected a finite column of numbers, got {table.shape}")
    return SampledHRF(tuple(float(v) for v in table))


@functools.cache
def library() -> list[SampledHRF]:
    """GLMsingle's library: 20 HRFs (index 0..19 = GLMsingle's HRFindex), 0.1 s tables."""
    path = resources.files("fmridecode.glm") / "data" / "glmsingle_hrf_library.tsv"
    table = np.loadtxt(str(path))
    if table.shape != (501, 20) or not np.all(np.isfinite(table)):
        raise RuntimeError(f"{path}: expected a finite 501 x 20 table, got {table.shape}")
    return [SampledHRF(tuple(float(v) for v in col)) for col in table.T]


def sample(hrfs: list[HRF], duration: float, dt: float = 0.1, length_s: float = 40.0) -> np.ndarray:
    """Boxcar responses of ``hrfs`` sampled every ``dt`` s from 0 to ``length_s``: (n, L).

    ``duration`` = 0 gives the impulse responses. Each row peaks at 1 (up to sampling).
    """
    if dt <= 0 or length_s <= 0:
        raise ValueError(f"dt and length_s must be > 0, got {dt}, {length_s}")
    t = np.arange(0.0, length_s + dt / 2, dt)
    return np.stack([h.response(t, duration) for h in hrfs])
