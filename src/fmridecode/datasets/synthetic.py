"""Synthetic NSD-like fMRI dataset with ground truth: the dataset every test trusts.

What is simulated (see docs/CONTRACTS.md for the files):

* Stimuli: procedural scenes (``fmridecode.datasets.scenes``) split into ``test`` (shared by
  all subjects, 3 repeats each), ``train`` (subject-specific, disjoint, 1-3 repeats) and
  ``pool`` (never shown; for training the image/text models). Zero-shot categories occur only
  in test images.
* Anatomy per subject: ellipsoid brain on a subject-specific grid, a posterior visual mask
  (``nsdgeneral``), streams (1 early, 2 mid, 3 high, from back to front) and category-selective
  ``floc`` ROIs inside high cortex (1 round, 2 angular, 3 warm-colour).
* Tuning: early voxels = compressive Gaussian pRFs (retinotopic, small) on contrast and colour
  maps; mid = larger pRFs on edge energy and colour mixtures; high = linear in the scene's
  categories/shapes/colours/number of objects/object size, floc ROIs strongly to their family.
  Each voxel's true mean response is ``base + gain * z(image)``; single trials add
  trial-to-trial variability (partly shared across voxels). Non-visual and ~10% of visual
  voxels respond to nothing.
* BOLD: per-voxel double-gamma HRF (impulse peak 4-6.5 s), amplitude = peak of the response
  to the 3 s stimulus; noise = white + low-rank slow components (new per run) + polynomial
  drift (degree <= 2), all scaled by ``1 / snr``; ``BOLD = baseline * (1 + y / 100)`` with a
  smooth baseline around 1000.
* Design: TR 1.6 s, 3 s stimulus + 1 s gap slots after a 3 s lead-in (onsets never on the TR
  grid), some blank slots, every image's repeats in different runs, test repeats spread over
  sessions.

Everything is deterministic given ``seed`` (numpy ``SeedSequence`` streams per purpose).
Runs are simulated and written one at a time and the truth amplitudes are streamed into the
npz, so memory stays bounded by one run plus the (images x voxels) mean-response table.
"""

from __future__ import annotations

import gzip
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import gamma as gamma_dist
from tqdm import tqdm

from fmridecode import __version__
from fmridecode.datasets import scenes
from fmridecode.io import (
    DataError,
    atomic_path,
    load_indexed,
    read_parquet,
    save_indexed,
    write_json,
    write_parquet,
)
from fmridecode.metrics.noise_ceiling import noise_ceiling

TR = 1.6  # s
STIM_DUR = 3.0  # s, stimulus on
SLOT_DUR = 4.0  # s, stimulus + 1 s gap
LEAD_IN = 3.0  # s before the first slot: onsets fall between TRs (3 + 4k is never k' * 1.6)
TAIL = 12.0  # s after the last slot, for the last response to come back down
HRF_DT = 0.1  # s, sampling of the stored impulse HRFs
HRF_LEN = 32.0  # s
VOXEL_MM = 2.0
STREAMS = {1: "early", 2: "mid", 3: "high"}
FLOC = {1: "round", 2: "angular", 3: "warm"}
WARM_COLOURS = ("red", "yellow")
_FEATURE_RES = 32  # pRF maps are computed on a 32 x 32 grid of the 64 x 64 image


@dataclass(frozen=True)
class SizePreset:
    """Size of a synthetic dataset; all counts are per subject unless said otherwise."""

    n_images: int  # total images: test + n_subjects * n_train + pool
    n_test: int  # shared test images, 3 repeats each
    n_train: int  # subject-specific training images
    n_subjects: int
    n_sessions: int
    n_runs: int  # runs per session
    slots_per_run: int  # 4 s slots; trials fill them, the rest are blank
    min_blank: int  # blank slots at least per run
    repeat_fractions: tuple[float, float, float]  # fraction of train images seen 3, 2, 1 times
    grid: tuple[int, int, int]  # base voxel grid; each subject adds 0-2 voxels per axis
    visual_fraction: float  # fraction of brain voxels inside the nsdgeneral mask
    image_size: int = 64

    @property
    def n_pool(self) -> int:
        return self.n_images - self.n_test - self.n_subjects * self.n_train

    @property
    def n_vols(self) -> int:
        """Volumes per run."""
        return math.ceil((LEAD_IN + self.slots_per_run * SLOT_DUR + TAIL) / TR)

    def repeat_counts(self) -> tuple[int, int, int]:
        """Number of train images seen 3, 2 and 1 times."""
        n3 = round(self.repeat_fractions[0] * self.n_train)
        n2 = round(self.repeat_fractions[1] * self.n_train)
        return n3, n2, self.n_train - n3 - n2

    def n_trials(self) -> int:
        """Trials per subject."""
        n3, n2, n1 = self.repeat_counts()
        return 3 * self.n_test + 3 * n3 + 2 * n2 + n1

    def check(self) -> None:
        """Raise ValueError if the preset cannot be simulated."""
        if self.n_pool < 0:
            raise ValueError(f"size preset: n_images {self.n_images} < test + train images")
        if min(self.repeat_counts()) < 0 or abs(sum(self.repeat_fractions) - 1) > 1e-9:
            raise ValueError(f"size preset: bad repeat_fractions {self.repeat_fractions}")
        n_runs = self.n_sessions * self.n_runs
        if n_runs < 3:
            raise ValueError("size preset: need at least 3 runs (3 repeats in different runs)")
        capacity = n_runs * (self.slots_per_run - self.min_blank)
        if self.n_trials() > capacity:
            raise ValueError(
                f"size preset: {self.n_trials()} trials do not fit in {n_runs} runs of "
                f"{self.slots_per_run - self.min_blank} usable slots"
            )


