"""Microstimulation (Mind Reader 3.3): set one ROI's voxels and watch the decoded embedding move.

A fitted mapper decodes the test images' voxel rows (z-scored voxels, repeats averaged) into
CLIP image embeddings. For each chosen ROI, every test row is changed in that ROI's columns
only, to ``boost`` them (set to a high z value, default 10) or ``silence`` them (set to 0, the
session mean), and decoded again. The shift toward a category is the change in cosine
similarity between the decoded embedding and that category's class embedding (the
prompt-ensemble text embedding), averaged over the test images:

    shift(roi, manipulation, c) = mean_i [cos(f(x_i'), e_c) - cos(f(x_i), e_c)]

where x_i' is x_i with the ROI's columns set. The category with the largest shift is the
manipulation's "top-shifted" category. The stimulated embeddings can be given to a generator
to see what the stimulated brain "sees".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fmridecode.io import DataError, atomic_path
from fmridecode.mappers.targets import l2_normalize

#: the manipulations: how the ROI's z-scored voxels are set (boost: to the configured value)
MANIPULATIONS = ("boost", "silence")


def manipulation_values(manipulations: Sequence[str], boost_value: float) -> dict[str, float]:
    """Manipulation name -> the z value it sets (boost: ``boost_value``; silence: 0)."""
    unknown = sorted(set(manipulations) - set(MANIPULATIONS))
    if unknown:
        raise DataError(f"microstim: unknown manipulations {unknown}; known {MANIPULATIONS}")
    return {m: (float(boost_value) if m == "boost" else 0.0) for m in manipulations}


def expand_rois(rois: Sequence[str], available: Sequence[str]) -> list[str]:
    """The configured ROI list with ``floc`` replaced by every ``floc-<name>`` the subject has
    (in ``available``), duplicates dropped, order kept."""
    out: list[str] = []
    for roi in rois:
        names = [a for a in available if a.startswith("floc-")] if roi == "floc" else [roi]
        out += [n for n in names if n not in out]
    return out


def stimulate(X: np.ndarray, columns: np.ndarray, value: float) -> np.ndarray:
    """A copy of ``X`` (n, V) with the ``columns`` (boolean (V,) or indices) set to ``value``."""
    out = np.array(X, dtype=np.float32, copy=True)
    out[:, columns] = value
    return out


def class_cosines(pred: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity (n, C) of each decoded embedding with each class embedding."""
    pred = np.asarray(pred, np.float64)
    class_emb = np.asarray(class_emb, np.float64)
    if pred.ndim != 2 or class_emb.ndim != 2 or pred.shape[1] != class_emb.shape[1]:
        raise DataError(
            f"microstim: embeddings {pred.shape} and class embeddings {class_emb.shape} must be "
            "2D of the same width"
        )
    return l2_normalize(pred) @ l2_normalize(class_emb).T


def microstim_shifts(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    columns: Mapping[str, np.ndarray],
    manipulations: Mapping[str, float],
    class_emb: np.ndarray,
    classes: Sequence[str],
) -> tuple[pd.DataFrame, np.ndarray, dict[tuple[str, str], np.ndarray]]:
    """Every (ROI, manipulation)'s shift toward every class.

    ``predict`` maps voxel rows (n, V) to embeddings (the fitted mapper); ``columns``: ROI ->
    boolean (V,) of its columns (an empty ROI is skipped); ``manipulations``: name -> value set.
    Returns the long table ``roi, manipulation, category, shift, baseline_cosine`` (mean over
    the rows of X), the baseline embeddings and the stimulated ones per (roi, manipulation).
    """
    X = np.asarray(X, np.float32)
    classes = list(classes)
    if len(classes) != len(class_emb):
        raise DataError(f"microstim: {len(classes)} classes for {len(class_emb)} embeddings")
    base_pred = np.asarray(predict(X))
    base_cos = class_cosines(base_pred, class_emb)
    rows, stimulated = [], {}
    for roi, sel in columns.items():
        sel = np.asarray(sel, bool)
        if sel.shape != (X.shape[1],):
            raise DataError(f"microstim: ROI {roi!r} has {sel.size} columns, X has {X.shape[1]}")
        if not sel.any():
            continue
        for name, value in manipulations.items():
            pred = np.asarray(predict(stimulate(X, sel, value)))
            stimulated[(roi, name)] = pred
            shift = (class_cosines(pred, class_emb) - base_cos).mean(axis=0)
            rows += [
                {
                    "roi": roi,
                    "manipulation": name,
                    "category": c,
                    "shift": float(s),
                    "baseline_cosine": float(b),
                }
                for c, s, b in zip(classes, shift, base_cos.mean(axis=0), strict=True)
            ]
    cols = ["roi", "manipulation", "category", "shift", "baseline_cosine"]
    return pd.DataFrame(rows, columns=cols), base_pred, stimulated


