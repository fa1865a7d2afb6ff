"""Miniature on-disk copies of two public fMRI datasets, for testing the dataset readers.

* ``write_mini_bold5000``: BOLD5000 (OpenNeuro ds001499) - raw BIDS events, the old fMRIPrep
  derivatives it ships (``_bold_space-T1w_preproc`` / ``_brainmask``), the SPM ROI masks, the
  ``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}`` images and the
  COCO ``captions_train2014.json``.
* ``write_mini_god``: Generic Object Decoding (OpenNeuro ds001246) - perception training and
  test sessions with 9 s image blocks, a brain mask, the per-hemisphere ROI masks and the
  ImageNet training / test images.

Same file names, formats and table columns as the real datasets, but a few voxels, trials and
tiny images, so each dataset is well under 5 MB and written in about a second. The BOLD runs
are simulated: baseline ~1000 + Gaussian noise (sd 5) + inside the brain mask each trial's
double-gamma response, whose amplitude (a few % of baseline) depends on the image and the voxel.
Everything is deterministic given ``seed``; each writer returns the ground truth it wrote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image

BOLD5000_EVENT_COLUMNS = [
    "onset",
    "duration",
    "Subj",
    "Sess",
    "Run",
    "Trial",
    "ImgName",
    "ImgType",
    "StimOn(s)",
    "StimOff(s)",
    "Response",
    "RT",
]
BOLD5000_ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
BOLD5000_HEMIS = ("LH", "RH")
BOLD5000_TYPES = ("coco", "imagenet", "scenes")
BOLD5000_FOLDERS = {"coco": "COCO", "imagenet": "ImageNet", "scenes": "Scene"}

GOD_EVENT_COLUMNS = [
    "onset",
    "duration",
    "trial_no",
    "event_type",
    "stimulus_id",
    "stimulus_name",
    "response_time",
]
GOD_ROIS = ("V1", "V2", "V3", "hV4", "LOC", "FFA", "PPA")
GOD_HEMIS = ("LH", "RH")

BASELINE = 1000.0  # BOLD baseline inside the brain
NOISE_SD = 5.0  # white noise sd inside the brain
MEAN_AMPLITUDE = 3.0  # % of baseline: mean peak response to a trial
N_FEATURES = 4  # latent image features the voxels' amplitudes are linear in
HRF_DT = 0.1  # s, fine time grid of the simulation

_IMAGENET_SYNSETS = ("n01440764", "n01443537", "n02084071", "n02121808", "n03417042", "n04037443")
_SCENE_CATEGORIES = ("airplane", "alley", "bedroom", "kitchen", "beach", "bridge", "forest")
_CAPTION_WORDS = {
    "subject": ("A man", "A woman", "Two dogs", "A cat", "A child", "A group of people", "A bus"),
    "verb": ("standing", "sitting", "walking", "lying", "waiting", "playing", "parked"),
    "prep": ("next to", "in front of", "behind", "near", "on top of"),
    "place": ("a red car", "the river", "a wooden table", "a tall building", "the beach", "a tree"),
}


# --- BOLD synthesis (shared) ---------------------------------------------------------------


def _double_gamma(dt: float = HRF_DT, length: float = 32.0) -> np.ndarray:
    """Canonical (SPM) double-gamma HRF sampled every ``dt`` seconds: peak ~5 s, undershoot."""
    t = np.arange(0.0, length, dt)
    peak = t**5 * np.exp(-t) / math.gamma(6)
    undershoot = t**15 * np.exp(-t) / math.gamma(16)
    return peak - undershoot / 6.0


def _design(onsets, durations, tr: float, n_vols: int, dt: float = HRF_DT) -> np.ndarray:
    """(n_vols, n_trials) responses to each trial's boxcar, each scaled to peak at 1.

    Volume ``i`` is sampled at ``i * tr``; onsets and durations in seconds."""
    hrf = _double_gamma(dt)
    n_fine = int(round(n_vols * tr / dt))
    frames = np.round(np.arange(n_vols) * tr / dt).astype(int)
    design = np.zeros((n_vols, len(onsets)))
    for j, (onset, dur) in enumerate(zip(onsets, durations, strict=True)):
        n_box = max(1, int(round(dur / dt)))
        start = int(round(onset / dt))
        box = np.zeros(n_fine)
        box[start : start + n_box] = 1.0
        response = np.convolve(box, hrf)[:n_fine]
        design[:, j] = response[frames] / np.convolve(np.ones(n_box), hrf).max()
    return design


def _synth_bold(
    rng: np.random.Generator,
    onsets,
    durations,
    amplitudes: np.ndarray,
    tr: float,
    n_vols: int,
    mask: np.ndarray,
    baseline: np.ndarray | float = BASELINE,
    noise_sd: float = NOISE_SD,
) -> np.ndarray:
    """One run's float32 (X, Y, Z, n_vols) BOLD.

    ``amplitudes``: (n_trials, mask.sum()) peak responses in % of ``baseline`` (scalar or one
    value per mask voxel). Inside ``mask``: ``baseline * (1 + response / 100) + noise``;
    outside: uniform 0-10."""
    mask = np.asarray(mask, bool)
    n_in = int(mask.sum())
    amplitudes = np.asarray(amplitudes, float)
    if amplitudes.shape != (len(onsets), n_in):
        raise ValueError(
            f"amplitudes {amplitudes.shape} != (trials, mask voxels) {len(onsets), n_in}"
        )
    signal = _design(onsets, durations, tr, n_vols) @ amplitudes  # (n_vols, n_in), % change
    base = np.broadcast_to(np.asarray(baseline, float), (n_in,))
    data = np.empty((*mask.shape, n_vols), np.float32)
    data[mask] = base[:, None] * (1.0 + signal.T / 100.0) + rng.normal(0, noise_sd, (n_in, n_vols))
    data[~mask] = rng.uniform(0.0, 10.0, (int((~mask).sum()), n_vols))
    return data


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> None:
    """Gzipped NIfTI-1 with the affine as qform and sform, zooms (+ TR) and units mm / s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.set_data_dtype(data.dtype)
    zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    img.header.set_zooms(zooms + ((float(tr),) if data.ndim == 4 else ()))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


