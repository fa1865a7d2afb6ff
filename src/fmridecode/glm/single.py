"""The GLMsingle method (Prince et al. 2022): single-trial betas of types A to D.

- A (on-off): all trials as one regressor with the canonical HRF; its R2 picks voxels.
- B (FITHRF): every library HRF is fitted (single-trial OLS, drift polynomials per run) and
  each voxel keeps the HRF with the largest R2.
- C (FITHRF_GLMDENOISE): noise PCs from a pool of unresponsive voxels join the drift as
  nuisance regressors; their number is chosen by leave-one-run-out cross-validation of the
  single-trial betas (``xval``), judged on voxels whose on-off R2 passes a cut.
- D (FITHRF_GLMDENOISE_RR): fractional ridge per voxel on top of C, the fraction chosen by the
  same cross-validation, then each voxel's betas rescaled (scale and offset) to best match
  its unregularised betas.

All of it follows the official implementation (cvnlab/GLMsingle) step by step: nuisance
regressors are projected out of data and design (Frisch-Waugh), R2 (%) compares the trial
model with the drift-free data, betas are in % of |mean signal|. What differs is how it is
computed: each design is factorised once per (HRF, run) and applied to all voxels with that
HRF at once, runs are fitted as the blocks they are, the ridge and the cross-validation are
vectorised over voxels and levels, and voxels are processed in chunks to bound memory.
``onsets: exact`` (an option of ours) models onsets off the TR grid instead of moving them
to the nearest volume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fmridecode.glm import denoise, ridge, xval
from fmridecode.glm import hrf as hrf_lib
from fmridecode.glm.backend import Backend
from fmridecode.glm.design import drift_degree, drift_regressors, run_design, trial_regressors
from fmridecode.io import DataError

log = logging.getLogger(__name__)

TYPES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class GLMOptions:
    """The method's options, named after GLMsingle's (``want*`` flags without the prefix)."""

    types: tuple[str, ...] = TYPES  #: which betas to return (the others are computed if needed)
    library: bool = True  #: choose each voxel's HRF from the library (else the canonical)
    denoise: bool = True  #: GLMdenoise noise PCs (type C, and D on top of them)
    ridge: bool = True  #: fractional ridge (type D)
    n_pcs: int = 10  #: largest number of noise PCs tried
    pcstop: float = 1.05  #: stop adding PCs within this factor of the best; <= 0: use -pcstop
    fracs: tuple[float, ...] = tuple(np.round(np.linspace(1.0, 0.05, 20), 10))
    brainthresh: tuple[float, float] = (99.0, 0.1)  #: percentile and fraction for "bright"
    brain_r2: float | None = None  #: on-off R2 (%) below which voxels may join the noise pool
    pc_r2_cutoff: float | None = None  #: on-off R2 (%) above which voxels judge the PC count
    autoscale: bool = True  #: rescale type-D betas to match the unregularised ones
    onsets: str = "nearest"  #: "nearest" (GLMsingle) or "exact"
    poly_degree: int | None = None  #: drift degree; None: round(run minutes / 2)
    chunk_size: int = 50000  #: voxels processed at once
    hrfs: tuple | None = None  #: candidate HRFs overriding the library
    backend: str = "numpy"  #: "numpy" or "torch" for the voxel-wise linear algebra
    device: str = "auto"  #: torch device ("auto": CUDA when available)

    def needs(self) -> set[str]:
        """The types that must be computed for the requested ones."""
        need = set(self.types)
        if "D" in need:
            need |= {"A", "B", "C"} if self.denoise else {"A", "B"}
        if "C" in need:
            need |= {"A", "B"}
        return need


@dataclass
class GLMSingleResult:
    """Outputs for one fit (V voxels in the order given; trial axis chronological)."""

    trials: pd.DataFrame  #: trial, run (index into the runs), onset, stim_id, condition
    mean: np.ndarray  #: (V,) mean signal over all volumes
    betas: dict[str, np.ndarray] = field(default_factory=dict)  #: type -> (n_trials, V) % BOLD
    r2: dict[str, np.ndarray] = field(default_factory=dict)  #: type -> (V,) R2 %
    r2_run: dict[str, np.ndarray] = field(default_factory=dict)  #: type -> (n_runs, V)
    onoff_beta: np.ndarray | None = None  #: (V,) type-A beta, % BOLD
    hrf_index: np.ndarray | None = None  #: (V,) chosen library HRF
    hrf_index_run: np.ndarray | None = None  #: (n_runs, V) best HRF per run
    fit_hrf_r2: np.ndarray | None = None  #: (n_hrfs, V) R2 % of every library HRF
    brain_r2: float | None = None
    pc_r2_cutoff: float | None = None
    noise_pool: np.ndarray | None = None  #: (V,) bool
    pc_voxels: np.ndarray | None = None  #: (V,) bool, voxels judging the PC count
    pc_regressors: list[np.ndarray] = field(default_factory=list)  #: per run (T_r, n_pcs+1)
    glmbadness: np.ndarray | None = None  #: (n_pcs+1, V) cross-validation error
    xvaltrend: np.ndarray | None = None  #: (n_pcs+1,) -median badness over pc_voxels
    pcnum: int = 0
    frac: np.ndarray | None = None  #: (V,) chosen ridge fraction
    rrbadness: np.ndarray | None = None  #: (n_fracs, V)
    scale_offset: np.ndarray | None = None  #: (V, 2)
    hrfs: list = field(default_factory=list)
    poly_degrees: list[int] = field(default_factory=list)


def _orth(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``a`` (rank-revealing: tiny directions dropped)."""
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, s > s.max() * 1e-10] if s.size else u