SIZES: dict[str, SizePreset] = {
    # the test suite runs the whole workflow on this: ~330 trials, ~300 visual voxels
    "tiny": SizePreset(
        n_images=300,
        n_test=24,
        n_train=100,
        n_subjects=2,
        n_sessions=2,
        n_runs=3,
        slots_per_run=58,
        min_blank=2,
        repeat_fractions=(0.7, 0.2, 0.1),
        grid=(14, 14, 10),
        visual_fraction=0.5,
    ),
    # the demo: 1,470 trials per subject, ~2,000 visual voxels
    "default": SizePreset(
        n_images=2000,
        n_test=100,
        n_train=450,
        n_subjects=2,
        n_sessions=3,
        n_runs=8,
        slots_per_run=64,
        min_blank=2,
        repeat_fractions=(0.7, 0.2, 0.1),
        grid=(24, 24, 16),
        visual_fraction=0.55,
    ),
    # benchmarks only (never run by tests): NSD-like 40 sessions x 12 runs, ~15k visual voxels
    "large": SizePreset(
        n_images=40000,
        n_test=1000,
        n_train=9000,
        n_subjects=2,
        n_sessions=40,
        n_runs=12,
        slots_per_run=63,
        min_blank=1,
        repeat_fractions=(0.7, 0.2, 0.1),
        grid=(40, 46, 34),
        visual_fraction=0.55,
    ),
}


def get_size(size: str) -> SizePreset:
    """The preset called ``size`` (ValueError naming the known ones otherwise)."""
    try:
        preset = SIZES[size]
    except KeyError:
        raise ValueError(f"unknown dataset size {size!r}; known: {sorted(SIZES)}") from None
    preset.check()
    return preset


def _label(i: int) -> str:
    return f"{i:02d}"


def design_summary(size: str, n_subjects: int | None = None) -> dict:
    """Subjects, sessions and runs of a dataset, without simulating anything.

    Returns ``{"subjects": [...], "sessions": {sub: [...]}, "runs": {(sub, ses): [...]}}``
    with zero-padded labels ('01'). ``n_subjects`` may lower (never raise) the preset's count.
    """
    preset = get_size(size)
    n_sub = _n_subjects(preset, n_subjects)
    subjects = [_label(i + 1) for i in range(n_sub)]
    sessions = [_label(i + 1) for i in range(preset.n_sessions)]
    runs = [_label(i + 1) for i in range(preset.n_runs)]
    return {
        "subjects": subjects,
        "sessions": {s: list(sessions) for s in subjects},
        "runs": {(s, ses): list(runs) for s in subjects for ses in sessions},
    }


def _n_subjects(preset: SizePreset, n_subjects: int | None) -> int:
    if n_subjects is None:
        return preset.n_subjects
    if not 1 <= n_subjects <= preset.n_subjects:
        raise ValueError(f"n_subjects must be in 1..{preset.n_subjects}, got {n_subjects}")
    return n_subjects


def _seed_seq(seed: int, *words: str | int) -> np.random.SeedSequence:
    """A seed sequence for one purpose: stable across Python runs (crc32, not hash())."""
    ent = [int(seed)] + [w if isinstance(w, int) else zlib.crc32(w.encode()) for w in words]
    return np.random.SeedSequence(ent)


# ----------------------------------------------------------------------------- stimuli


def bids_sidecar() -> dict:
    """Content of ``<bids>/task-images_bold.json``."""
    return {"TaskName": "images", "RepetitionTime": TR}


