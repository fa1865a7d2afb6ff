"""``glm.method: glmsingle``: the official GLMsingle package (cvnlab/GLMsingle), when installed.

The package is not on the Python package registry; ``envs/glmsingle.yaml`` installs it from
its repository. Its design convention is used: each onset at its nearest volume,
floor(onset / TR + 0.5), one design column per condition (sorted stimulus ids). Its results
are converted to the same ``SessionFit`` as ours, so the rest of the workflow cannot tell
the two apart.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from fmridecode.datasets.bids import Run
from fmridecode.glm.design import onset_volumes
from fmridecode.glm.fit import SessionFit, _trials_table, load_session, session_trials
from fmridecode.glm.single import GLMOptions, GLMSingleResult

INSTALL_HINT = (
    "glm.method: glmsingle needs the official GLMsingle package, which is not on the package "
    "registry: install it with `pip install git+https://github.com/cvnlab/GLMsingle.git` "
    "(or create envs/glmsingle.yaml and run with --sdm conda), or set glm.method: ours"
)


def design_matrices(
    events: list[pd.DataFrame], n_vols: list[int], tr: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """GLMsingle's design: per run (T_r, n_conditions), 1 at (onset volume, condition)."""
    trials = _trials_table(events)
    conditions = np.unique(trials["stim_id"])
    out = []
    for r, T in enumerate(n_vols):
        sel = trials[trials["run"] == r]
        d = np.zeros((T, len(conditions)))
        d[onset_volumes(sel["onset"].to_numpy(), tr), sel["condition"].to_numpy()] = 1
        out.append(d)
    return out, conditions


def official_params(opts: GLMOptions) -> dict:
    """GLMsingle's ``params`` for our options."""
    want = [int(t in opts.needs()) for t in "ABCD"]
    params = {
        "wantlibrary": int(opts.library),
        "wantglmdenoise": int(opts.denoise),
        "wantfracridge": int(opts.ridge),
        "n_pcs": opts.n_pcs,
        "pcstop": opts.pcstop,
        "fracs": np.asarray(opts.fracs),
        "brainthresh": list(opts.brainthresh),
        "wantautoscale": int(opts.autoscale),
        "chunklen": opts.chunk_size,
        "wantfileoutputs": [0, 0, 0, 0],
        "wantmemoryoutputs": want,
    }
    if opts.brain_r2 is not None:
        params["brainR2"] = opts.brain_r2
    if opts.pc_r2_cutoff is not None:
        params["pcR2cutoff"] = opts.pc_r2_cutoff
    if opts.poly_degree is not None:
        params["maxpolydeg"] = opts.poly_degree
    return params


def convert(results: dict, trials: pd.DataFrame, n_runs: int) -> GLMSingleResult:
    """GLMsingle's in-memory results (voxels given as 2D) -> ``GLMSingleResult``."""
    a = results.get("typea", {})
    mean = np.asarray(a.get("meanvol", results["typeb"]["meanvol"])).reshape(-1)
    res = GLMSingleResult(trials=trials, mean=mean.astype(np.float32))
    if a:
        res.onoff_beta = np.asarray(a["betasmd"]).reshape(len(mean), -1)[:, 0]
        res.r2["A"] = np.asarray(a["onoffR2"]).reshape(-1)
    for key, t in (("typeb", "B"), ("typec", "C"), ("typed", "D")):
        if key not in results:
            continue
        r = results[key]
        res.betas[t] = np.asarray(r["betasmd"]).reshape(len(mean), -1).T.astype(np.float32)
        res.r2[t] = np.asarray(r["R2"]).reshape(-1)
        res.r2_run[t] = np.asarray(r["R2run"]).reshape(len(mean), n_runs).T
        res.hrf_index = np.asarray(r["HRFindex"]).reshape(-1)
        if t in ("C", "D") and r.get("noisepool") is not None:
            res.noise_pool = np.asarray(r["noisepool"]).reshape(-1).astype(bool)
            res.pc_voxels = np.asarray(r["pcvoxels"]).reshape(-1).astype(bool)
            res.pcnum = int(r["pcnum"])
            res.xvaltrend = np.asarray(r["xvaltrend"])
        if t == "D":
            res.frac = np.asarray(r["FRACvalue"]).reshape(-1)
            res.scale_offset = np.asarray(r["scaleoffset"]).reshape(len(mean), 2)
    return res


def fit_session_official(
    runs: list[Run],
    mask_img: nib.Nifti1Image | str | Path,
    stim_dur: float,
    options: GLMOptions | None = None,
    *,
    progress: bool = True,
) -> SessionFit:
    """Run the official GLMsingle on one session's masked runs."""
    try:
        from glmsingle.glmsingle import GLM_single
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    opts = options or GLMOptions(onsets="nearest")
    ses = load_session(runs, mask_img, progress=progress)
    design, _ = design_matrices(ses.events, [d.shape[0] for d in ses.data], ses.tr)
    with tempfile.TemporaryDirectory() as tmp:
        results = GLM_single(official_params(opts)).fit(
            design, [d.T for d in ses.data], stim_dur, ses.tr, outputdir=tmp
        )
    trials = _trials_table(ses.events)
    res = convert(results, trials, len(ses.data))
    return SessionFit(res, ses.mask, ses.affine, session_trials(trials, runs))
