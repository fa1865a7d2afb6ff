"""Benchmark: our GLMsingle (types A-D) against the official package, side by side, one run.

    python bench/glm.py                       # ours only, NSD-session-sized input
    python bench/glm.py --official ~/GLMsingle  # also the official code (importable from PATH)
    python bench/glm.py --voxels 2000 --runs 4  # a quick small run

The input is simulated here (seeded): ``--voxels`` voxels (default 20,000), ``--runs`` runs
(12) of ``--vols`` volumes (226) at TR 1.6 s, 62 trials per run, every condition shown 3 times
in 3 different runs (what types C and D cross-validate on); 60 % of voxels respond with a
random library HRF, the rest is noise (white + 6 slow shared components + drift). Each
implementation runs in its own child process on the same data (written once to a temporary
folder), with GLMsingle's defaults and its onset convention; the child reports its wall time
and its peak resident memory. The parent compares the betas of every type (median per-voxel
r between the implementations) and their recovery of the true amplitudes, and prints a
one-line summary last.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TR = 1.6
STIM_DUR = 3.0
TRIALS_PER_RUN = 62


def simulate(n_vox: int, n_runs: int, n_vols: int, seed: int, out: Path) -> None:
    """Write data.npy (runs, vols, voxels) float32, events.parquet and truth.npz to ``out``."""
    from fmridecode.glm import hrf
    from fmridecode.glm.design import drift_regressors, trial_regressors

    rng = np.random.default_rng(seed)
    n_trials = n_runs * TRIALS_PER_RUN
    n_cond = n_trials // 3
    # each condition in 3 different runs: assign conditions to run triples round-robin
    runs_of = np.stack([rng.permutation(n_runs)[:3] for _ in range(n_cond)])
    slots: list[list[int]] = [[] for _ in range(n_runs)]
    for c, rs in enumerate(runs_of):
        for r in rs:
            slots[r].append(c)
    lib = hrf.library()
    h_idx = rng.integers(0, len(lib), n_vox)
    responsive = rng.random(n_vox) < 0.6
    gain = rng.uniform(1.0, 3.0, n_vox) * responsive
    cond_effect = gain[None, :] * (1 + 0.5 * rng.standard_normal((n_cond, n_vox)))
    data = np.empty((n_runs, n_vols, n_vox), np.float32)
    events, amps = [], []
    span = (n_vols * TR - 20.0) / TRIALS_PER_RUN
    for r in range(n_runs):
        conds = rng.permutation(np.asarray(slots[r]))[:TRIALS_PER_RUN]
        onsets = 4.4 + span * np.arange(len(conds))
        a = cond_effect[conds] + 0.3 * gain * rng.standard_normal((len(conds), n_vox))
        sig = np.zeros((n_vols, n_vox))
        for h in np.unique(h_idx):
            cols = np.flatnonzero(h_idx == h)
            X = trial_regressors(onsets, n_vols, TR, lib[h], STIM_DUR)
            sig[:, cols] = X @ a[:, cols]
        slow = np.stack(
            [np.convolve(rng.standard_normal(n_vols), np.ones(12) / 12, "same") for _ in range(6)]
        )
        noise = (slow.T * 3.0) @ rng.standard_normal((6, n_vox)) * 0.4
        drift = drift_regressors(n_vols, 2) @ rng.normal(0, [0, 1.5, 0.7], (n_vox, 3)).T
        y = sig + noise + drift + 1.5 * rng.standard_normal((n_vols, n_vox))
        data[r] = 1000 * (1 + y / 100)
        events.append(
            pd.DataFrame(
                {"run": r, "onset": np.round(onsets, 3), "stim_id": [f"c{c:04d}" for c in conds]}
            )
        )
        amps.append(a)
    np.save(out / "data.npy", data)
    pd.concat(events).to_parquet(out / "events.parquet")
    np.savez(out / "truth.npz", amplitudes=np.concatenate(amps), responsive=responsive)


def worker(
    which: str, folder: Path, official_path: str | None, backend: str, chunklen: int
) -> None:
    """Child process: fit, save betas per type, print timing and peak memory as JSON."""
    data = np.load(folder / "data.npy", mmap_mode="r")
    events = pd.read_parquet(folder / "events.parquet")
    runs = [np.ascontiguousarray(d) for d in data]
    ev = [events[events["run"] == r].drop(columns="run") for r in range(len(runs))]
    t0 = time.perf_counter()
    if which == "ours":
        from fmridecode.glm.fit import fit_runs
        from fmridecode.glm.single import GLMOptions

        opts = GLMOptions(onsets="nearest", chunk_size=chunklen, backend=backend)
        res = fit_runs(runs, ev, TR, STIM_DUR, opts, progress=False)
        betas = {t: b.T for t, b in res.betas.items()}  # (V, trials)
    else:
        sys.path.insert(0, official_path)
        from glmsingle.glmsingle import GLM_single

        from fmridecode.glm.official import design_matrices

        design, _ = design_matrices(ev, [d.shape[0] for d in runs], TR)
        params = {"wantfileoutputs": [0, 0, 0, 0], "wantmemoryoutputs": [1, 1, 1, 1]}
        with tempfile.TemporaryDirectory() as tmp:
            out = GLM_single(params).fit(design, [d.T for d in runs], STIM_DUR, TR, outputdir=tmp)
        betas = {
            t: np.asarray(out[k]["betasmd"]).reshape(runs[0].shape[1], -1)
            for k, t in (("typeb", "B"), ("typec", "C"), ("typed", "D"))
        }
    wall = time.perf_counter() - t0
    for t, b in betas.items():
        np.save(folder / f"{which}_{t}.npy", np.asarray(b, np.float32))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_mb": peak_mb}))


def rows_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Pearson r (rows = voxels, columns = trials)."""
    from fmridecode.metrics.glm_recovery import columnwise_r

    return columnwise_r(a.T, b.T)