def simulate_stimuli(
    stim_dir: str | os.PathLike,
    bids_dir: str | os.PathLike,
    size: str,
    seed: int,
    n_subjects: int | None = None,
) -> None:
    """Draw all images with captions and labels; write the stimuli folder and BIDS top files.

    Writes ``images.npy`` (+ index ``stim_id, split, subjects``), ``captions.parquet``,
    ``labels.parquet``, ``categories.parquet`` and ``objects.parquet`` (one row per drawn
    object: ``stim_id, object_idx, shape, colour, category, x, y, radius, background``)
    under ``stim_dir``; ``dataset_description.json`` and ``task-images_bold.json`` under
    ``bids_dir``.
    """
    preset = get_size(size)
    n_sub = _n_subjects(preset, n_subjects)
    rng = np.random.default_rng(_seed_seq(seed, "stimuli", size))
    n_train_all = n_sub * preset.n_train
    n_pool = preset.n_images - preset.n_test - n_train_all
    # splits in a random order so that stim ids reveal nothing
    split = np.array(["test"] * preset.n_test + ["train"] * n_train_all + ["pool"] * n_pool)
    owner = np.array(
        [""] * preset.n_test
        + [_label(1 + i // preset.n_train) for i in range(n_train_all)]
        + [""] * n_pool
    )
    order = rng.permutation(preset.n_images)
    split, owner = split[order], owner[order]
    subjects_col = np.where(split == "test", ",".join(_label(i + 1) for i in range(n_sub)), owner)

    all_cats = scenes.all_categories()
    seen_cats = scenes.seen_categories()
    zs_cats = [(s, c) for s, c in all_cats if scenes.category_name(s, c) in scenes.ZERO_SHOT]
    images = np.empty((preset.n_images, preset.image_size, preset.image_size, 3), np.uint8)
    captions, labels, objects = [], [], []
    test_k = 0
    stim_ids = [f"img{i:05d}" for i in range(preset.n_images)]
    for i in tqdm(range(preset.n_images), desc="stimuli", unit="img", mininterval=2):
        if split[i] == "test":
            # the first test images each carry one zero-shot category, so all of them occur
            required = zs_cats[test_k % len(zs_cats)] if test_k < 2 * len(zs_cats) else None
            scene = scenes.sample_scene(rng, all_cats, required=required)
            test_k += 1
        else:
            scene = scenes.sample_scene(rng, seen_cats)
        images[i] = scenes.render_scene(
            scene, preset.image_size, shade_seed=int(rng.integers(0, 2**31))
        )
        sid = stim_ids[i]
        for j, (text, kind) in enumerate(scenes.make_captions(scene, rng)):
            captions.append((sid, j, text, kind))
        labels.extend((sid, cat) for cat in scenes.scene_categories(scene))
        for j, o in enumerate(scene.objects):
            objects.append(
                (sid, j, o.shape, o.colour, o.category, o.x, o.y, o.radius, scene.background)
            )

    stim_dir, bids_dir = Path(stim_dir), Path(bids_dir)
    index = pd.DataFrame({"stim_id": stim_ids, "split": split, "subjects": subjects_col})
    save_indexed(stim_dir / "images.npy", images, index)
    write_parquet(
        pd.DataFrame(captions, columns=["stim_id", "caption_idx", "caption", "kind"]),
        stim_dir / "captions.parquet",
    )
    write_parquet(
        pd.DataFrame(labels, columns=["stim_id", "category"]), stim_dir / "labels.parquet"
    )
    write_parquet(scenes.category_table(), stim_dir / "categories.parquet")
    obj_cols = [
        "stim_id",
        "object_idx",
        "shape",
        "colour",
        "category",
        "x",
        "y",
        "radius",
        "background",
    ]
    write_parquet(pd.DataFrame(objects, columns=obj_cols), stim_dir / "objects.parquet")
    write_json(
        {
            "Name": f"fmridecode synthetic NSD-like dataset ({size})",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "fmridecode.datasets.synthetic", "Version": __version__}],
            "SourceDatasets": [{"Description": f"simulated, size={size}, seed={seed}"}],
        },
        bids_dir / "dataset_description.json",
    )
    write_json(bids_sidecar(), bids_dir / "task-images_bold.json")


# ----------------------------------------------------------------------------- design


@dataclass(frozen=True)
class Trial:
    """One stimulus presentation."""

    session: str
    run: str
    onset: float
    stim_id: str


def make_design(
    test_ids: list[str],
    train_ids: list[str],
    preset: SizePreset,
    rng: np.random.Generator,
) -> list[Trial]:
    """Chronological trials of one subject.

    Test images get 3 repeats, train images 3/2/1 per ``preset.repeat_fractions``. An image's
    repeats always go to different runs (test repeats to different sessions where there are
    enough); runs are filled evenly (greedy by remaining capacity, random tie-break); within a
    run trials and blank slots are shuffled.
    """
    if len(train_ids) != preset.n_train:
        raise ValueError(
            f"make_design: {len(train_ids)} train images, preset wants {preset.n_train}"
        )
    n3, n2, _ = preset.repeat_counts()
    train_perm = [train_ids[int(i)] for i in rng.permutation(len(train_ids))]
    reps = {s: 3 for s in test_ids}
    for k, s in enumerate(train_perm):
        reps[s] = 3 if k < n3 else (2 if k < n3 + n2 else 1)
    runs = [(ses, run) for ses in range(preset.n_sessions) for run in range(preset.n_runs)]
    cap = np.full(len(runs), preset.slots_per_run - preset.min_blank, dtype=float)
    run_session = np.array([ses for ses, _ in runs])
    content: list[list[str]] = [[] for _ in runs]

    def take(candidates: np.ndarray) -> int:
        score = cap[candidates] + 0.5 * rng.random(len(candidates))  # random tie-break
        return int(candidates[np.argmax(score)])

    test_set = set(test_ids)
    ordered = list(test_ids) + sorted(train_perm, key=lambda s: -reps[s])  # stable: 3s first
    for sid in ordered:
        used: list[int] = []
        for _ in range(reps[sid]):
            free = np.array([r for r in range(len(runs)) if r not in used and cap[r] >= 1])
            if len(free) == 0:
                raise ValueError("make_design: runs are full (preset check should prevent this)")
            if sid in test_set and len(used) < preset.n_sessions:
                used_ses = {run_session[r] for r in used}
                fresh = free[[run_session[r] not in used_ses for r in free]]
                free = fresh if len(fresh) else free
            r = take(free)
            used.append(r)
            cap[r] -= 1
            content[r].append(sid)

    trials = []
    for r, (ses, run) in enumerate(runs):
        ids = [content[r][int(i)] for i in rng.permutation(len(content[r]))]
        slots = np.sort(rng.choice(preset.slots_per_run, size=len(ids), replace=False))
        for slot, sid in zip(slots, ids, strict=True):
            trials.append(Trial(_label(ses + 1), _label(run + 1), LEAD_IN + SLOT_DUR * slot, sid))
    return trials


