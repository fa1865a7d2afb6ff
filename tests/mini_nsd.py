"""A miniature Natural Scenes Dataset in the release's own layout and file formats.

Written by the tests (the real NSD cannot be downloaded here): ``nsd_expdesign.mat`` (scipy),
``nsd_stim_info_merged.csv``, ``nsd_stimuli.hdf5`` (``imgBrick``), COCO caption JSONs, the
released single-trial betas as int16 x 300 in NIfTI and HDF5, preprocessed time series with
their design TSVs, and the ROI / brain mask NIfTIs. Returns what it wrote, for the checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
from scipy.io import savemat

AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
AFFINE[:3, 3] = [-10.0, -12.0, -8.0]
TR = 4.0 / 3.0
CATEGORIES = ("person", "dog", "car", "pizza", "giraffe")


def _nifti(data: np.ndarray, path: Path, zooms: tuple | None = None) -> None:
    img = nib.Nifti1Image(data, AFFINE)
    if zooms is not None:
        img.header.set_zooms(zooms)
        img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def _hrf(dt: float, length: float = 20.0) -> np.ndarray:
    from scipy.stats import gamma

    t = np.arange(0, length, dt)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6.0
    return h / h.max()


def write_mini_nsd(
    root: Path,
    *,
    subjects: tuple[int, ...] = (1, 2),
    sessions: int = 3,
    trials_per_session: int = 12,
    runs_per_session: int = 2,
    shape: tuple[int, int, int] = (7, 6, 5),
    n_shared: int = 4,
    n_own: int = 10,
    image_size: int = 24,
    timeseries: bool = True,
    formats: tuple[str, ...] = ("nifti", "hdf5"),
    seed: int = 0,
) -> dict:
    """Write a miniature NSD under ``root`` (see the module docstring); returns its truth."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    n_images = n_shared + n_own * 8 + 5  # 5 images nobody saw
    exp = root / "nsddata/experiments/nsd"
    exp.mkdir(parents=True, exist_ok=True)
    # subjectim: every subject sees the shared images first, then images of its own
    per_subject = n_shared + n_own
    subjectim = np.zeros((8, per_subject), dtype=np.int64)  # 0-based here
    for s in range(8):
        subjectim[s, :n_shared] = np.arange(n_shared)
        subjectim[s, n_shared:] = n_shared + s * n_own + np.arange(n_own)
    n_trials = sessions * trials_per_session
    # every column shown, some repeated (up to 3 times), in a seeded random order
    cols = np.concatenate([np.arange(per_subject), rng.integers(0, per_subject, n_trials)])
    masterordering = rng.permutation(cols[:n_trials])
    slots = trials_per_session // runs_per_session
    stimpattern = np.ones((sessions, runs_per_session, slots), dtype=np.uint8)
    savemat(
        exp / "nsd_expdesign.mat",
        {
            "masterordering": (masterordering + 1)[None, :].astype(np.float64),
            "subjectim": (subjectim + 1).astype(np.float64),
            "sharedix": (np.arange(n_shared) + 1)[None, :].astype(np.float64),
            "stimpattern": stimpattern.astype(np.float64),
        },
    )
    coco = rng.choice(np.arange(1000, 600000), size=n_images, replace=False)
    split = np.where(rng.random(n_images) < 0.8, "train2017", "val2017")
    info = pd.DataFrame(
        {
            "Unnamed: 0": np.arange(n_images),
            "cocoId": coco,
            "cocoSplit": split,
            "cropBox": "(0, 0, 0.1, 0.1)",
            "loss": 0.0,
            "nsdId": np.arange(n_images),
            "flagged": False,
            "BOLD5000": False,
            "shared1000": np.arange(n_images) < n_shared,
        }
    )
    for s in range(8):
        info[f"subject{s + 1}"] = np.isin(np.arange(n_images), subjectim[s]).astype(int)
    info.drop(columns="Unnamed: 0").to_csv(exp / "nsd_stim_info_merged.csv")
    images = rng.integers(0, 256, (n_images, image_size, image_size, 3), dtype=np.uint8)
    stim_dir = root / "nsddata_stimuli/stimuli/nsd"
    stim_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(stim_dir / "nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=images, chunks=(1, image_size, image_size, 3))
    captions: dict[int, list[str]] = {}
    labels: dict[int, set[str]] = {}
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for part in ("train2017", "val2017"):
        ids = [int(c) for c, p in zip(coco, split, strict=True) if p == part] + [7, 8]  # unshown
        anns = []
        for c in ids:
            captions[c] = [f"image {c} caption {k}" for k in range(5)]
            for text in captions[c]:
                anns.append({"id": ann_id, "image_id": c, "caption": text})
                ann_id += 1
        doc = {
            "info": {"description": "mini COCO"},
            "images": [{"id": c, "file_name": f"{c:012d}.jpg"} for c in ids],
            "annotations": anns[::-1],  # order must not matter
        }
        (ann_dir / f"captions_{part}.json").write_text(json.dumps(doc))
        cats = [
            {"id": i + 1, "name": n, "supercategory": "thing"} for i, n in enumerate(CATEGORIES)
        ]
        objects = []
        for c in ids:
            present = rng.choice(len(CATEGORIES), size=rng.integers(1, 3), replace=False)
            labels[c] = {CATEGORIES[k] for k in present}
            objects += [{"id": len(objects) + 1, "image_id": c, "category_id": int(k) + 1}
                        for k in present]  # fmt: skip
        inst = {"info": {}, "images": doc["images"], "annotations": objects, "categories": cats}
        (ann_dir / f"instances_{part}.json").write_text(json.dumps(inst))

    brain = np.zeros(shape, dtype=bool)
    brain[1:-1, 1:-1, 1:-1] = True
    nsdgeneral = np.where(brain, 0, -1).astype(np.int16)
    nsdgeneral[1:-1, 1:4, 1:-1] = 1
    streams = np.zeros(shape, dtype=np.int16)
    streams[1:-1, 1:2, 1:-1] = 1  # early
    streams[1:-1, 2:3, 1:-1] = 5  # ventral
    streams[1:-1, 3:4, 1:-1] = 6  # lateral
    prf = np.zeros(shape, dtype=np.int16)
    prf[1:3, 1:2, 1:-1] = 1  # V1v
    prf[3:5, 1:2, 1:-1] = 2  # V1d
    floc = np.zeros(shape, dtype=np.int16)
    floc[2:4, 3:4, 1:-1] = 2  # FFA-1
    truth: dict = {
        "root": root,
        "subjects": list(subjects),
        "sessions": sessions,
        "trials_per_session": trials_per_session,
        "shape": shape,
        "affine": AFFINE,
        "shared": np.arange(n_shared),
        "images": images,
        "coco": coco,
        "captions": captions,
        "labels": labels,
        "rois": {
            "nsdgeneral": nsdgeneral,
            "streams": streams,
            "prf-visualrois": prf,
            "floc-faces": floc,
        },  # fmt: skip
        "brain": brain,
        "trials": {},
        "betas": {},
        "events": {},
    }
    for subj in subjects:
        pp = root / f"nsddata/ppdata/subj{subj:02d}/func1pt8mm"
        _nifti(brain.astype(np.int16), pp / "brainmask.nii.gz")
        for name, data in truth["rois"].items():
            _nifti(data, pp / "roi" / f"{name}.nii.gz")
        for ses in range(1, sessions + 1):
            t0 = (ses - 1) * trials_per_session
            ids = subjectim[subj - 1, masterordering[t0 : t0 + trials_per_session]]
            truth["trials"][(subj, ses)] = ids
            pct = rng.normal(0, 2.0, shape + (trials_per_session,))
            pct[~brain] = 0.0
            betas = np.round(pct * 300).astype(np.int16)
            truth["betas"][(subj, ses)] = betas
            folder = root / f"nsddata_betas/ppdata/subj{subj:02d}/func1pt8mm"
            folder = folder / "betas_fithrf_GLMdenoise_RR"
            if "nifti" in formats:
                _nifti(betas, folder / f"betas_session{ses:02d}.nii.gz")
            if "hdf5" in formats:
                folder.mkdir(parents=True, exist_ok=True)
                with h5py.File(folder / f"betas_session{ses:02d}.hdf5", "w") as f:
                    f.create_dataset("betas", data=np.ascontiguousarray(betas.T))
            if timeseries:
                _write_runs(root, subj, ses, ids, runs_per_session, brain, rng, truth)
    return truth


def _write_runs(root, subj, ses, ids, n_runs, brain, rng, truth) -> None:
    """Time series (int16, as released) and design TSVs: a trial every 3 volumes (4 s)."""
    ts_dir = root / f"nsddata_timeseries/ppdata/subj{subj:02d}/func1pt8mm"
    per_run = len(ids) // n_runs
    hrf = _hrf(TR)
    gain = rng.normal(1.0, 0.3, brain.shape) * brain
    for r in range(n_runs):
        run_ids = ids[r * per_run : (r + 1) * per_run]
        n_vols = 3 + 3 * per_run + 15
        design = np.zeros(n_vols, dtype=np.int64)
        onsets = 3 + 3 * np.arange(per_run)
        design[onsets] = run_ids + 1
        drive = np.zeros(n_vols)
        amp = 1.0 + (run_ids % 5) * 0.5
        drive[onsets] = amp
        resp = np.convolve(drive, hrf)[:n_vols] * 20.0
        data = 1000.0 + rng.normal(0, 5.0, brain.shape + (n_vols,))
        data += gain[..., None] * resp[None, None, None, :]
        data[~brain] = rng.normal(5.0, 1.0, (int((~brain).sum()), n_vols))
        _nifti(
            np.round(data).astype(np.int16),
            ts_dir / "timeseries" / f"timeseries_session{ses:02d}_run{r + 1:02d}.nii.gz",
            zooms=(1.8, 1.8, 1.8, TR),
        )
        (ts_dir / "design").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(design).to_csv(
            ts_dir / "design" / f"design_session{ses:02d}_run{r + 1:02d}.tsv",
            sep="\t",
            header=False,
            index=False,
        )
        truth["events"][(subj, ses, r + 1)] = (onsets * TR, run_ids + 1)