def _project(q: Any, a: Any) -> Any:
    return a - q @ (q.T @ a)


def _ols_blocks(xs: Sequence[Any], ys: Sequence[Any], bk: Backend) -> list[Any]:
    """Least squares per run block: coefficients (p_r, V) of ys[r] on xs[r]."""
    out = []
    for x, y in zip(xs, ys, strict=True):
        q, r = bk.qr(x)
        out.append(bk.solve(r, q.T @ y))
    return out


def _r2(model: Sequence[Any], data: Sequence[Any], bk: Backend) -> tuple[np.ndarray, np.ndarray]:
    """Overall and per-run R2 (%) of drift-free model fits against drift-free data."""
    res = bk.stack([((y - m) ** 2).sum(0) for m, y in zip(model, data, strict=True)])
    tot = bk.stack([(y**2).sum(0) for y in data])
    overall = 100 * (1 - bk.divide(res.sum(0), tot.sum(0), 1.0))
    per_run = 100 * (1 - bk.divide(res, tot, 1.0))
    return bk.numpy(overall), bk.numpy(per_run)


@dataclass
class _Fit:
    """What every pass of one fit shares (arrays of the backend where they meet voxels)."""

    bk: Backend
    data: Sequence[np.ndarray]
    starts: np.ndarray  #: first trial of each run, and the total
    chunks: list[slice]
    pct: np.ndarray  #: 100 / |mean| per voxel
    drift_q: list[np.ndarray]  #: numpy orthonormal drift basis per run
    drift_b: list[Any]  #: the same on the backend
    raw: list[list[Any]]  #: [HRF][run] trial regressors (n_vols, n_trials_r), backend
    raw_drift_free: list[list[Any]]  #: the same with the drift projected out
    progress: bool

    def projected(self, qs: Sequence[Any], cols: Any) -> list[Any]:
        """Per run: the data's voxel columns ``cols`` with run r's nuisance ``qs[r]`` removed."""
        return [_project(q, self.bk.array(y[:, cols])) for q, y in zip(qs, self.data, strict=True)]

    def nuisance(self, pcs: Sequence[np.ndarray]) -> list[Any]:
        """Per run: orthonormal basis of drift + the given PC columns, on the backend."""
        return [
            self.bk.array(_orth(np.hstack([q, p]))) for q, p in zip(self.drift_q, pcs, strict=True)
        ]

    def groups(self, hrf_index: np.ndarray, desc: str) -> Iterator[tuple[int, np.ndarray]]:
        """(HRF, voxel columns using it) per voxel chunk, with a progress bar over chunk x HRF."""
        n_h = len(self.raw)
        with tqdm(total=len(self.chunks) * n_h, desc=desc, disable=not self.progress) as bar:
            for sl in self.chunks:
                for h in range(n_h):
                    cols = np.flatnonzero(hrf_index[sl] == h) + sl.start
                    bar.update()
                    if cols.size:
                        yield h, cols

    def by_run(self, stacked: Any) -> list[Any]:
        """Split a (n_trials, V) array into its runs' rows."""
        return [stacked[a:b] for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)]


