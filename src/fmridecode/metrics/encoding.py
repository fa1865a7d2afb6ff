"""The encoding direction (Mind Reader, appendix A.8): CLIP image embeddings -> voxels.

A ridge model (``RidgeCV``, alpha by K-fold cross-validation on the training rows only) maps
each image's CLIP image embedding to every voxel of the fit ROI's voxel matrix; on the test
images it predicts each voxel's trial-averaged response, scored by the per-voxel Pearson r
between prediction and measurement. Each voxel's r is set against its noise ceiling NC (%,
NSD's formula, the same repeats averaged): a perfect model reaches r^2 = NC / 100, so
``sign(r) r^2 / (NC / 100)`` is the fraction of the explainable variance explained (signed,
so that a voxel predicted in the wrong direction counts against the model instead of as
explained). Summaries are per ROI: the fit ROI itself, the visual streams (early, mid, high)
and the category-selective ``floc-*`` labels of the subject's anat files, each restricted to
the fit ROI's voxels.

Rows joined by stimulus id, never by position.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fmridecode.io import DataError, atomic_path
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align
from fmridecode.roi import STREAMS, roi_mask, roi_names

#: label of a voxel of the fit ROI that no stream or floc label covers
OTHER = "other"


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` with the same column of ``b`` (rows = samples);
    NaN where either column is constant (r undefined)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"pearson_columns: shapes {a.shape} and {b.shape} must be equal and 2D")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    ok = den > 0
    r = np.full(a.shape[1], np.nan)
    r[ok] = (a[:, ok] * b[:, ok]).sum(axis=0) / den[ok]
    return np.clip(r, -1.0, 1.0)


@dataclass(frozen=True)
class EncodingFit:
    """What ``fit_encoding`` returns: per-voxel test r, alphas, and the test predictions."""

    r: np.ndarray  # (V,) test r per voxel, NaN where undefined
    alpha: np.ndarray  # (V,) the ridge alpha of each voxel (all equal unless per voxel)
    pred: np.ndarray  # (n_test, V) predicted test responses
    test_ids: list[str]  # stimulus ids of the test rows
    n_train: int


def fit_encoding(
    emb: np.ndarray,
    emb_ids: Sequence[str],
    voxels: np.ndarray,
    voxel_index: pd.DataFrame,
    alphas: Sequence[float],
    cv: int = 5,
    alpha_per_target: bool = True,
    seed: int = 0,
    **ridge: Any,
) -> EncodingFit:
    """Ridge from embeddings to voxels on the ``train`` rows of ``voxel_index``, scored on its
    ``test`` rows.

    ``emb`` (n_images, d) with stimulus ids ``emb_ids`` is joined to the voxel matrix
    (n_stimuli, V; index columns ``stim_id, split``) by id. Alpha(s) by ``cv``-fold CV on the
    training rows only (per voxel when ``alpha_per_target``); extra keywords go to
    ``RidgeCV`` (compute settings).
    """
    voxels = np.asarray(voxels)
    if voxels.ndim != 2 or len(voxel_index) != len(voxels):
        raise DataError(
            f"encoding: voxel matrix {voxels.shape} and its index ({len(voxel_index)} rows) "
            "disagree"
        )
    for col in ("stim_id", "split"):
        if col not in voxel_index.columns:
            raise DataError(f"encoding: voxel index lacks column {col!r}")
    split = voxel_index["split"].to_numpy()
    train, test = split == "train", split == "test"
    if train.sum() < cv or test.sum() < 3:
        raise DataError(
            f"encoding: {int(train.sum())} training and {int(test.sum())} test rows; need "
            f"at least {cv} and 3"
        )
    ids = voxel_index["stim_id"].astype(str).tolist()
    X = align(np.asarray(emb), list(map(str, emb_ids)), ids, "encoding: image embeddings")
    X = np.asarray(X, np.float32)
    model = RidgeCV(alphas, cv=cv, alpha_per_target=alpha_per_target, seed=seed, **ridge)
    model.fit(X[train], voxels[train])
    pred = model.predict(X[test])
    r = pearson_columns(pred, voxels[test])
    alpha = np.broadcast_to(np.asarray(model.alpha_, np.float64), (voxels.shape[1],)).copy()
    test_ids = [s for s, t in zip(ids, test, strict=True) if t]
    return EncodingFit(r, alpha, np.asarray(pred, np.float32), test_ids, int(train.sum()))


def roi_columns(
    bids_dir: str | os.PathLike, subject: str, fit_roi: str, rois: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """ROI name -> boolean (V,) over the fit ROI's voxel-matrix columns (C order inside the
    fit ROI's mask, as ``roi.extract`` orders them): which of them lie in that ROI.

    ``rois``: the names wanted (default: every ROI the subject's anat files define,
    ``nsdgeneral``, the streams and the floc labels; see ``roi.roi_names``). A ROI without
    voxels in the fit ROI maps to an all-False array.
    """
    fit = np.asarray(roi_mask(bids_dir, subject, fit_roi).dataobj) > 0
    flat = np.flatnonzero(fit.ravel())
    out = {}
    for name in roi_names(bids_dir, subject) if rois is None else rois:
        try:
            sel = np.asarray(roi_mask(bids_dir, subject, name).dataobj) > 0
        except DataError as e:
            if "has no voxels" not in str(e):
                raise
            sel = np.zeros_like(fit)
        if sel.shape != fit.shape:
            raise DataError(f"ROI {name!r} of sub-{subject}: grid {sel.shape} vs {fit.shape}")
        out[name] = sel.ravel()[flat]
    return out


def voxel_labels(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """One label per voxel for figures: its floc label if any, else its stream, else 'other'."""
    n = len(next(iter(columns.values())))
    labels = np.full(n, OTHER, dtype=object)
    for name in STREAMS:
        if name in columns:
            labels[columns[name]] = name
    for name, sel in columns.items():
        if name.startswith("floc-"):
            labels[sel] = name
    return labels


def explained_fraction(r: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """Fraction of the explainable variance explained per voxel: ``sign(r) r^2 / (NC/100)``
    (NC in %); NaN where NC <= 0 or r is undefined."""
    r = np.asarray(r, np.float64)
    nc = np.asarray(nc, np.float64)
    if r.shape != nc.shape:
        raise DataError(f"explained_fraction: r {r.shape} and noise ceiling {nc.shape} differ")
    ok = (nc > 0) & np.isfinite(r) & np.isfinite(nc)
    out = np.full(r.shape, np.nan)
    out[ok] = np.sign(r[ok]) * r[ok] ** 2 / (nc[ok] / 100.0)
    return out


def encoding_rows(
    r: np.ndarray,
    nc: np.ndarray,
    columns: Mapping[str, np.ndarray],
    base: Mapping[str, Any],
    fit_roi: str,
) -> list[dict]:
    """Metric rows per ROI: ``encoding_r`` (median test r of its voxels, ``n`` = voxels with
    a defined r) and ``encoding_ceiling_fraction`` (median over its voxels with NC > 0 of
    the explained fraction, ``n`` = those voxels). A ROI without voxels in the fit ROI gets
    unavailable rows saying so."""
    frac = explained_fraction(r, nc)
    rows = []
    for roi, sel in columns.items():
        sel = np.asarray(sel, bool)
        if sel.shape != r.shape:
            raise DataError(f"encoding: ROI {roi!r} has {sel.size} columns, r has {r.size}")
        for metric, values in (("encoding_r", r), ("encoding_ceiling_fraction", frac)):
            v = values[sel & np.isfinite(values)]
            row = {**base, "metric": metric, "roi": roi, "n": int(v.size)}
            if not sel.any():
                why = f"unavailable: no voxel of {roi} in the fit ROI {fit_roi}"
                rows.append({**row, "value": np.nan, "status": why})
            elif not v.size:
                why = (
                    "unavailable: no voxel with a positive noise ceiling"
                    if metric == "encoding_ceiling_fraction"
                    else "unavailable: no voxel with a defined r"
                )
                rows.append({**row, "value": np.nan, "status": why})
            else:
                rows.append({**row, "value": float(np.median(v)), "status": "ok"})
    return rows


def voxel_table(
    r: np.ndarray, nc: np.ndarray, alpha: np.ndarray, labels: np.ndarray, ijk: np.ndarray
) -> pd.DataFrame:
    """Per-voxel table: position ``i, j, k``, figure ``label``, ``r``, ``noise_ceiling`` (%),
    ``explained_fraction`` and ``alpha``, one row per fit-ROI column in column order."""
    ijk = np.asarray(ijk)
    return pd.DataFrame(
        {
            "i": ijk[:, 0],
            "j": ijk[:, 1],
            "k": ijk[:, 2],
            "label": np.asarray(labels, dtype=str),
            "r": np.asarray(r, np.float64),
            "noise_ceiling": np.asarray(nc, np.float64),
            "explained_fraction": explained_fraction(r, nc),
            "alpha": np.asarray(alpha, np.float64),
        }
    )


def encoding_figure(
    r: np.ndarray, nc: np.ndarray, labels: np.ndarray, path: str | os.PathLike, title: str
) -> None:
    """PNG: each voxel's test r against its noise ceiling, coloured by ROI label, with the
    ceiling r = sqrt(NC / 100) drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, nc, labels = np.asarray(r, float), np.asarray(nc, float), np.asarray(labels, dtype=str)
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    order = [n for n in (*STREAMS, OTHER) if n in labels]
    order += sorted(n for n in set(labels) if n.startswith("floc-"))
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(order):
        sel = (labels == name) & np.isfinite(r)
        if sel.any():
            med = float(np.median(r[sel]))
            ax.scatter(
                nc[sel],
                r[sel],
                s=6,
                alpha=0.6,
                color=cmap(i % 10),
                label=f"{name} (n={int(sel.sum())}, median r {med:.2f})",
                linewidths=0,
            )
    grid = np.linspace(0, max(100.0, float(np.nanmax(nc, initial=0))), 200)
    ax.plot(grid, np.sqrt(grid / 100), "k--", lw=1, label="ceiling r = sqrt(NC/100)")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set(xlabel="noise ceiling (%)", ylabel="test r (encoding model)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(min(-0.2, float(np.nanmin(r, initial=0)) - 0.05), 1.02)
    ax.legend(fontsize=6.5, loc="lower right", markerscale=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