# ----------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class Anatomy:
    """Masks and labels of one subject on its voxel grid."""

    brain: np.ndarray  # bool (X, Y, Z)
    visual: np.ndarray  # bool, nsdgeneral
    streams: np.ndarray  # int16, 0 none / 1 early / 2 mid / 3 high
    floc: np.ndarray  # int16, 0 none / 1 round / 2 angular / 3 warm


def _rank_split(values: np.ndarray, fractions: list[float]) -> np.ndarray:
    """Label 1..len(fractions) by rank of ``values`` (lowest first), in the given fractions."""
    order = np.argsort(values, kind="stable")
    bounds = np.round(np.cumsum(fractions) / sum(fractions) * len(values)).astype(int)
    lab = np.empty(len(values), dtype=np.int16)
    start = 0
    for k, stop in enumerate(bounds):
        lab[order[start:stop]] = k + 1
        start = stop
    return lab


def make_anatomy(preset: SizePreset, rng: np.random.Generator) -> Anatomy:
    """Ellipsoid brain, posterior visual mask, streams back to front, floc blobs in high.

    Axes: i left-right, j posterior (0) to anterior, k inferior to superior.
    """
    grid = tuple(int(g + rng.integers(0, 3)) for g in preset.grid)
    ii, jj, kk = np.meshgrid(*(np.arange(g, dtype=float) for g in grid), indexing="ij")
    centre = [(g - 1) / 2 for g in grid]
    radii = [(g / 2 - 1) * rng.uniform(0.92, 1.0) for g in grid]
    d2 = sum(((a - c) / r) ** 2 for a, c, r in zip((ii, jj, kk), centre, radii, strict=True))
    brain = d2 <= 1.0
    # visual: the most posterior brain voxels (slightly favouring the inferior half)
    post = jj + 0.25 * np.abs(kk - centre[2] + 0.2 * radii[2])
    vis_idx = np.flatnonzero(brain)
    n_vis = round(preset.visual_fraction * len(vis_idx))
    vis_idx = vis_idx[np.argsort(post.ravel()[vis_idx], kind="stable")[:n_vis]]
    visual = np.zeros(grid, bool)
    visual.ravel()[vis_idx] = True
    # streams: rank by distance from the occipital pole
    streams = np.zeros(grid, np.int16)
    streams.ravel()[vis_idx] = _rank_split(post.ravel()[vis_idx], [0.35, 0.30, 0.35])
    # floc: inside high, warm = top quarter of k; round / angular = lower half, left / right
    floc = np.zeros(grid, np.int16)
    high = np.flatnonzero(streams.ravel() == 3)
    hi, hk = ii.ravel()[high], kk.ravel()[high]
    k_hi, k_med, i_med = np.quantile(hk, 0.75), np.median(hk), np.median(hi)
    lab = np.zeros(len(high), np.int16)
    lab[(hk <= k_med) & (hi < i_med)] = 1
    lab[(hk <= k_med) & (hi >= i_med)] = 2
    lab[hk > k_hi] = 3
    floc.ravel()[high] = lab
    return Anatomy(brain, visual, streams, floc)


# ----------------------------------------------------------------------------- tuning


def image_feature_maps(images: np.ndarray) -> np.ndarray:
    """pRF input maps (N, 32*32, 7): contrast, |d/dx|, |d/dy| edge energy, 4 colour maps.

    Colour map c = closeness of each pixel to the nominal object colour c (Gaussian, in RGB).
    """
    x = images.astype(np.float32) / 255.0
    lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
    contrast = np.abs(lum - ndimage.gaussian_filter(lum, (0, 2, 2)))
    gx = np.abs(ndimage.sobel(lum, axis=2)) / 4
    gy = np.abs(ndimage.sobel(lum, axis=1)) / 4
    cols = [
        np.exp(-((x - np.array(rgb, np.float32) / 255) ** 2).sum(-1) / (2 * 0.25**2))
        for rgb in scenes.COLOURS.values()
    ]
    maps = np.stack([contrast, gx, gy, *cols], axis=-1)  # (N, H, W, 7)
    n, h, w, c = maps.shape
    f = h // _FEATURE_RES
    maps = maps[:, : f * _FEATURE_RES, : f * _FEATURE_RES]
    maps = maps.reshape(n, _FEATURE_RES, f, _FEATURE_RES, f, c).mean(axis=(2, 4))
    return maps.reshape(n, _FEATURE_RES * _FEATURE_RES, c).astype(np.float32)