def _check_design(trials: pd.DataFrame, opts: GLMOptions, names: Sequence[str]) -> None:
    cv_pcs = "C" in opts.needs() and opts.denoise and opts.pcstop > 0
    cv_ridge = "D" in opts.needs() and opts.ridge and len(set(opts.fracs)) > 1
    if (cv_pcs or cv_ridge) and not xval.has_repeats_across_runs(
        trials["condition"].to_numpy(), trials["run"].to_numpy()
    ):
        raise DataError(
            f"{names[0]}...: GLM types C/D choose the number of noise PCs and the ridge "
            f"fraction by cross-validation across runs, which needs conditions repeated in "
            f"different runs; none of the {trials['condition'].nunique()} conditions is. "
            "Request only types A and B (glm.types), or fix the PC count (glm.pcstop: -N) and "
            "use a single ridge fraction (glm.fracs: [f])."
        )


def fit_glm(
    data: Sequence[np.ndarray],
    trials: pd.DataFrame,
    n_vols: Sequence[int],
    tr: float,
    stim_dur: float,
    opts: GLMOptions,
    names: Sequence[str],
    progress: bool = True,
) -> GLMSingleResult:
    """Fit the requested types. ``data[r]`` (T_r, V); ``trials`` has run, onset, condition."""
    need = opts.needs()
    _check_design(trials, opts, names)
    bk = Backend(opts.backend, opts.device)
    n_runs, n_vox = len(data), data[0].shape[1]
    runs = trials["run"].to_numpy()
    onsets = [trials.loc[runs == r, "onset"].to_numpy() for r in range(n_runs)]
    n_per_run = [len(o) for o in onsets]
    degrees = [
        drift_degree(T, tr) if opts.poly_degree is None else opts.poly_degree for T in n_vols
    ]
    drift_q = [_orth(drift_regressors(T, d)) for T, d in zip(n_vols, degrees, strict=True)]
    canonical = hrf_lib.glmsingle_canonical()
    if opts.hrfs is not None:
        hrfs = list(opts.hrfs)
    else:
        hrfs = hrf_lib.library() if opts.library else [canonical]
    # raw (n_vols, n_trials_r) trial regressors per HRF and run; run_design validates them
    raw = [
        [
            run_design(onsets[r], n_vols[r], tr, h, stim_dur, degrees[r], names[r], opts.onsets)[
                :, : n_per_run[r]
            ]
            for r in range(n_runs)
        ]
        for h in hrfs
    ]
    mean = np.zeros(n_vox)
    for y in data:
        mean += y.sum(axis=0, dtype=np.float64)
    mean /= sum(n_vols)
    if np.any(mean == 0):
        bad = int(np.flatnonzero(mean == 0)[0])
        raise DataError(
            f"{names[0]}...: voxel column {bad} has a mean signal of 0, so % BOLD is "
            "undefined; mask it out"
        )
    drift_b = [bk.array(q) for q in drift_q]
    fit = _Fit(
        bk=bk,
        data=data,
        starts=np.concatenate([[0], np.cumsum(n_per_run)]).astype(int),
        chunks=[
            slice(a, min(a + opts.chunk_size, n_vox)) for a in range(0, n_vox, opts.chunk_size)
        ],
        pct=100.0 / np.abs(mean),
        drift_q=drift_q,
        drift_b=drift_b,
        raw=[[bk.array(x) for x in per_run] for per_run in raw],
        raw_drift_free=[
            [_project(q, bk.array(x)) for q, x in zip(drift_b, per_run, strict=True)]
            for per_run in raw
        ],
        progress=progress,
    )
    onoff = [
        trial_regressors(onsets[r], n_vols[r], tr, canonical, stim_dur, opts.onsets).sum(
            axis=1, keepdims=True
        )
        for r in range(n_runs)
    ]
    res = GLMSingleResult(trials=trials, mean=mean.astype(np.float32), hrfs=hrfs)
    res.poly_degrees = degrees
    _fit_ab(fit, onoff, res)
    if not need & {"C", "D"}:
        return res
    pairs = bk.array(xval.pair_matrix(trials["condition"].to_numpy(), runs))
    pcs = _choose_pcs(fit, opts, pairs, names, res)
    _fit_cd(fit, opts, need, pcs, pairs, res)
    return res