def microstim_rows(
    shifts: pd.DataFrame,
    base: Mapping[str, Any],
    rois: Sequence[str],
    manipulations: Sequence[str],
    n_voxels: Mapping[str, int],
    n_images: int,
) -> list[dict]:
    """Metric rows: ``microstim_shift`` per (roi, manipulation, category) and
    ``microstim_top_shift`` (the largest shift, its ``category``) per (roi, manipulation);
    ``n`` = the ROI's voxels in the fit ROI. A ROI without voxels there gets unavailable rows.
    The mean over test images is in the value; ``n_images`` goes to the column of that name.
    """
    rows = []
    for roi in rois:
        for m in manipulations:
            common = {**base, "roi": roi, "manipulation": m, "n": int(n_voxels.get(roi, 0))}
            g = shifts[(shifts["roi"] == roi) & (shifts["manipulation"] == m)]
            if g.empty:
                why = f"unavailable: ROI {roi} has no voxels in the fit ROI"
                for metric in ("microstim_shift", "microstim_top_shift"):
                    rows.append({**common, "metric": metric, "value": np.nan, "status": why})
                continue
            rows += [
                {**common, "metric": "microstim_shift", "category": c, "value": float(s),
                 "status": "ok", "n_images": int(n_images)}
                for c, s in zip(g["category"], g["shift"], strict=True)
            ]  # fmt: skip
            top = g.loc[g["shift"].idxmax()]
            rows.append(
                {**common, "metric": "microstim_top_shift", "category": top["category"],
                 "value": float(top["shift"]), "status": "ok", "n_images": int(n_images)}
            )  # fmt: skip
    return rows


def family_shift(
    shifts: pd.DataFrame, roi: str, manipulation: str, members: Sequence[str]
) -> tuple[float, float]:
    """(mean shift over the categories in ``members``, mean over the others) for one ROI and
    manipulation: how much more the embedding moved toward a family of categories."""
    g = shifts[(shifts["roi"] == roi) & (shifts["manipulation"] == manipulation)]
    if g.empty:
        raise DataError(f"microstim: no shifts for ROI {roi!r}, manipulation {manipulation!r}")
    inside = g["category"].isin(list(members))
    if not inside.any() or inside.all():
        raise DataError(f"microstim: {list(members)} must split the categories in two")
    return float(g.loc[inside, "shift"].mean()), float(g.loc[~inside, "shift"].mean())


def generate_conditions(
    pipe: Any, conditions: Mapping[str, np.ndarray], **settings: Any
) -> dict[str, np.ndarray]:
    """Images (uint8 (n, H, W, 3)) from each condition's embeddings with the tiny generator's
    ``reconstruct`` (``settings``: steps, guidance, seed, out_size, ...). Row i of every
    condition is the same test image, sampled from the same seeded noise, so the conditions'
    images differ by their embeddings only."""
    from fmridecode.generators.tiny_diffusion import reconstruct

    sizes = {len(v) for v in conditions.values()}
    if len(sizes) != 1:
        raise DataError(f"microstim: conditions with different numbers of rows {sorted(sizes)}")
    return {k: reconstruct(pipe, v, first_row=0, **settings) for k, v in conditions.items()}


def shift_figure(shifts: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """PNG heatmap: shift toward each category (columns) for each ROI x manipulation (rows),
    the top-shifted category of each row outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if shifts.empty:
        raise DataError(f"{path}: no microstimulation shifts to draw")
    keys = list(dict.fromkeys(zip(shifts["roi"], shifts["manipulation"], strict=True)))
    cats = list(dict.fromkeys(shifts["category"]))
    table = shifts.pivot_table(index=["roi", "manipulation"], columns="category", values="shift")
    M = np.array([[table.loc[k, c] for c in cats] for k in keys])
    lim = float(np.abs(M).max()) or 1.0
    fig, ax = plt.subplots(figsize=(0.32 * len(cats) + 2.8, 0.32 * len(keys) + 1.8))
    im = ax.imshow(M, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(cats)), cats, rotation=90, fontsize=7)
    ax.set_yticks(range(len(keys)), [f"{r} {m}" for r, m in keys], fontsize=7)
    for i, j in enumerate(M.argmax(axis=1)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="black"))
    fig.colorbar(im, ax=ax, label="shift in cosine to the class embedding")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def microstim_grid(
    stimuli: np.ndarray,
    columns: Mapping[str, np.ndarray],
    ids: Sequence[str],
    path: str | os.PathLike,
    title: str,
) -> None:
    """PNG grid: one row per test image (``ids``): its stimulus, then the image generated from
    each condition of ``columns`` (label -> uint8 (n, H, W, 3); e.g. baseline, then each
    manipulation), in the given order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stimuli = np.asarray(stimuli)
    n = len(ids)
    if len(stimuli) != n or any(len(v) != n for v in columns.values()):
        raise DataError(f"{path}: every column of the grid needs {n} images")
    panels = {"stimulus": stimuli, **columns}
    fig, axes = plt.subplots(
        n, len(panels), figsize=(1.05 * len(panels), 1.1 * n + 0.5), squeeze=False
    )
    for j, (label, imgs) in enumerate(panels.items()):
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(np.asarray(imgs[i], np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label.replace(" ", "\n", 1), fontsize=6.5)
            if j == 0:
                ax.set_ylabel(str(ids[i]), fontsize=6.5)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