# --- anatomy, images, tables ---------------------------------------------------------------


def _brain_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """A central box leaving a 1-voxel border."""
    if len(shape) != 3 or min(shape) < 3:
        raise ValueError(f"shape {shape}: need 3 axes of at least 3 voxels")
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    return mask


def _roi_masks(brain: np.ndarray, hemis, rois) -> dict[tuple[str, str], np.ndarray]:
    """Disjoint ROIs inside ``brain``: the first hemisphere in x < X/2, the second in the rest;
    each hemisphere's voxels ordered back to front (y, then z, x) and cut into len(rois) + 1
    slabs, the last (front) left unassigned."""
    x = np.arange(brain.shape[0])[:, None, None]
    halves = {hemis[0]: x < brain.shape[0] / 2, hemis[1]: x >= brain.shape[0] / 2}
    out = {}
    for hemi in hemis:
        coords = np.argwhere(brain & halves[hemi])
        coords = coords[np.lexsort((coords[:, 0], coords[:, 2], coords[:, 1]))]
        chunks = np.array_split(coords, len(rois) + 1)[: len(rois)]
        for roi, chunk in zip(rois, chunks, strict=True):
            if len(chunk) == 0:
                raise ValueError(
                    f"grid {brain.shape} too small for {len(rois)} ROIs per hemisphere"
                )
            m = np.zeros(brain.shape, bool)
            m[tuple(chunk.T)] = True
            out[hemi, roi] = m
    return out