def _fit_ab(fit: _Fit, onoff: list[np.ndarray], res: GLMSingleResult) -> None:
    """Type A (on-off, canonical HRF) and type B (best library HRF by R2) for every voxel."""
    bk, n_vox, n_runs = fit.bk, len(fit.pct), len(fit.data)
    onoff_x = [_project(q, bk.array(x)) for q, x in zip(fit.drift_b, onoff, strict=True)]
    xa = bk.cat(onoff_x)[:, 0]
    factors = [[bk.qr(x) for x in per_run] for per_run in fit.raw_drift_free]
    n_h = len(factors)
    res.onoff_beta = np.zeros(n_vox, np.float32)
    res.r2["A"] = np.zeros(n_vox, np.float32)
    fit_r2 = np.zeros((n_h, n_vox), np.float32)
    fit_r2_run = np.zeros((n_h, n_runs, n_vox), np.float32)
    betas = np.zeros((fit.starts[-1], n_vox), np.float32)
    hrf_index = np.zeros(n_vox, np.int64)
    bar = tqdm(total=len(fit.chunks) * n_h, desc="GLM types A-B", disable=not fit.progress)
    for sl in fit.chunks:
        yd = fit.projected(fit.drift_b, sl)
        b = (xa @ bk.cat(yd)) / (xa @ xa)
        res.r2["A"][sl] = _r2([x * b for x in onoff_x], yd, bk)[0]
        res.onoff_beta[sl] = bk.numpy(b) * fit.pct[sl]
        tot_run = bk.stack([(y**2).sum(0) for y in yd])
        best = np.full(sl.stop - sl.start, -np.inf)
        for h in range(n_h):
            proj = [q.T @ y for (q, _), y in zip(factors[h], yd, strict=True)]
            ss_run = tot_run - bk.stack([(p**2).sum(0) for p in proj])
            r2h = bk.numpy(100 * (1 - bk.divide(ss_run.sum(0), tot_run.sum(0), 1.0)))
            fit_r2_run[h, :, sl] = bk.numpy(100 * (1 - bk.divide(ss_run, tot_run, 1.0)))
            fit_r2[h, sl] = r2h
            better = r2h > best
            best[better] = r2h[better]
            hrf_index[sl][better] = h
            if better.any():
                cols = np.flatnonzero(better)
                sel = bk.index(cols)
                for r, ((_, rr), p) in enumerate(zip(factors[h], proj, strict=True)):
                    rows = slice(fit.starts[r], fit.starts[r + 1])
                    got = bk.numpy(bk.solve(rr, p[:, sel]))
                    betas[rows, cols + sl.start] = got * fit.pct[cols + sl.start]
            bar.update()
    bar.close()
    res.fit_hrf_r2, res.hrf_index = fit_r2, hrf_index
    res.hrf_index_run = fit_r2_run.argmax(axis=0)
    res.r2["B"] = fit_r2.max(axis=0)
    res.r2_run["B"] = np.take_along_axis(fit_r2_run, hrf_index[None, None, :], axis=0)[0]
    res.betas["B"] = betas