def scene_features(objects: pd.DataFrame, stim_ids: list[str]) -> np.ndarray:
    """High-level features (N, 39): category counts (24), shape (6) and colour (4) presence,
    number of objects, mean object radius, background one-hot (3)."""
    cats = [scenes.category_name(s, c) for s, c in scenes.all_categories()]
    pos = {s: i for i, s in enumerate(stim_ids)}
    if not set(stim_ids) <= set(objects["stim_id"]):
        raise DataError("objects.parquet: some images have no objects")
    obj = objects[objects["stim_id"].isin(pos)]
    rows = obj["stim_id"].map(pos).to_numpy()
    n = len(stim_ids)
    cat_count = np.zeros((n, len(cats)))
    np.add.at(cat_count, (rows, obj["category"].map({c: i for i, c in enumerate(cats)})), 1)
    shape = np.zeros((n, len(scenes.SHAPES)))
    shape[rows, obj["shape"].map({s: i for i, s in enumerate(scenes.SHAPES)})] = 1
    colour = np.zeros((n, len(scenes.COLOURS)))
    colour[rows, obj["colour"].map({s: i for i, s in enumerate(scenes.COLOURS)})] = 1
    n_obj = np.bincount(rows, minlength=n).astype(float)
    radius = np.bincount(rows, weights=obj["radius"].to_numpy(), minlength=n) / n_obj
    bg = np.zeros((n, len(scenes.BACKGROUNDS)))
    bg[rows, obj["background"].map({s: i for i, s in enumerate(scenes.BACKGROUNDS)})] = 1
    return np.column_stack([cat_count, shape, colour, n_obj, radius, bg])


@dataclass(frozen=True)
class Tuning:
    """Voxel response model over the brain-mask voxels (V in C order)."""

    responsive: np.ndarray  # (V,) bool
    mean_response: np.ndarray  # (n_images, V_resp) float32, % BOLD, true mean per image
    trial_sd: np.ndarray  # (V,) % BOLD, trial-to-trial sd (0 where unresponsive)
    image_row: dict[str, int]  # stim_id -> row of mean_response