def _write_image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A JPEG of random-coloured 8 px cells, ``size`` = (width, height); returns it decoded."""
    w, h = size
    cells = rng.integers(0, 256, (math.ceil(h / 8), math.ceil(w / 8), 3), dtype=np.uint8)
    arr = np.repeat(np.repeat(cells, 8, axis=0), 8, axis=1)[:h, :w]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path, format="JPEG", quality=95)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _write_tsv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _shuffled(rng: np.random.Generator, items: list) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _unique(rng: np.random.Generator, make, n: int, used: set) -> list:
    """``n`` new values of ``make(rng)`` not in ``used`` (which they are added to)."""
    out = []
    for _ in range(1000 * n + 1000):
        if len(out) == n:
            break
        value = make(rng)
        if value not in used:
            used.add(value)
            out.append(value)
    if len(out) < n:
        raise ValueError(f"could not draw {n} distinct names (too many images asked for)")
    return out


# --- BOLD5000 ------------------------------------------------------------------------------


def _bold5000_name(kind: str, rng: np.random.Generator) -> str:
    if kind == "coco":
        return f"COCO_train2014_{int(rng.integers(1, 581930)):012d}.jpg"
    if kind == "imagenet":
        return f"{rng.choice(_IMAGENET_SYNSETS)}_{int(rng.integers(1, 20000))}.JPEG"
    return f"{rng.choice(_SCENE_CATEGORIES)}{int(rng.integers(1, 30))}.jpg"


def _coco_id(name: str) -> int:
    return int(name.rsplit("_", 1)[1].split(".")[0])


def _caption(rng: np.random.Generator) -> str:
    w = {k: rng.choice(v) for k, v in _CAPTION_WORDS.items()}
    return f"{w['subject']} {w['verb']} {w['prep']} {w['place']}."


def write_mini_bold5000(
    root: Path,
    *,
    subjects=("CSI1", "CSI2"),
    sessions: int = 2,
    runs: int = 2,
    trials_per_run: int = 10,
    shape=(8, 8, 6),
    seed: int = 0,
) -> dict:
    """Write a miniature BOLD5000 under ``root`` (``ds001499/``, ``BOLD5000_Stimuli/``,
    ``annotations/``) and return its ground truth (see the module docstring and the keys below).

    3 repeated images (``rep_coco``, ``rep_imagenet``, ``rep_scenes``) are shown once in every
    session of every subject (the test images); all other images once per subject, half of each
    subject's images shared with the other subjects, half their own."""
    root = Path(root)
    bids = root / "ds001499"
    stimuli = root / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli"
    captions_path = root / "annotations" / "captions_train2014.json"
    shape = tuple(int(s) for s in shape)
    subjects = list(subjects)
    tr, task, duration = 2.0, "5000scenes", 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    rng = np.random.default_rng(seed)

    n_rep = len(BOLD5000_TYPES)
    per_session = runs * trials_per_run
    if per_session < n_rep:
        raise ValueError(f"runs * trials_per_run = {per_session} < {n_rep} repeated images")
    n_own = sessions * (per_session - n_rep)  # images shown once, per subject
    n_shared = n_own // 2
    n_pool = n_shared + len(subjects) * (n_own - n_shared)

    # images: names, types, files, latent features
    used: set = set()
    kinds = list(BOLD5000_TYPES) + [BOLD5000_TYPES[i % n_rep] for i in range(n_pool)]
    names = [_unique(rng, lambda r, k=k: _bold5000_name(k, r), 1, used)[0] for k in kinds]
    img_type = {
        n: ("rep_" + k if i < n_rep else k)
        for i, (n, k) in enumerate(zip(names, kinds, strict=True))
    }
    test_ids, pool = names[:n_rep], names[n_rep:]
    sizes = {"coco": (32, 24), "imagenet": (24, 24), "scenes": (32, 20)}
    images = {}
    for name, kind in zip(names, kinds, strict=True):
        images[name] = _write_image(stimuli / BOLD5000_FOLDERS[kind] / name, rng, sizes[kind])
    features = {name: rng.normal(size=N_FEATURES) for name in names}

    # COCO captions: 5 per shown COCO image + 3 images never shown
    coco_shown = [n for n, k in zip(names, kinds, strict=True) if k == "coco"]
    coco_extra = _unique(rng, lambda r: _bold5000_name("coco", r), 3, used)
    coco_images, annotations, captions_by_id = [], [], {}
    ann_ids = iter(rng.choice(np.arange(1, 1_000_000), 5 * len(coco_shown + coco_extra), False))
    for name in coco_shown + coco_extra:
        h, w = images[name].shape[:2] if name in images else (480, 640)
        coco_images.append(
            {
                "license": 1,
                "file_name": name,
                "coco_url": "",
                "height": int(h),
                "width": int(w),
                "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "",
                "id": _coco_id(name),
            }
        )
        texts = _unique(rng, _caption, 5, set())
        anns = [{"image_id": _coco_id(name), "id": int(next(ann_ids)), "caption": t} for t in texts]
        annotations.extend(anns)
        if name in images:
            captions_by_id[name] = [a["caption"] for a in sorted(anns, key=lambda a: a["id"])]
    _write_json(
        captions_path,
        {
            "info": {"description": "COCO 2014 Dataset (BOLD5000 mini)", "version": "1.0"},
            "images": _shuffled(rng, coco_images),
            "licenses": [{"url": "", "id": 1, "name": "test"}],
            "annotations": _shuffled(rng, annotations),
        },
    )

    # top-level BIDS files, anatomy
    _write_json(
        bids / "dataset_description.json", {"Name": "BOLD5000 mini", "BIDSVersion": "1.0.2"}
    )
    _write_json(bids / f"task-{task}_bold.json", {"TaskName": task, "RepetitionTime": tr})
    brain = _brain_mask(shape)
    rois = {f"{h}{r}": m for (h, r), m in _roi_masks(brain, BOLD5000_HEMIS, BOLD5000_ROIS).items()}
    n_in = int(brain.sum())

    onsets = 6.0 + 10.0 * np.arange(trials_per_run)
    n_vols = math.ceil((onsets[-1] + duration + 20.0) / tr)
    session_labels = [f"{s + 1:02d}" for s in range(sessions)]
    trials = {}
    for si, subject in enumerate(subjects):
        start = n_shared + si * (n_own - n_shared)
        own = _shuffled(rng, pool[:n_shared] + pool[start : start + n_own - n_shared])
        weights = rng.normal(0, 1 / math.sqrt(N_FEATURES), (N_FEATURES, n_in))
        baseline = BASELINE + rng.normal(0, 20, n_in)
        for roi, m in rois.items():
            _save_nifti(
                bids
                / "derivatives"
                / "spm"
                / f"sub-{subject}"
                / f"sub-{subject}_mask-{roi}.nii.gz",
                m.astype(np.uint8),
                affine,
            )
        k = n_own // sessions
        for s, ses in enumerate(session_labels):
            order = _shuffled(rng, own[s * k : (s + 1) * k] + test_ids)
            func = bids / f"sub-{subject}" / f"ses-{ses}" / "func"
            prep = bids / "derivatives" / "fmriprep" / f"sub-{subject}" / f"ses-{ses}" / "func"
            prefix = f"sub-{subject}_ses-{ses}_task-{task}"
            _save_nifti(
                prep / f"{prefix}_run-01_bold_space-T1w_brainmask.nii.gz",
                brain.astype(np.uint8),
                affine,
            )
            table = []
            for r in range(runs):
                run_names = order[r * trials_per_run : (r + 1) * trials_per_run]
                n = len(run_names)
                stim_on = onsets + rng.uniform(0.0, 0.02, n)
                response = rng.integers(1, 4, n).astype(float)
                response[rng.random(n) < 0.15] = np.nan
                rt = np.where(np.isnan(response), np.nan, rng.uniform(0.4, 1.6, n).round(4))
                events = pd.DataFrame(
                    {
                        "onset": onsets,
                        "duration": duration,
                        "Subj": si + 1,
                        "Sess": s + 1,
                        "Run": r + 1,
                        "Trial": np.arange(1, n + 1),
                        "ImgName": run_names,
                        "ImgType": [img_type[m] for m in run_names],
                        "StimOn(s)": stim_on.round(4),
                        "StimOff(s)": (stim_on + duration + rng.uniform(0.0, 0.02, n)).round(4),
                        "Response": pd.array(response, dtype="Int64"),
                        "RT": rt,
                    },
                    columns=BOLD5000_EVENT_COLUMNS,
                )
                _write_tsv(func / f"{prefix}_run-{r + 1:02d}_events.tsv", events)
                amplitudes = MEAN_AMPLITUDE + np.stack([features[m] for m in run_names]) @ weights
                data = _synth_bold(
                    rng, onsets, [duration] * n, amplitudes, tr, n_vols, brain, baseline
                )
                _save_nifti(
                    prep / f"{prefix}_run-{r + 1:02d}_bold_space-T1w_preproc.nii.gz",
                    data,
                    affine,
                    tr,
                )
                table.append(
                    pd.DataFrame(
                        {
                            "run": r + 1,
                            "onset": onsets.astype(float),
                            "stim_id": run_names,
                            "img_type": [img_type[m] for m in run_names],
                        }
                    )
                )
            trials[subject, ses] = pd.concat(table, ignore_index=True)

    return {
        "bids": bids,
        "stimuli": stimuli,
        "captions": captions_path,
        "tr": tr,
        "affine": affine,
        "shape": shape,
        "subjects": subjects,
        "sessions": {subject: list(session_labels) for subject in subjects},
        "trials": trials,
        "test_ids": sorted(test_ids),
        "images": images,
        "captions_by_id": captions_by_id,
        "brain_mask": brain,
        "rois": rois,
    }


