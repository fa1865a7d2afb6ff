"""Single-trial GLM: HRF library, design, fit (known answers), and fit_session on NIfTI files.

Synthetic BOLD is made with an independent reference: the double gamma from scipy.stats,
convolved with the stimulus boxcar by numerical integration (midpoint rule), evaluated at
the exact volume times; the library code computes the same response in closed form.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from numpy.polynomial import legendre
from scipy import optimize, stats

from fmridecode.datasets.bids import find_runs
from fmridecode.glm import design, hrf
from fmridecode.glm.fit import fit_runs, fit_session
from fmridecode.glm.single import GLMOptions
from fmridecode.io import DataError

TR = 1.6
DUR = 3.0


def fit_single_trial(
    data, events, tr, stim_dur, *, library=True, poly_degree=None, chunk_size=50000,
    progress=False, run_names=None,
):  # fmt: skip
    """Type B alone, exact onsets, with the double gammas the simulator below uses (the
    stretched library, or the canonical HRF): the result with type B's fields flattened."""
    hrfs = hrf.stretched_library() if library else [hrf.canonical()]
    opts = GLMOptions(
        types=("B",), hrfs=tuple(hrfs), onsets="exact", poly_degree=poly_degree,
        chunk_size=chunk_size,
    )  # fmt: skip
    res = fit_runs(data, events, tr, stim_dur, opts, progress=progress, run_names=run_names)
    res.betas, res.r2 = res.betas["B"], res.r2["B"]
    res.trials = res.trials.drop(columns="condition")
    return res


# ---------------------------------------------------------------- independent reference
def ref_impulse(t: np.ndarray, peak_s: float) -> np.ndarray:
    s = peak_s / hrf.CANONICAL_PEAK_S
    return stats.gamma.pdf(t, 6, scale=s) - stats.gamma.pdf(t, 16, scale=s) / 6