def run_child(which: str, folder: Path, args: argparse.Namespace) -> dict:
    official = args.official
    cmd = [sys.executable, __file__, "--worker", which, "--folder", str(folder)]
    cmd += ["--backend", args.backend, "--chunklen", str(args.chunklen)]
    if official:
        cmd += ["--official", official]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--vols", type=int, default=226)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--official", help="folder from which the official glmsingle is importable")
    ap.add_argument(
        "--backend", default="numpy", choices=["numpy", "torch"], help="ours: array library"
    )
    ap.add_argument("--chunklen", type=int, default=5000, help="ours: voxels per chunk")
    ap.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, Path(args.folder), args.official, args.backend, args.chunklen)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        simulate(args.voxels, args.runs, args.vols, args.seed, folder)
        print(
            f"simulated {args.voxels} voxels, {args.runs} runs x {args.vols} volumes, "
            f"{args.runs * TRIALS_PER_RUN} trials in {time.perf_counter() - t0:.1f} s"
        )
        truth = np.load(folder / "truth.npz")
        resp = truth["responsive"]
        names = ["ours"] + (["official"] if args.official else [])
        stats = {}
        for which in names:
            stats[which] = run_child(which, folder, args)
            rec = {
                t: float(
                    np.nanmedian(
                        rows_r(np.load(folder / f"{which}_{t}.npy"), truth["amplitudes"].T)[resp]
                    )
                )
                for t in "BCD"
            }
            stats[which]["recovery"] = rec
            print(
                f"{which}: {stats[which]['wall_s']:.1f} s, peak {stats[which]['peak_mb']:.0f} MB, "
                f"recovery (median r vs truth) " + ", ".join(f"{t} {v:.3f}" for t, v in rec.items())
            )
        summary = (
            f"glm bench: {args.voxels} voxels, {args.runs}x{args.vols} vols, "
            f"{args.runs * TRIALS_PER_RUN} trials | ours ({args.backend}, "
            f"chunklen {args.chunklen}) {stats['ours']['wall_s']:.1f} s, "
            f"{stats['ours']['peak_mb']:.0f} MB, recovery D {stats['ours']['recovery']['D']:.3f}"
        )
        if args.official:
            agree = {
                t: float(
                    np.nanmedian(
                        rows_r(
                            np.load(folder / f"ours_{t}.npy"), np.load(folder / f"official_{t}.npy")
                        )
                    )
                )
                for t in "BCD"
            }
            o = stats["official"]
            summary += (
                f" | official {o['wall_s']:.1f} s, {o['peak_mb']:.0f} MB, recovery D "
                f"{o['recovery']['D']:.3f} | speed-up x{o['wall_s'] / stats['ours']['wall_s']:.1f}"
                f" | agreement (median r) " + ", ".join(f"{t} {v:.4f}" for t, v in agree.items())
            )
        else:
            summary += " | official not run (give --official PATH)"
        print(summary)


if __name__ == "__main__":
    main()
