"""The reconstruction and identification metric rows, defined once.

Used by the ``metrics_recon`` and ``metrics_decoding`` rules and by the noise-sensitivity
analysis, so every table scores the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fmridecode.metrics.identification import (
    correlation_distance,
    n_way_identification,
    two_way_identification,
    two_way_random,
)
from fmridecode.metrics.image import pixcorr, resize, ssim

#: metric of each network feature (see ``metrics.networks``): 2-way identification for
#: AlexNet(2), AlexNet(5) and Inception-v3, mean correlation distance for EffNet-B1 and SwAV
FEATURE_METRIC = {
    "alexnet2": "two_way_identification",
    "alexnet5": "two_way_identification",
    "inception": "two_way_identification",
    "effnet": "effnet_distance",
    "swav": "swav_distance",
}


def identification_rows(
    pred: np.ndarray,
    true: np.ndarray,
    base: Mapping[str, Any],
    *,
    n_way: Sequence[int] = (2, 5, 10, 50),
    repeats: int = 50,
    seed: int = 0,
) -> list[dict]:
    """2-way against all other items, BrainCLIP's random 2-way and n-way rows of features
    ``pred`` vs ``true`` (N, D), in the same order. An n above the number of items is written
    as unavailable with the reason (a small test set cannot hold 50-way identification)."""
    m = len(pred)
    base = {**base, "n": m}
    rows = [
        {**base, "metric": "two_way_identification", "chance": 0.5,
         "value": two_way_identification(pred, true)},
        {**base, "metric": "two_way_random", "chance": 0.5,
         "value": two_way_random(pred, true, repeats=repeats, seed=seed)},
    ]  # fmt: skip
    for n in n_way:
        row = {**base, "metric": "n_way", "ways": int(n), "chance": 1.0 / n}
        if n > m:
            rows.append({**row, "value": np.nan, "status": f"unavailable: {m} test items < {n}"})
        else:
            value = n_way_identification(pred, true, int(n), repeats=repeats, seed=seed)
            rows.append({**row, "value": value})
    return rows


def recon_rows(
    recons: np.ndarray,
    stimuli: np.ndarray,
    recon_emb: np.ndarray,
    true_emb: np.ndarray,
    image_size: int,
    base: Mapping[str, Any],
    **identification: Any,
) -> list[dict]:
    """Metric rows of one set of reconstructions against the stimuli they decode.

    ``recons`` and ``stimuli`` are uint8 (N, H, W, 3) in the same order (any sizes: both are
    resized to ``image_size`` for PixCorr and SSIM); ``recon_emb`` and ``true_emb`` (N, D) are
    the CLIP image embeddings of the reconstructions and of the stimuli (feature ``clip``:
    2-way, random 2-way and n-way identification, options as ``identification_rows``).
    ``base`` holds the identifying columns of every row.
    """
    a, b = resize(recons, image_size), resize(stimuli, image_size)
    base = {**base, "target": "image", "n": len(recons)}
    return [
        {**base, "metric": "pixcorr", "value": pixcorr(a, b)},
        {**base, "metric": "ssim", "value": ssim(a, b)},
        *identification_rows(recon_emb, true_emb, {**base, "feature": "clip"}, **identification),
    ]


def network_row(
    feature: str,
    recon_feats: np.ndarray | None,
    true_feats: np.ndarray | None,
    base: Mapping[str, Any],
    status: str = "ok",
) -> dict:
    """The row of one network feature (``FEATURE_METRIC``): computed from the features of the
    reconstructions and of the stimuli, or, when the network's weights are missing
    (``recon_feats`` None), unavailable with ``status`` saying why."""
    metric = FEATURE_METRIC[feature]
    two_way = metric == "two_way_identification"
    row = {**base, "target": "image", "metric": metric, "feature": feature}
    if two_way:
        row["chance"] = 0.5
    if recon_feats is None or true_feats is None:
        return {**row, "value": np.nan, "status": status}
    row["n"] = len(recon_feats)
    if two_way:
        return {**row, "value": two_way_identification(recon_feats, true_feats)}
    return {**row, "value": correlation_distance(recon_feats, true_feats)}