def _prf_centres(ijk: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Retinotopic pRF centres (px): rank of i -> horizontal, rank of k -> vertical (+ jitter)."""
    out = np.empty((len(ijk), 2))
    for col, axis in ((0, 0), (1, 2)):
        r = np.argsort(np.argsort(ijk[:, axis] + 0.01 * rng.random(len(ijk))))
        out[:, col] = (0.05 + 0.9 * (r + 0.5) / max(len(ijk), 1)) * size
    out[:, 1] = size - out[:, 1]  # superior voxels see the top of the image
    return out + rng.normal(0, 0.03 * size, out.shape)


def _prf_matrix(centres: np.ndarray, sigmas: np.ndarray, size: int) -> np.ndarray:
    """Gaussian pRF weights (n, 32*32), each summing to 1, on the feature grid."""
    px = (np.arange(_FEATURE_RES) + 0.5) * size / _FEATURE_RES
    gx = np.exp(-((px[None, :] - centres[:, :1]) ** 2) / (2 * sigmas[:, None] ** 2))
    gy = np.exp(-((px[None, :] - centres[:, 1:]) ** 2) / (2 * sigmas[:, None] ** 2))
    g = (gy[:, :, None] * gx[:, None, :]).reshape(len(centres), -1)
    return (g / g.sum(1, keepdims=True)).astype(np.float32)


def make_tuning(
    anat: Anatomy,
    images: np.ndarray,
    stim_ids: list[str],
    objects: pd.DataFrame,
    rng: np.random.Generator,
    chunk: int = 500,
) -> Tuning:
    """True mean response of every responsive voxel to every image the subject sees."""
    ijk = np.argwhere(anat.brain)
    roi = anat.streams[anat.brain]
    floc = anat.floc[anat.brain]
    v = len(ijk)
    responsive = (roi > 0) & (rng.random(v) > 0.1)
    size = images.shape[1]
    n = len(stim_ids)
    early, mid, high = (np.flatnonzero(responsive & (roi == k)) for k in (1, 2, 3))

    # early: small compressive pRFs on contrast (+ colour); mid: larger, edges + colour mixes
    c_e = _prf_centres(ijk[early], size, rng)
    ecc = np.hypot(*(c_e - size / 2).T)
    g_e = _prf_matrix(c_e, 1.5 + 0.08 * ecc + rng.uniform(0, 1, len(early)), size)
    w_e = np.zeros((len(early), 7), np.float32)
    w_e[:, 0] = rng.uniform(0.5, 1.5, len(early))
    w_e[:, 3:] = rng.dirichlet(np.full(4, 0.4), len(early)) * rng.uniform(0, 1.5, (len(early), 1))
    c_m = _prf_centres(ijk[mid], size, rng)
    g_m = _prf_matrix(c_m, rng.uniform(5, 11, len(mid)), size)
    w_m = rng.dirichlet(np.full(7, 0.6), len(mid)).astype(np.float32)
    w_m[:, 1:3] *= 2.0  # mid cares about edges

    raw = np.empty((n, len(early) + len(mid)), np.float32)
    for s in tqdm(range(0, n, chunk), desc="pRF responses", unit="chunk", mininterval=2):
        maps = image_feature_maps(images[s : s + chunk])
        for cols, g, w in ((slice(0, len(early)), g_e, w_e), (slice(len(early), None), g_m, w_m)):
            drive = np.einsum("npc,vp->nvc", maps, g, optimize=True)
            raw[s : s + chunk, cols] = np.einsum("nvc,vc->nv", np.sqrt(drive), w)

    # high: linear in scene features, category-selective ROIs strongly to their family
    feats = scene_features(objects, stim_ids)
    feats = (feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1)
    n_cat = len(scenes.all_categories())
    w_h = np.zeros((len(high), feats.shape[1]))
    w_h[:, :n_cat] = rng.normal(0, 0.3, (len(high), n_cat))
    w_h[:, n_cat : n_cat + 10] = rng.normal(0, 1.0, (len(high), 10))
    w_h[:, n_cat + 10 :] = rng.normal(0, 0.5, (len(high), feats.shape[1] - n_cat - 10))
    shape_col = {s: n_cat + i for i, s in enumerate(scenes.SHAPES)}
    colour_col = {c: n_cat + 6 + i for i, c in enumerate(scenes.COLOURS)}
    pref = {
        1: [shape_col[s] for s in scenes.SHAPE_FAMILIES["round"]],
        2: [shape_col[s] for s in scenes.SHAPE_FAMILIES["angular"]],
        3: [colour_col[c] for c in WARM_COLOURS],
    }
    for lab, cols in pref.items():
        rows = np.flatnonzero(floc[high] == lab)
        w_h[np.ix_(rows, cols)] = rng.uniform(2.0, 3.0, (len(rows), len(cols)))
    raw_h = (feats @ w_h.T).astype(np.float32)

    raw = np.concatenate([raw, raw_h], axis=1)
    order = np.concatenate([early, mid, high])
    sd = raw.std(0)
    ok = sd > 1e-6
    responsive[order[~ok]] = False
    raw, order, sd = raw[:, ok], order[ok], sd[ok]
    z = (raw - raw.mean(0)) / sd
    # map back to C order of the responsive voxels
    resp_idx = np.flatnonzero(responsive)
    col_of = np.empty(v, int)
    col_of[order] = np.arange(len(order))
    z = z[:, col_of[resp_idx]]
    base = rng.uniform(0.5, 2.0, len(resp_idx))
    gain = rng.uniform(0.5, 1.2, len(resp_idx))
    mean_resp = (base + gain * z).astype(np.float32)
    trial_sd = np.zeros(v)
    trial_sd[resp_idx] = gain * np.exp(rng.normal(0.0, 0.5, len(resp_idx)))
    return Tuning(responsive, mean_resp, trial_sd, {s: i for i, s in enumerate(stim_ids)})


# ----------------------------------------------------------------------------- HRF and BOLD


def double_gamma_hrf(peak_s: np.ndarray, dt: float = HRF_DT, length: float = HRF_LEN) -> np.ndarray:
    """Impulse HRFs (V, L) with the given time-to-peak (s), undershoot 10 s later at 1/6.

    Each row is scaled so that its response to a ``STIM_DUR`` boxcar peaks at exactly 1, so
    ``amplitude * (boxcar * hrf)`` peaks at ``amplitude`` (% BOLD).
    """
    t = np.arange(0, length, dt)
    peak = np.asarray(peak_s, float)[:, None]
    h = gamma_dist.pdf(t, peak + 1) - gamma_dist.pdf(t, peak + 11) / 6
    box = boxcar_response(h, dt)
    return (h / box.max(1, keepdims=True)).astype(np.float32)


def boxcar_response(hrf: np.ndarray, dt: float = HRF_DT, dur: float = STIM_DUR) -> np.ndarray:
    """Response (V, L + dur/dt) of each impulse HRF to a unit boxcar of ``dur`` seconds."""
    n_box = round(dur / dt)
    padded = np.concatenate([hrf, np.zeros((hrf.shape[0], n_box))], axis=1)
    c = np.cumsum(padded, axis=1)
    c[:, n_box:] = c[:, n_box:] - c[:, :-n_box]
    return c * dt


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / f.std()


def signal_timecourse(
    onsets: np.ndarray, amplitudes: np.ndarray, response: np.ndarray, n_vols: int
) -> np.ndarray:
    """Noise-free % BOLD (V, n_vols): sum over trials of amplitude x boxcar response.

    ``response`` (V, L) is each voxel's boxcar response sampled every HRF_DT s (peak 1, from
    :func:`boxcar_response`); ``amplitudes`` (n_trials, V); volume k is at k * TR. Linear
    interpolation between HRF samples.
    """
    amplitudes = np.asarray(amplitudes)
    if amplitudes.shape != (len(onsets), response.shape[0]):
        raise ValueError(
            f"signal_timecourse: amplitudes {amplitudes.shape} != (n_onsets, V) "
            f"({len(onsets)}, {response.shape[0]})"
        )
    v = response.shape[0]
    t = np.arange(n_vols) * TR
    y = np.zeros((v, n_vols))
    resp = np.concatenate([response, np.zeros((v, 1))], axis=1)
    span = (response.shape[1] - 1) * HRF_DT
    for onset, amp in zip(onsets, amplitudes, strict=True):
        ks = np.flatnonzero((t >= onset) & (t < onset + span))
        pos = (t[ks] - onset) / HRF_DT
        i0 = np.floor(pos).astype(int)
        frac = pos - i0
        y[:, ks] += amp[:, None] * (resp[:, i0] * (1 - frac) + resp[:, i0 + 1] * frac)
    return y


def simulate_run(
    onsets: np.ndarray,
    amplitudes: np.ndarray,
    response: np.ndarray,
    n_vols: int,
    noise_sd: np.ndarray,
    brain_shape: tuple[int, int, int],
    brain: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    n_components: int = 3,
) -> np.ndarray:
    """% BOLD time series (V, n_vols) of one run: signal + (white + slow + drift) / snr.

    ``noise_sd`` (V,) is the white-noise sd at snr 1; slow components and drift come on top.
    """
    v = response.shape[0]
    y = signal_timecourse(onsets, amplitudes, response, n_vols)
    # noise, in % BOLD, scaled by 1/snr
    noise = rng.standard_normal((v, n_vols)) * noise_sd[:, None]
    for _ in range(n_components):
        tc = ndimage.gaussian_filter1d(rng.standard_normal(n_vols), 4.0, mode="reflect")
        tc = (tc - tc.mean()) / tc.std()
        load = _smooth_field(brain_shape, rng, 2.0)[brain] * 0.6
        noise += load[:, None] * tc[None, :]
    x = np.linspace(-1, 1, n_vols)
    legendre = np.stack([np.ones(n_vols), x, 1.5 * x**2 - 0.5])
    coef = rng.normal(0, 1, (v, 3)) * np.array([1.5, 1.0, 0.5])
    noise += coef @ legendre
    return y + noise / snr


# ----------------------------------------------------------------------------- writing


def save_nifti(path: str | os.PathLike, data: np.ndarray, tr: float | None = None) -> None:
    """Write a gzipped NIfTI-1 atomically, 2 mm affine, deterministic bytes (gzip mtime 0)."""
    img = nib.Nifti1Image(data, np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((VOXEL_MM,) * 3 + (tr,))
    raw = img.to_bytes()
    with atomic_path(path) as tmp:
        with (
            open(tmp, "wb") as f,
            gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1, mtime=0, filename="") as gz,
        ):
            gz.write(raw)


def _write_tsv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.3f")


class _NpzWriter:
    """Writes an .npz (as np.savez does: stored zip of .npy) array by array, optionally
    streaming one big array row block by row block, with fixed timestamps (same bytes)."""

    def __init__(self, fileobj: zipfile.ZipFile) -> None:
        self.zf = fileobj

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        return info

    def add(self, name: str, array: np.ndarray) -> None:
        with self.zf.open(self._info(name), "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)

    def stream(self, name: str, shape: tuple[int, ...], dtype: np.dtype, blocks: Iterator):
        """Write ``shape``/``dtype`` array from ``blocks`` (row blocks, C order); checks size."""
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(shape),
        }
        n_rows = 0
        with self.zf.open(self._info(name), "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=dtype)
                f.write(block.tobytes())
                n_rows += block.shape[0]
        if n_rows != shape[0]:
            raise RuntimeError(f"npz stream {name}: wrote {n_rows} rows, expected {shape[0]}")


def write_anatomy(anat_dir: Path, subject: str, anat: Anatomy) -> None:
    """Brain and nsdgeneral masks (uint8), streams and floc dsegs (int16) with label tsvs."""
    save_nifti(anat_dir / f"sub-{subject}_desc-brain_mask.nii.gz", anat.brain.astype(np.uint8))
    save_nifti(
        anat_dir / f"sub-{subject}_desc-nsdgeneral_mask.nii.gz", anat.visual.astype(np.uint8)
    )
    for desc, data, names in (("streams", anat.streams, STREAMS), ("floc", anat.floc, FLOC)):
        save_nifti(anat_dir / f"sub-{subject}_desc-{desc}_dseg.nii.gz", data.astype(np.int16))
        _write_tsv(
            anat_dir / f"sub-{subject}_desc-{desc}_dseg.tsv",
            pd.DataFrame({"index": list(names), "name": list(names.values())}),
        )


def _load_stimuli(
    stim_dir: Path, preset: SizePreset
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    images, index = load_indexed(stim_dir / "images.npy", mmap=True)
    for col in ("stim_id", "split", "subjects"):
        if col not in index.columns:
            raise DataError(f"{stim_dir / 'images.index.parquet'}: missing column {col!r}")
    if len(index) != preset.n_images or images.shape[1:] != (preset.image_size,) * 2 + (3,):
        raise DataError(
            f"{stim_dir / 'images.npy'}: shape {images.shape} does not match the size preset "
            f"({preset.n_images} images of {preset.image_size}px); wrong size argument?"
        )
    objects = read_parquet(stim_dir / "objects.parquet")
    return images, index, objects


def simulate_subject(
    subject: str,
    stim_dir: str | os.PathLike,
    bids_dir: str | os.PathLike,
    truth_path: str | os.PathLike,
    size: str,
    snr: float,
    seed: int,
) -> None:
    """Simulate one subject: anatomy, tuning, design, BOLD runs; write BIDS files and truth.

    Reads the stimuli written by :func:`simulate_stimuli` (the subject's train images are the
    rows whose ``subjects`` column is ``subject``). Writes ``<bids>/sub-XX/anat/*`` and
    ``<bids>/sub-XX/ses-YY/func/*`` run by run, then the truth npz at ``truth_path``.
    """
    preset = get_size(size)
    if not snr > 0 or not math.isfinite(snr):
        raise ValueError(f"simulate_subject: snr must be a positive number, got {snr}")
    subject = str(subject)
    if not subject.isdigit():
        raise ValueError(f"simulate_subject: subject must be a zero-padded number, got {subject!r}")
    stim_dir, bids_dir, truth_path = Path(stim_dir), Path(bids_dir), Path(truth_path)
    images, index, objects = _load_stimuli(stim_dir, preset)
    test_ids = index.loc[index["split"] == "test", "stim_id"].tolist()
    train_ids = index.loc[
        (index["split"] == "train") & (index["subjects"] == subject), "stim_id"
    ].tolist()
    if not train_ids:
        raise DataError(
            f"{stim_dir / 'images.index.parquet'}: no train images for subject {subject}"
        )
    ss = _seed_seq(seed, size, int(subject))
    r_design, r_anat, r_tune, r_trial, r_hrf, r_noise = (
        np.random.default_rng(s) for s in ss.spawn(6)
    )

    trials = make_design(test_ids, train_ids, preset, r_design)
    anat = make_anatomy(preset, r_anat)
    seen = test_ids + train_ids
    rows = index.reset_index(drop=True).set_index("stim_id").index.get_indexer(seen)
    tuning = make_tuning(
        anat,
        np.asarray(images[np.sort(rows)]),
        [seen[i] for i in np.argsort(rows)],
        objects,
        r_tune,
    )

    brain = anat.brain
    ijk = np.argwhere(brain)
    v = len(ijk)
    resp_idx = np.flatnonzero(tuning.responsive)
    peak = r_hrf.uniform(4.0, 6.5, v)
    hrf = double_gamma_hrf(peak)
    response = boxcar_response(hrf.astype(float))
    white_sd = r_hrf.uniform(0.8, 1.4, v)
    baseline = 1000 * (1 + 0.1 * _smooth_field(brain.shape, r_hrf, 3.0))
    baseline_brain = baseline[brain]

    sub_dir = bids_dir / f"sub-{subject}"
    write_anatomy(sub_dir / "anat", subject, anat)

    trial_df = pd.DataFrame([t.__dict__ for t in trials])
    run_keys = [
        (_label(a + 1), _label(b + 1))
        for a in range(preset.n_sessions)
        for b in range(preset.n_runs)
    ]
    n_vols = preset.n_vols
    run_rngs = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence(r_noise.integers(0, 2**63)).spawn(len(run_keys))
    ]
    outside = ~brain

    def run_blocks() -> Iterator[np.ndarray]:
        for (ses, run), rng_run in tqdm(
            list(zip(run_keys, run_rngs, strict=True)),
            desc=f"sub-{subject} runs",
            unit="run",
            mininterval=2,
        ):
            sel = trial_df[(trial_df["session"] == ses) & (trial_df["run"] == run)]
            amp = np.zeros((len(sel), v), np.float32)
            mu = tuning.mean_response[[tuning.image_row[s] for s in sel["stim_id"]]]
            shared = r_trial.standard_normal((len(sel), 1))
            own = r_trial.standard_normal((len(sel), len(resp_idx)))
            eps = np.sqrt(0.8) * own + np.sqrt(0.2) * shared
            amp[:, resp_idx] = mu + tuning.trial_sd[resp_idx] * eps
            y = simulate_run(
                sel["onset"].to_numpy(),
                amp,
                response,
                n_vols,
                white_sd,
                brain.shape,
                brain,
                snr,
                rng_run,
            )
            vol = np.empty(brain.shape + (n_vols,), np.float32)
            vol[brain] = baseline_brain[:, None] * (1 + y / 100)
            vol[outside] = 30 * (1 + 0.02 * rng_run.standard_normal((int(outside.sum()), n_vols)))
            func = sub_dir / f"ses-{ses}" / "func"
            stem = f"sub-{subject}_ses-{ses}_task-images_run-{run}"
            save_nifti(func / f"{stem}_bold.nii.gz", vol, tr=TR)
            _write_tsv(
                func / f"{stem}_events.tsv",
                pd.DataFrame(
                    {"onset": sel["onset"], "duration": STIM_DUR, "stim_id": sel["stim_id"]}
                ),
            )
            yield amp

    mu_all = tuning.mean_response
    signal_sd = np.zeros(v)
    signal_sd[resp_idx] = mu_all.std(0, ddof=1)
    nc = noise_ceiling(signal_sd, tuning.trial_sd)
    with atomic_path(truth_path) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        w = _NpzWriter(zf)
        w.stream("amplitudes", (len(trials), v), np.float32, run_blocks())
        w.add("voxel_ijk", ijk.astype(np.int16))
        w.add("trial_session", trial_df["session"].to_numpy().astype(str))
        w.add("trial_run", trial_df["run"].to_numpy().astype(str))
        w.add("trial_onset", trial_df["onset"].to_numpy(float))
        w.add("trial_stim_id", trial_df["stim_id"].to_numpy().astype(str))
        w.add("hrf", hrf)
        w.add("hrf_dt", np.float64(HRF_DT))
        w.add("hrf_peak_s", peak)
        w.add("responsive", tuning.responsive)
        w.add("noise_ceiling", nc)
        w.add("roi", anat.streams[brain])
        w.add("floc", anat.floc[brain])
        w.add("trial_sd", tuning.trial_sd)
        w.add("tr", np.float64(TR))
        w.add("stim_dur", np.float64(STIM_DUR))