def _choose_pcs(
    fit: _Fit, opts: GLMOptions, pairs: Any, names: Sequence[str], res: GLMSingleResult
) -> list[np.ndarray]:
    """Thresholds, noise pool, candidate PCs and the cross-validated PC count; the PCs to use."""
    thresh = None
    if opts.brain_r2 is None or opts.pc_r2_cutoff is None:
        thresh = denoise.tail_threshold(res.r2["A"])
    res.brain_r2 = float(opts.brain_r2 if opts.brain_r2 is not None else thresh)
    res.pc_r2_cutoff = float(opts.pc_r2_cutoff if opts.pc_r2_cutoff is not None else thresh)
    if not opts.denoise:
        return [np.zeros((q.shape[0], 0)) for q in fit.drift_q]
    pool = denoise.noise_pool(res.mean, res.r2["A"], res.brain_r2, opts.brainthresh)
    if not pool.any():
        raise DataError(
            f"{names[0]}...: the GLMdenoise noise pool is empty (no bright voxel has an "
            f"on-off R2 below {res.brain_r2:.3g} %); set glm.brainR2 higher or turn "
            "glm.wantglmdenoise off"
        )
    res.noise_pool = pool
    idx = np.flatnonzero(pool)
    res.pc_regressors = [
        denoise.noise_pcs(y[:, idx], q, opts.n_pcs)
        for y, q in zip(fit.data, fit.drift_q, strict=True)
    ]
    pc_voxels = res.r2["A"] > res.pc_r2_cutoff
    if not pc_voxels.any():
        log.warning("no voxel passes pcR2cutoff; judging the PC count on the best 100")
        pc_voxels[np.argsort(-res.r2["A"], kind="stable")[:100]] = True
    res.pc_voxels = pc_voxels
    if opts.pcstop <= 0:
        res.pcnum = int(-opts.pcstop)
    else:
        bk = fit.bk
        nuisance = [
            fit.nuisance([p[:, :n] for p in res.pc_regressors]) for n in range(opts.n_pcs + 1)
        ]
        bad = np.zeros((opts.n_pcs + 1, len(fit.pct)))
        for h, cols in fit.groups(res.hrf_index, "GLMdenoise cross-validation"):
            per_level = []
            for nq in nuisance:
                xs = [_project(q, x) for q, x in zip(nq, fit.raw[h], strict=True)]
                per_level.append(bk.cat(_ols_blocks(xs, fit.projected(nq, cols), bk)))
            bad[:, cols] = xval.badness(per_level, pairs, bk)
        res.glmbadness = bad.astype(np.float32)
        res.xvaltrend = -np.median(bad[:, pc_voxels], axis=1)
        res.pcnum = denoise.choose_pcnum(res.xvaltrend, opts.pcstop)
    log.info("noise PCs used: %d", res.pcnum)
    return [p[:, : res.pcnum] for p in res.pc_regressors]


