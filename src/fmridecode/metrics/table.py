"""The one metrics writer: tidy, long-format parquet rows that follow the metric vocabulary.

Every row has ``dataset, subject, mapper, metric, value, status`` plus whatever identifies the
condition (``target``, ``generator``, ``k``, ``ways``, ``pool``, ``direction``, ``feature``,
``n``, ``glm_type``, ``roi``, ``chance``); ``n`` is always a count (test items, voxels, images),
``ways`` the n of n-way identification. A value that cannot be computed is written as missing with
``status`` saying why; a computed value must be finite.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from fmridecode.io import read_parquet, write_parquet

REQUIRED = ("dataset", "subject", "mapper", "metric", "value")

#: metric name -> one-line definition (the README's metric table is generated from this).
METRICS: dict[str, str] = {
    "recall_at_k": "fraction of test items whose true match is among the k nearest "
    "(cosine) candidates of the whole pool; forward = fMRI->candidates",
    "mean_recall": "mean of recall_at_k over the configured k (metrics.ks) for one target, "
    "pool and direction (BrainCLIP's mean recall); chance the mean of theirs",
    "prediction_r2": "R^2 of each embedding dimension over the test images (1 - residual / "
    "total sum of squares about the test mean), averaged over dimensions; 0 = predicting the "
    "test mean",
    "prediction_cosine": "mean cosine similarity of each predicted embedding with its own "
    "image's true embedding; chance = mean cosine with the other test images' embeddings",
    "two_way_identification": "fraction of (item, other test item) pairs where the "
    "prediction is closer (Pearson r of features) to its own target than to the other; "
    "against all other test images (Brain-Diffuser, MindEye); feature = embedding (decoded "
    "vs true), clip (CLIP image features of reconstruction vs stimulus), alexnet2 / alexnet5 "
    "(AlexNet features.4 / features.11), inception (Inception-v3 avgpool)",
    "two_way_random": "BrainCLIP's 2-way identification: the prediction against its own target "
    "and one random other test item, repeated 50 times per item (seeded); chance 0.5",
    "n_way": "fraction of (item, draw) where the prediction correlates more with its own "
    "target than with each of ways - 1 random distinct other test items (50 seeded draws per "
    "item); chance 1/ways; n = test items",
    "glm_r2": "GLMsingle's R^2 (%) of the time series by each type's model (glm_type A-D), "
    "per voxel averaged over the subject's sessions; median over the voxels of roi; n = voxels",
    "effnet_distance": "mean over test images of the correlation distance (1 - Pearson r) "
    "between EfficientNet-B1 avgpool features of reconstruction and stimulus; lower is better",
    "swav_distance": "mean over test images of the correlation distance between SwAV "
    "ResNet-50 avgpool features of reconstruction and stimulus; lower is better",
    "zero_shot_top1": "BrainCLIP's zero-shot classification: fraction of test images showing a "
    "held-out category whose best class (cosine of the decoded embedding to the 18-template "
    "prompt-ensemble class embeddings) is a held-out category they show; chance per image",
    "zero_shot_top5": "as zero_shot_top1, correct when such a category is among the 5 best",
    "category_auc": "Mind Reader's category decoding: AUC-ROC over the test images of a "
    "3-linear-layer multi-label classifier trained on the training images; feature = fmri "
    "(voxels), clip (true CLIP image embeddings) or mapped_clip (the clip classifier on the "
    "decoded embeddings); one row per category and their mean (category 'mean'); chance 0.5",
    "pixcorr": "Pearson r between flattened RGB pixels of reconstruction and stimulus",
    "ssim": "structural similarity, grayscale, Gaussian weights sigma 1.5",
    "glm_recovery_r": "median over responsive voxels of the Pearson r between estimated "
    "single-trial betas and the simulator's true amplitudes",
    "noise_ceiling": "noise ceiling (%) of trial-averaged responses, NSD's formula; feature "
    "ncsnr: estimated from the repeated single-trial betas (z-scored per session), median over "
    "the voxels of roi; feature simulated: median over responsive voxels of the simulator's "
    "true one",
    "encoding_r": "Mind Reader's encoding direction: ridge from the CLIP image embedding "
    "(feature clip) to each voxel of the fit ROI (alpha per voxel by CV on the training "
    "images); median over the voxels of roi of the Pearson r between predicted and measured "
    "test responses; n = voxels",
    "encoding_ceiling_fraction": "fraction of the explainable variance the encoding model "
    "explains: median over the voxels of roi with a noise ceiling NC > 0 of sign(r) r^2 / "
    "(NC / 100), NC from the betas (NSD's formula, same repeats averaged); 1 = at the ceiling; "
    "n = those voxels",
    "microstim_shift": "Mind Reader's microstimulation: the fit ROI's test voxel rows with the "
    "voxels of roi set (manipulation boost: to metrics.microstim.boost_value; silence: to 0), "
    "decoded by the mapper; mean over test images of the change in cosine similarity between "
    "the decoded image embedding and the class embedding of category; n = voxels set",
    "microstim_top_shift": "the largest microstim_shift of one roi and manipulation over all "
    "categories; category = the category it moves toward",
}

#: column order of the written tables (extra columns follow).
COLUMNS = [
    "dataset",
    "subject",
    "mapper",
    "generator",
    "metric",
    "target",
    "feature",
    "k",
    "ways",
    "pool",
    "direction",
    "n",
    "glm_type",
    "roi",
    "category",
    "supervision",
    "value",
    "chance",
    "status",
]


def metric_rows(base: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Merge the shared identifying columns ``base`` into each row."""
    return [{**base, **r} for r in rows]


def validate(df: pd.DataFrame, source: str = "metrics") -> pd.DataFrame:
    """Check the vocabulary and the no-silent-NaN rule; return the table in column order."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: metric table lacks columns {missing}")
    unknown = sorted(set(df["metric"]) - set(METRICS))
    if unknown:
        raise ValueError(f"{source}: metric names not in the vocabulary: {unknown}")
    if "status" not in df.columns:
        df = df.assign(status="ok")
    df = df.copy()
    df["status"] = df["status"].fillna("ok")
    vals = pd.to_numeric(df["value"], errors="coerce")
    bad = df[(df["status"] == "ok") & ~vals.map(lambda v: v is not None and math.isfinite(v))]
    if len(bad):
        raise ValueError(
            f"{source}: {len(bad)} rows with status ok have a non-finite value, e.g. "
            f"{bad.iloc[0].to_dict()}"
        )
    df["value"] = vals.astype("float64")
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    return df[cols]


def write_metrics(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame, path: str | os.PathLike
) -> pd.DataFrame:
    """Validate and write a metric table (atomic). Returns the written frame."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    df = validate(df, source=str(path))
    write_parquet(df, path)
    return df


def concat_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate per-stage metric tables into one validated table."""
    frames = [read_parquet(p) for p in paths]
    if not frames:
        raise ValueError("no metric tables to concatenate")
    return validate(pd.concat(frames, ignore_index=True), source="concatenated metrics")