# --- Generic Object Decoding ---------------------------------------------------------------


def _god_stimulus_id(name: str) -> str:
    """``n01518878_5958`` -> ``1518878.005958``."""
    synset, number = name.split("_")
    return f"{int(synset[1:])}.{int(number):06d}"


def write_mini_god(
    root: Path,
    *,
    subjects=("01", "02"),
    train_sessions: int = 2,
    test_sessions: int = 1,
    runs: int = 2,
    train_per_run: int = 8,
    test_images: int = 4,
    test_repeats_per_run: int = 2,
    shape=(8, 8, 6),
    seed: int = 0,
) -> dict:
    """Write a miniature Generic Object Decoding dataset under ``root`` (``ds001246/``,
    ``god_images/{training,test}/``) and return its ground truth.

    Training: ``train_sessions * runs * train_per_run`` images from categories of 4 images each,
    every image shown once per subject (same images for all subjects, order per subject).
    Test: ``test_images`` images, each of its own category absent from training, each shown
    ``test_repeats_per_run`` times in every run of every test session."""
    root = Path(root)
    bids = root / "ds001246"
    train_dir, test_dir = root / "god_images" / "training", root / "god_images" / "test"
    shape = tuple(int(s) for s in shape)
    subjects = list(subjects)
    tr, task, block, rest_first, rest_last = 3.0, "perception", 9.0, 33.0, 6.0
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(seed)

    per_category = 4
    n_train = train_sessions * runs * train_per_run
    n_train_cats = math.ceil(n_train / per_category)
    synsets = _unique(
        rng,
        lambda r: f"n{int(r.integers(1_000_000, 5_000_000)):08d}",
        n_train_cats + test_images,
        set(),
    )
    train_ids, categories = [], {}
    for c, synset in enumerate(synsets[:n_train_cats]):
        n = min(per_category, n_train - c * per_category)
        for number in _unique(rng, lambda r: int(r.integers(1, 20000)), n, set()):
            train_ids.append(f"{synset}_{number}")
    test_ids = [f"{synset}_{int(rng.integers(1, 20000))}" for synset in synsets[n_train_cats:]]
    for name in train_ids + test_ids:
        categories[name] = name.split("_")[0]
    sizes = [(24, 24), (32, 24), (24, 32)]
    images = {}
    for name in train_ids + test_ids:
        folder = train_dir if name in train_ids else test_dir
        size = sizes[int(rng.integers(len(sizes)))]
        images[name] = _write_image(folder / f"{name}.JPEG", rng, size)
    cat_features = {s: rng.normal(size=N_FEATURES) for s in synsets}
    features = {n: cat_features[categories[n]] + 0.5 * rng.normal(size=N_FEATURES) for n in images}

    _write_json(
        bids / "dataset_description.json",
        {"Name": "Generic Object Decoding mini", "BIDSVersion": "1.0.2"},
    )
    _write_json(bids / f"task-{task}_bold.json", {"TaskName": task, "RepetitionTime": tr})
    brain = _brain_mask(shape)
    rois = {f"{h}_{r}": m for (h, r), m in _roi_masks(brain, GOD_HEMIS, GOD_ROIS).items()}
    n_in = int(brain.sum())

    session_labels = [f"perceptionTraining{i + 1:02d}" for i in range(train_sessions)] + [
        f"perceptionTest{i + 1:02d}" for i in range(test_sessions)
    ]
    trials = {}
    for subject in subjects:
        _save_nifti(
            bids
            / "derivatives"
            / "preproc"
            / f"sub-{subject}"
            / f"sub-{subject}_desc-brain_mask.nii.gz",
            brain.astype(np.uint8),
            affine,
        )
        for roi, m in rois.items():
            _save_nifti(
                bids
                / "sourcedata"
                / f"sub-{subject}"
                / "anat"
                / f"sub-{subject}_mask_{roi}.nii.gz",
                m.astype(np.uint8),
                affine,
            )
        weights = rng.normal(0, 1 / math.sqrt(N_FEATURES), (N_FEATURES, n_in))
        baseline = BASELINE + rng.normal(0, 20, n_in)
        train_order = _shuffled(rng, train_ids)
        for s, ses in enumerate(session_labels):
            func = bids / f"sub-{subject}" / f"ses-{ses}" / "func"
            prefix = f"sub-{subject}_ses-{ses}_task-{task}"
            table = []
            for r in range(runs):
                if s < train_sessions:
                    i0 = (s * runs + r) * train_per_run
                    run_names = train_order[i0 : i0 + train_per_run]
                else:
                    run_names = _shuffled(rng, test_ids * test_repeats_per_run)
                n = len(run_names)
                onsets = rest_first + block * np.arange(n)
                end = rest_first + block * n
                events = pd.DataFrame(
                    {
                        "onset": np.concatenate([[0.0], onsets, [end]]),
                        "duration": [rest_first] + [block] * n + [rest_last],
                        "trial_no": np.arange(1, n + 3),
                        "event_type": [-1] + [1] * n + [-2],
                        "stimulus_id": [None] + [_god_stimulus_id(m) for m in run_names] + [None],
                        "stimulus_name": [None] + run_names + [None],
                        "response_time": np.nan,
                    },
                    columns=GOD_EVENT_COLUMNS,
                )
                _write_tsv(func / f"{prefix}_run-{r + 1:02d}_events.tsv", events)
                n_vols = math.ceil((end + rest_last) / tr)
                amplitudes = MEAN_AMPLITUDE + np.stack([features[m] for m in run_names]) @ weights
                data = _synth_bold(
                    rng, onsets, [block] * n, amplitudes, tr, n_vols, brain, baseline
                )
                _save_nifti(func / f"{prefix}_run-{r + 1:02d}_bold.nii.gz", data, affine, tr)
                table.append(
                    pd.DataFrame(
                        {
                            "run": r + 1,
                            "onset": onsets,
                            "stim_id": run_names,
                            "category": [categories[m] for m in run_names],
                        }
                    )
                )
            trials[subject, ses] = pd.concat(table, ignore_index=True)

    return {
        "bids": bids,
        "images_dirs": [train_dir, test_dir],
        "tr": tr,
        "affine": affine,
        "shape": shape,
        "subjects": subjects,
        "sessions": {subject: list(session_labels) for subject in subjects},
        "trials": trials,
        "test_ids": sorted(test_ids),
        "train_ids": sorted(train_ids),
        "categories": categories,
        "images": images,
        "brain_mask": brain,
        "rois": rois,
    }
