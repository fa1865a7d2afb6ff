"""Peak memory and time of the data stages on an NSD-sized fake, as sessions are added.

    python bench/data_memory.py                     # 2, 4 and 8 sessions, NSD per-session size
    python bench/data_memory.py --sessions 2 4 --out /tmp/nsd-bench

Writes a fake NSD release in NSD's own layout and formats (the tests' miniature writer,
``tests/mini_nsd.py``, for the experiment files, stimuli and captions; then realistic betas:
81 x 104 x 83 volumes of 750 int16 trials per session, ``betas_sessionSS.nii.gz``, with
``--voxels`` (15,000) nsdgeneral voxels), runs the workflow's ``data`` target with Snakemake
on the first 2, 4 and 8 sessions, and reads each rule's peak RSS and wall time from its
benchmark file. Side by side, in a child process on the same files: the in-memory way (load
every session's masked betas, z-score, average: ``roi.trial_matrix`` + ``average_repeats``,
what the roi rule did before and what most NSD scripts do), and the same for ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SHAPE = (81, 104, 83)
TRIALS = 750


def write_fake(root: Path, sessions: int, voxels: int, seed: int = 0) -> None:
    """The experiment files (mini writer, NSD's trial counts) and realistic betas / ROI files."""
    sys.path.insert(0, str(REPO / "tests"))
    from mini_nsd import AFFINE, write_mini_nsd

    write_mini_nsd(
        root, subjects=(1,), sessions=sessions, trials_per_session=TRIALS, runs_per_session=12,
        shape=(4, 4, 4), n_shared=1000, n_own=9000, image_size=8, timeseries=False,
        formats=("nifti",), seed=seed,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    # nsdgeneral: a slab of voxels in the back of the volume; brain: a larger box around it
    brain = np.zeros(SHAPE, dtype=bool)
    brain[8:73, 8:96, 8:75] = True
    flat = np.flatnonzero(brain.ravel())
    roi = np.zeros(SHAPE, dtype=np.int16) - 1
    roi[brain] = 0
    roi.ravel()[np.sort(rng.choice(flat, voxels, replace=False))] = 1
    pp = root / "nsddata/ppdata/subj01/func1pt8mm"
    nib.save(nib.Nifti1Image(roi, AFFINE), pp / "roi/nsdgeneral.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.int16), AFFINE), pp / "brainmask.nii.gz")
    folder = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    sel = roi == 1
    for ses in range(1, sessions + 1):
        betas = np.zeros(SHAPE + (TRIALS,), dtype=np.int16)
        betas[sel] = np.round(rng.normal(0, 2.0, (voxels, TRIALS)) * 300).astype(np.int16)
        nib.save(nib.Nifti1Image(betas, AFFINE), folder / f"betas_session{ses:02d}.nii.gz")
        del betas


def run_data(root: Path, work: Path, sessions: int) -> dict:
    """Snakemake's data target on the first ``sessions`` sessions: per-rule RSS and time."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = {
        "dataset": f"nsd-{sessions}",
        "results": str(work / "results"),
        "source": {"image_size": 8, "nsd": {"root": str(root), "subjects": [1],
                                            "sessions": list(range(1, sessions + 1))}},
        "roi": {"sets": ["nsdgeneral"]},
    }  # fmt: skip
    (work / "paths.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--cores", "1", "data", "--configfile",
           str(REPO / "presets/nsd.yaml"), str(work / "paths.yaml")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    bench = work / "results" / cfg["dataset"] / "benchmarks"
    out = {}
    for name, f in (
        ("roi", bench / "roi/sub-01_nsdgeneral.tsv"),
        ("stimuli", bench / "prepare_stimuli.tsv"),
    ):
        row = pd.read_csv(f, sep="\t").iloc[0]
        out[name] = {"s": float(row["s"]), "max_rss_mb": float(row["max_rss"])}
    return out


CHILD = """
import json, resource, sys, time
from pathlib import Path
from fmridecode.io import read_parquet
from fmridecode.roi import average_repeats, defined_mask, trial_matrix
from fmridecode.voxel_matrix import SessionBetas, write_voxel_matrix
way, root, res, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
trials = read_parquet(res + "/nsd/sub-01/trials.parquet")
images = read_parquet(res + "/stimuli/images.index.parquet")
split_of = dict(zip(images["stim_id"], images["split"]))
roi = {"files": ["nsddata/ppdata/subj01/func1pt8mm/roi/nsdgeneral.nii.gz"], "labels": [1]}
mask = defined_mask(root, "01", roi)
folder = root + "/nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
betas = [Path(f"{folder}/betas_session{s:02d}.nii.gz") for s in range(1, n + 1)]
tables = [trials[trials["session"] == f"{s:02d}"] for s in range(1, n + 1)]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
if way == "ours":
    sources = [SessionBetas(b, t, "nifti", 300.0) for b, t in zip(betas, tables)]
    out = Path(res) / "bench"
    write_voxel_matrix(sources, mask, split_of, out / "v.npy", out / "m.nii.gz",
                       out / "c.parquet", progress=False)
else:
    X, t = trial_matrix(betas, tables, mask)
    X, index = average_repeats(X / 300.0, t, split_of)
print(json.dumps({"s": time.perf_counter() - t0, "base_mb": base,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(way: str, root: Path, work: Path, sessions: int) -> dict:
    """One way of building the matrix, in a fresh process: its peak RSS and time."""
    res = work / "results" / f"nsd-{sessions}"
    cmd = [sys.executable, "-c", CHILD, way, str(root), str(res), str(sessions)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--voxels", type=int, default=15000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/fmridecode-bench-data"))
    args = ap.parse_args()
    root = args.out / "nsd"
    t0 = time.perf_counter()
    if not (root / "nsddata_betas").exists():
        write_fake(root, max(args.sessions), args.voxels)
    print(f"fake NSD written in {time.perf_counter() - t0:.0f} s: {root}", file=sys.stderr)
    rows = []
    for n in args.sessions:
        job = run_data(root, args.out / f"run-{n}", n)
        ours = run_child("ours", root, args.out / f"run-{n}", n)
        peer = run_child("in_memory", root, args.out / f"run-{n}", n)
        rows.append({
            "sessions": n, "trials": n * TRIALS,
            "ours_peak_mb": round(ours["max_rss_mb"]), "ours_s": round(ours["s"], 1),
            "in_memory_peak_mb": round(peer["max_rss_mb"]), "in_memory_s": round(peer["s"], 1),
            "peak_ratio": round(peer["max_rss_mb"] / ours["max_rss_mb"], 2),
            "imports_mb": round(ours["base_mb"]),
            "roi_job_max_rss_mb": round(job["roi"]["max_rss_mb"]),
            "roi_job_s": round(job["roi"]["s"], 1),
            "stimuli_job_max_rss_mb": round(job["stimuli"]["max_rss_mb"]),
        })  # fmt: skip
        print(rows[-1], file=sys.stderr)
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(
        f"\n{args.voxels} nsdgeneral voxels of {SHAPE}, {TRIALS} trials per session. ours / "
        "in_memory: peak RSS (getrusage) of a fresh process doing only that (imports_mb of it "
        "is the imports and the mask); roi_job / stimuli_job: Snakemake's benchmark max_rss of "
        "the data target's jobs."
    )


if __name__ == "__main__":
    main()