def _fit_cd(
    fit: _Fit,
    opts: GLMOptions,
    need: set[str],
    pcs: list[np.ndarray],
    pairs: Any,
    res: GLMSingleResult,
) -> None:
    """Types C (OLS with drift + PCs) and D (fractional ridge on top, fraction by CV)."""
    bk, n_vox, n_runs, n_trials = fit.bk, len(fit.pct), len(fit.data), int(fit.starts[-1])
    nuis = fit.nuisance(pcs)
    fracs = sorted({float(f) for f in opts.fracs}, reverse=True)
    want_d = "D" in need and opts.ridge
    cv_ridge = want_d and len(fracs) > 1
    use_fracs = fracs if fracs[0] == 1.0 else [1.0, *fracs]
    extra = len(use_fracs) - len(fracs)  # 1 when the reference fraction 1 was added
    autoscale = opts.autoscale and (cv_ridge or extra == 1)
    betas_c = np.zeros((n_trials, n_vox), np.float32)
    r2_c, r2run_c = np.zeros(n_vox, np.float32), np.zeros((n_runs, n_vox), np.float32)
    betas_d = np.zeros((n_trials, n_vox), np.float32)
    r2_d, r2run_d = np.zeros(n_vox, np.float32), np.zeros((n_runs, n_vox), np.float32)
    frac = np.ones(n_vox, np.float32)
    scale_offset = np.tile(np.array([1.0, 0.0], np.float32), (n_vox, 1))
    rrbad = np.zeros((len(fracs), n_vox), np.float32) if cv_ridge else None
    for h, cols in fit.groups(res.hrf_index, "GLM types C-D"):
        xs = [_project(q, x) for q, x in zip(nuis, fit.raw[h], strict=True)]
        ys = fit.projected(nuis, cols)
        yd = fit.projected(fit.drift_b, cols)
        ols = _ols_blocks(xs, ys, bk)
        model = [x @ b for x, b in zip(fit.raw_drift_free[h], ols, strict=True)]
        r2_c[cols], r2run_c[:, cols] = _r2(model, yd, bk)
        betas_c[:, cols] = bk.numpy(bk.cat(ols)) * fit.pct[cols]
        if not want_d:
            continue
        coefs, _ = ridge.frac_ridge(xs, ys, use_fracs, bk)
        levels = [bk.cat(c) for c in coefs]
        if cv_ridge:
            bad = xval.badness(levels, pairs, bk)[extra:]  # the added 1 is only the reference
            rrbad[:, cols] = bad
            pick = bad.argmin(axis=0) + extra
        else:
            pick = np.full(cols.size, len(use_fracs) - 1)
        chosen = levels[0] * 0
        for i, level in enumerate(levels):
            hit = bk.index(pick == i)
            chosen[:, hit] = level[:, hit]
        model = [x @ b for x, b in zip(fit.raw_drift_free[h], fit.by_run(chosen), strict=True)]
        r2_d[cols], r2run_d[:, cols] = _r2(model, yd, bk)
        frac[cols] = np.asarray(use_fracs)[pick]
        if autoscale:
            chosen, slope, offset = ridge.match_scale(chosen, levels[0], bk)
            scale_offset[cols] = np.stack([bk.numpy(slope), bk.numpy(offset)], axis=1)
        betas_d[:, cols] = bk.numpy(chosen) * fit.pct[cols]
    if "C" in need and opts.denoise:
        res.betas["C"], res.r2["C"], res.r2_run["C"] = betas_c, r2_c, r2run_c
    if want_d:
        res.betas["D"], res.r2["D"], res.r2_run["D"] = betas_d, r2_d, r2run_d
        res.frac, res.scale_offset, res.rrbadness = frac, scale_offset, rrbad


def options_from_config(glm: dict) -> GLMOptions:
    """GLMOptions from the workflow's ``glm`` config section (GLMsingle's option names)."""
    fracs = glm.get("fracs")
    return GLMOptions(
        types=tuple(glm["types"]),
        library=bool(glm["wantlibrary"]),
        denoise=bool(glm["wantglmdenoise"]),
        ridge=bool(glm["wantfracridge"]),
        n_pcs=int(glm["n_pcs"]),
        pcstop=float(glm["pcstop"]),
        fracs=GLMOptions.fracs if fracs is None else tuple(float(f) for f in fracs),
        brainthresh=tuple(float(v) for v in glm["brainthresh"]),
        brain_r2=glm.get("brainR2"),
        pc_r2_cutoff=glm.get("pcR2cutoff"),
        autoscale=bool(glm["wantautoscale"]),
        onsets=glm["onsets"],
        poly_degree=glm.get("maxpolydeg"),
        chunk_size=int(glm["chunklen"]),
        backend=glm.get("backend", "numpy"),
        device=glm.get("device", "auto"),
    )