def ref_response(t: np.ndarray, peak_s: float, dur: float, ds: float = 2e-3) -> np.ndarray:
    """Boxcar response by midpoint-rule convolution, scaled so its peak is 1."""
    mids = (np.arange(round(dur / ds)) + 0.5) * ds

    def raw(x: np.ndarray) -> np.ndarray:
        return ref_impulse(np.asarray(x, float)[..., None] - mids, peak_s).sum(-1) * ds

    grid = np.arange(0, 40, 0.05)
    k = int(np.argmax(raw(grid)))
    best = optimize.minimize_scalar(
        lambda x: -raw(x),
        bounds=(grid[k - 1], grid[k + 1]),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return raw(t) / raw(best.x)


def make_onsets(rng: np.random.Generator, n_runs: int, n_vols: int) -> list[np.ndarray]:
    """Off-grid onsets (ms resolution), 5-9 s apart, ending 15 s before the run does."""
    out = []
    for _ in range(n_runs):
        t = 2.0 + np.cumsum(rng.uniform(5, 9, 200))
        out.append(np.round(t[t < n_vols * TR - 15], 3))
    return out


def simulate(onsets, n_vols, peaks, amps, baseline, noise_sd, rng):
    """data[r] (n_vols, V) = baseline * (1 + sum_j amps[j] / 100 * response_j) + noise."""
    data, start = [], 0
    times = np.arange(n_vols) * TR
    for ons in onsets:
        sig = np.zeros((n_vols, len(peaks)))
        rel = times[:, None] - ons[None, :]
        for p in np.unique(peaks):
            cols = np.flatnonzero(peaks == p)
            X = np.where(rel >= 0, ref_response(np.maximum(rel, 0), p, DUR), 0.0)
            sig[:, cols] = X @ amps[start : start + len(ons), cols]
        start += len(ons)
        data.append(baseline * (1 + sig / 100) + noise_sd * rng.standard_normal(sig.shape))
    return data


def events_of(onsets: list[np.ndarray]) -> list[pd.DataFrame]:
    n = 0
    out = []
    for ons in onsets:
        ids = [f"img{n + j:05d}" for j in range(len(ons))]
        n += len(ons)
        out.append(pd.DataFrame({"onset": ons, "duration": DUR, "stim_id": ids}))
    return out


@pytest.fixture(scope="module")
def known():
    """Two voxels, library HRFs 3 (3.9 s) and 14 (7.2 s), 2 runs x 150 volumes, tiny noise."""
    rng = np.random.default_rng(1)
    onsets = make_onsets(rng, 2, 150)
    n = sum(len(o) for o in onsets)
    idx = np.array([3, 14])
    peaks = np.array([hrf.LIBRARY_PEAKS_S[i] for i in idx])
    amps = rng.uniform(0.5, 3.0, (n, 2)) * rng.choice([-1, 1], (n, 2))
    data = simulate(onsets, 150, peaks, amps, 1000.0, 1e-3, rng)
    return onsets, idx, amps, data


# ---------------------------------------------------------------- HRF library
def test_library_peaks_and_normalisation() -> None:
    lib = hrf.stretched_library()
    assert len(lib) == 21 and hrf.LIBRARY_PEAKS_S[0] == 3.0 and hrf.LIBRARY_PEAKS_S[-1] == 9.0
    t = np.arange(-2, 45, 0.001)
    for h, p in zip(lib, hrf.LIBRARY_PEAKS_S, strict=True):
        imp = h.impulse(t)
        assert t[np.argmax(imp)] == pytest.approx(p, abs=1e-3)
        assert imp.max() == pytest.approx(1.0, abs=1e-9)
        for dur in (0.0, DUR):
            r = h.response(t, dur)
            assert r.max() == pytest.approx(1.0, abs=1e-7)
            assert np.all(r[t < 0] == 0)
    assert hrf.canonical().peak_s == pytest.approx(4.9985, abs=1e-4)
    assert hrf.sample(lib[:2], DUR, dt=0.1, length_s=32).shape == (2, 321)


@pytest.mark.parametrize("dur", [0.5, DUR])
def test_response_matches_numerical_convolution(dur: float) -> None:
    t = np.array([-0.3, 0.01, 1.237, 3.3, 5.0017, 8.8, 13.4, 22.2, 37.9])
    for i in (0, 7, 20):
        h = hrf.stretched_library()[i]
        ref = ref_response(t, hrf.LIBRARY_PEAKS_S[i], dur)
        np.testing.assert_allclose(h.response(t, dur), np.where(t < 0, 0, ref), atol=1e-6)


# ---------------------------------------------------------------- design
def test_trial_regressors_are_exact_off_grid() -> None:
    h = hrf.stretched_library()[10]
    col = design.trial_regressors(np.array([3.37]), 40, TR, h, DUR)[:, 0]
    times = np.arange(40) * TR - 3.37
    ref = np.where(times < 0, 0, ref_response(np.maximum(times, 0), hrf.LIBRARY_PEAKS_S[10], DUR))
    np.testing.assert_allclose(col, ref, atol=1e-6)
    rounded = design.trial_regressors(np.array([3.2]), 40, TR, h, DUR)[:, 0]
    assert np.abs(col - rounded).max() > 0.02  # rounding to the grid would be visible


def test_drift_degree_and_legendre() -> None:
    assert design.drift_degree(165, 1.6) == 2  # 4.4 min -> 2.2 -> 2
    assert design.drift_degree(300, 1.0) == 3  # 5 min -> 2.5 -> 3 (half up, as MATLAB)
    assert design.drift_degree(30, 1.0) == 1  # at least 1
    P = design.drift_regressors(101, 3)
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(P[:, 0], 1)
    np.testing.assert_allclose(P[:, 2], (3 * x**2 - 1) / 2)
    np.testing.assert_allclose(P[:, 3], (5 * x**3 - 3 * x) / 2)


# ---------------------------------------------------------------- fit: known answers
def test_known_answer_betas_and_hrf_choice(known) -> None:
    onsets, idx, amps, data = known
    res = fit_single_trial(data, events_of(onsets), TR, DUR, progress=False)
    mean = np.concatenate(data).mean(axis=0)
    expected = amps * 1000.0 / mean  # peak response in % of the voxel's mean signal
    assert res.betas.dtype == np.float32 and res.betas.shape == amps.shape
    np.testing.assert_array_equal(res.hrf_index, idx)
    assert np.all(np.abs(res.betas - expected) <= 1e-3 * np.abs(expected))
    assert np.all(res.r2 > 99.99)
    np.testing.assert_allclose(res.mean, mean, rtol=1e-6)
    assert res.poly_degrees == [2, 2]  # 150 x 1.6 s = 4 min
    assert res.trials["trial"].tolist() == list(range(len(amps)))
    assert res.trials["run"].tolist() == [0] * len(onsets[0]) + [1] * len(onsets[1])
    np.testing.assert_array_equal(res.trials["onset"], np.concatenate(onsets))


def test_rounding_onsets_to_the_grid_would_bias_betas(known) -> None:
    """The known-answer test has teeth: onsets moved to the nearest volume miss by > 1 %."""
    onsets, idx, amps, data = known
    rounded = [np.round(o / TR) * TR for o in onsets]
    res = fit_single_trial(data, events_of(rounded), TR, DUR, progress=False)
    expected = amps * 1000.0 / np.concatenate(data).mean(axis=0)
    assert np.max(np.abs(res.betas - expected) / np.abs(expected)) > 1e-2


def test_drift_is_removed(known) -> None:
    onsets, idx, amps, data = known
    x = np.linspace(-1, 1, 150)
    drift = legendre.legval(x, [0, 25.0, -15.0])  # linear + quadratic, 4 % of baseline
    drifted = [Y + (drift - drift.mean())[:, None] * np.array([1.0, -0.7]) for Y in data]
    ev = events_of(onsets)
    clean = fit_single_trial(data, ev, TR, DUR, progress=False)
    res = fit_single_trial(drifted, ev, TR, DUR, progress=False)
    np.testing.assert_array_equal(res.hrf_index, clean.hrf_index)
    np.testing.assert_allclose(res.betas, clean.betas, rtol=1e-5)
    np.testing.assert_allclose(res.r2, clean.r2, atol=1e-4)
    # without drift regressors (degree 0 = mean only) the drift does bias the betas
    off = fit_single_trial(drifted, ev, TR, DUR, poly_degree=0, progress=False)
    assert np.max(np.abs(off.betas - clean.betas)) > 0.05


def test_units_percent_signal_change() -> None:
    """2 % responses at baselines 1000 and 250 give the same betas; raw = beta * mean / 100."""
    rng = np.random.default_rng(2)
    onsets = make_onsets(rng, 2, 120)
    n = sum(len(o) for o in onsets)
    amps = np.full((n, 2), 2.0)
    peak = np.full(2, hrf.CANONICAL_PEAK_S)
    data = simulate(onsets, 120, peak, amps, np.array([1000.0, 250.0]), 0.0, rng)
    res = fit_single_trial(data, events_of(onsets), TR, DUR, library=False, progress=False)
    assert len(res.hrfs) == 1 and np.all(res.hrf_index == 0)
    np.testing.assert_allclose(res.betas[:, 0], res.betas[:, 1], rtol=1e-5)
    raw = res.betas * res.mean / 100.0
    np.testing.assert_allclose(raw[:, 0], 20.0, rtol=1e-4)  # 2 % of 1000
    np.testing.assert_allclose(raw[:, 1], 5.0, rtol=1e-4)  # 2 % of 250
    # the divisor is the mean signal (baseline + mean response), hence slightly below 2 %
    assert np.all((res.betas > 1.9) & (res.betas < 2.0))


def test_chunking_gives_identical_results() -> None:
    rng = np.random.default_rng(3)
    onsets = make_onsets(rng, 2, 80)
    data = [500 + rng.standard_normal((80, 23)) * 5 for _ in onsets]
    ev = events_of(onsets)
    one = fit_single_trial(data, ev, TR, DUR, progress=False)
    many = fit_single_trial(data, ev, TR, DUR, chunk_size=4, progress=False)
    assert len(np.unique(one.hrf_index)) > 3  # random data: many different HRFs chosen
    np.testing.assert_array_equal(many.hrf_index, one.hrf_index)
    np.testing.assert_array_equal(many.betas, one.betas)
    np.testing.assert_array_equal(many.r2, one.r2)


def test_per_run_fit_equals_stacked_session_design() -> None:
    """Block-diagonal design: the per-run fit equals least squares on the whole session."""
    rng = np.random.default_rng(4)
    onsets = make_onsets(rng, 2, 70)
    n_vols = [70, 70]
    data = [300 + rng.standard_normal((70, 5)) * 3 for _ in onsets]
    res = fit_single_trial(
        data, events_of(onsets), TR, DUR, library=False, poly_degree=1, progress=False
    )
    h = hrf.canonical()
    Xs = [design.run_design(o, T, TR, h, DUR, 1) for o, T in zip(onsets, n_vols, strict=True)]
    n = [len(o) for o in onsets]
    X = design.session_design(Xs, n)
    Y = np.concatenate(data)
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    mean = Y.mean(axis=0)
    np.testing.assert_allclose(res.betas, coef[: sum(n)] * 100 / mean, rtol=1e-5, atol=1e-6)
    D = design.session_design([x[:, -2:] for x in Xs], [0, 0])
    d_coef, *_ = np.linalg.lstsq(D, Y, rcond=None)
    ss = ((Y - X @ coef) ** 2).sum(0)
    ss0 = ((Y - D @ d_coef) ** 2).sum(0)
    np.testing.assert_allclose(res.r2, 100 * (1 - ss / ss0), atol=1e-3)


# ---------------------------------------------------------------- fit: errors
def test_fit_errors() -> None:
    rng = np.random.default_rng(5)
    ok = [1000 + rng.standard_normal((60, 3))]
    ev = events_of([np.array([2.0, 9.5, 20.1])])
    with pytest.raises(DataError, match="no trials"):
        fit_single_trial(ok, [ev[0].iloc[:0]], TR, DUR, progress=False)
    with pytest.raises(DataError, match="too short for drift polynomials of degree 3"):
        fit_single_trial([ok[0][:3]], ev, TR, DUR, poly_degree=3, progress=False)
    late = events_of([np.array([2.0, 200.0])])
    with pytest.raises(
        DataError, match=r"my_run.nii.gz: trial 1 \(onset 200.000 s\) has no response"
    ):
        fit_single_trial(ok, late, TR, DUR, progress=False, run_names=["my_run.nii.gz"])
    twin = events_of([np.array([2.0, 9.5, 9.5])])
    with pytest.raises(DataError, match="rank deficient"):
        fit_single_trial(ok, twin, TR, DUR, progress=False)
    zero = [ok[0] * np.array([1.0, 0.0, 1.0])]
    with pytest.raises(DataError, match="mean signal of 0"):
        fit_single_trial(zero, ev, TR, DUR, progress=False)
    nan = [ok[0].copy()]
    nan[0][5, 1] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        fit_single_trial(nan, ev, TR, DUR, progress=False)


# ---------------------------------------------------------------- fit_session on files
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def write_session(root: Path, vols: list[np.ndarray], onsets, affines=None) -> None:
    func = root / "sub-01" / "ses-01" / "func"
    func.mkdir(parents=True)
    (root / "task-images_bold.json").write_text(json.dumps({"RepetitionTime": TR}))
    for r, (vol, ev) in enumerate(zip(vols, events_of(onsets), strict=True), start=1):
        img = nib.Nifti1Image(vol.astype(np.float32), AFFINE if affines is None else affines[r - 1])
        img.header.set_zooms((2.0, 2.0, 2.0, TR))
        stem = func / f"sub-01_ses-01_task-images_run-{r:02d}"
        nib.save(img, f"{stem}_bold.nii.gz")
        ev.to_csv(f"{stem}_events.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def session():
    """(4, 3, 2) grid, 9 voxels in the mask with library HRFs 2 / 10 / 18, 2 runs x 100 vols."""
    rng = np.random.default_rng(6)
    shape = (4, 3, 2)
    mask = np.zeros(shape, bool)
    mask[1:4, 0:3, 1] = True
    onsets = make_onsets(rng, 2, 100)
    n = sum(len(o) for o in onsets)
    idx = np.array([2, 10, 18] * 3)
    peaks = np.array([hrf.LIBRARY_PEAKS_S[i] for i in idx])
    amps = rng.uniform(0.5, 3.0, (n, 9))
    base = rng.uniform(500, 1500, 9)
    runs = simulate(onsets, 100, peaks, amps, base, 1e-3, rng)
    vols = []
    for Y in runs:
        vol = np.full((*shape, 100), 800.0)  # outside the mask: signal that must be ignored
        vol[mask] = Y.T
        vols.append(vol)
    expected = amps * base / np.concatenate(runs).mean(axis=0)
    return mask, onsets, idx, expected, vols


def test_fit_session_outputs(tmp_path: Path, session) -> None:
    mask, onsets, idx, expected, vols = session
    write_session(tmp_path, vols, onsets)
    runs = find_runs(tmp_path, "01", session="01")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    opts = GLMOptions(types=("B",), hrfs=tuple(hrf.stretched_library()), onsets="exact")
    fit = fit_session(runs, mask_img, DUR, opts, progress=False)
    trials = fit.trials
    n = len(expected)
    np.testing.assert_array_equal(fit.mask, mask)
    assert np.allclose(fit.affine, AFFINE)
    got = fit.result.betas["B"]  # (n_trials, V) in the mask's C order
    assert got.dtype == np.float32
    assert np.all(np.abs(got - expected) <= 1e-3 * np.abs(expected))
    np.testing.assert_array_equal(fit.result.hrf_index, idx)
    assert np.all(fit.result.r2["B"] > 99.9)
    assert list(trials.columns) == ["trial", "session", "run", "onset", "stim_id"]
    assert trials["trial"].tolist() == list(range(n))
    assert set(trials["session"]) == {"01"}
    assert trials["run"].tolist() == [1] * len(onsets[0]) + [2] * len(onsets[1])
    np.testing.assert_allclose(trials["onset"], np.concatenate(onsets))
    assert trials["stim_id"].tolist() == [f"img{j:05d}" for j in range(n)]


def test_fit_session_refuses_mismatched_grids(tmp_path: Path, session) -> None:
    mask, onsets, idx, expected, vols = session
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0
    write_session(tmp_path, vols, onsets, affines=[AFFINE, shifted])
    runs = find_runs(tmp_path, "01")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    with pytest.raises(DataError, match="run-02_bold.nii.gz: affine differs"):
        fit_session(runs, mask_img, DUR, progress=False)
    with pytest.raises(DataError, match="grid"):
        fit_session(runs, nib.Nifti1Image(np.ones((4, 3, 3), np.uint8), AFFINE), DUR)


def test_fit_session_names_a_truncated_run_and_nan_voxels(tmp_path: Path, session) -> None:
    """Damaged BOLD files stop the fit with the file named, never with NaN betas."""
    mask, onsets, idx, expected, vols = session
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    nan = [v.copy() for v in vols]
    nan[1][2, 1, 1, 40:] = np.nan  # one voxel inside the mask, from volume 40 on
    nan[1][0, 0, 0, :] = np.nan  # outside the mask: harmless
    write_session(tmp_path / "nan", nan, onsets)
    runs = find_runs(tmp_path / "nan", "01")
    with pytest.raises(
        DataError, match=r"run-02_bold\.nii\.gz: 1 voxel\(s\) inside the brain mask"
    ):
        fit_session(runs, mask_img, DUR, progress=False)
    write_session(tmp_path / "cut", vols, onsets)
    bold = tmp_path / "cut/sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_bold.nii.gz"
    bold.write_bytes(bold.read_bytes()[: bold.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(DataError, match=r"run-01_bold\.nii\.gz: cannot read the image data"):
        fit_session(find_runs(tmp_path / "cut", "01"), mask_img, DUR, progress=False)


def test_r2_per_roi_averages_sessions_then_takes_the_roi_median(tmp_path: Path) -> None:
    """glm_r2 rows: each type's R2 map averaged over sessions, median over an ROI's voxels."""
    from fmridecode.glm.outputs import r2_per_roi, read_map

    names = ["meanvol", "R2_B", "R2_C"]
    shape = (3, 2, 2)
    sessions = []
    for k, offset in enumerate((0.0, 10.0)):
        vol = np.zeros((*shape, 3), np.float32)
        vol[..., 1] = np.arange(12).reshape(shape) + offset  # R2_B: 0..11 (+10)
        vol[..., 2] = 50.0 + offset  # R2_C: constant
        maps, summary = tmp_path / f"maps{k}.nii.gz", tmp_path / f"summary{k}.json"
        nib.save(nib.Nifti1Image(vol, AFFINE), maps)
        summary.write_text(json.dumps({"maps": names}))
        sessions.append((maps, summary))
    np.testing.assert_array_equal(read_map(*sessions[1], "R2_C"), np.full(shape, 60.0))
    roi = np.zeros(shape, np.uint8)
    roi[0, :, :] = 1  # voxels 0..3 of C order
    masks = {"a": nib.Nifti1Image(roi, AFFINE), "all": nib.Nifti1Image(roi * 0 + 1, AFFINE)}
    rows = {(r["roi"], r["glm_type"]): r for r in r2_per_roi(sessions, masks)}
    # session mean of R2_B = voxel index + 5; ROI a holds voxels 0..3: median 6.5
    assert rows[("a", "B")] == {"roi": "a", "glm_type": "B", "value": 6.5, "n": 4}
    assert rows[("all", "B")]["value"] == 10.5 and rows[("all", "B")]["n"] == 12
    assert rows[("a", "C")]["value"] == 55.0 and len(rows) == 4
    with pytest.raises(DataError, match=r"summary0\.json: no map named 'R2_D'"):
        read_map(*sessions[0], "R2_D")
    with pytest.raises(DataError, match="ROI b: grid"):
        r2_per_roi(sessions, {"b": nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), AFFINE)})
