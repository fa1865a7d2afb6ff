"""Caption screening (Mind Reader): keep the captions CLIP finds likely for their image.

For each image, the softmax of CLIP's logits (``logit_scale`` x cosine) over that image's own
captions gives a probability per caption; a caption is kept when its probability is at least
``keep_ratio`` times the image's best one (Mind Reader: half). The best caption is always
kept, so every image keeps at least one. Which kept captions become text targets (their mean,
the best one, a random one per epoch, every one) is the mappers' choice (``fit.training.caption``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmridecode.io import DataError

#: columns of the screening table besides the caption index's own
SCREEN_COLUMNS = ("prob", "rank", "kept")


def screen_captions(
    image_emb: np.ndarray,
    image_index: pd.DataFrame,
    caption_emb: np.ndarray,
    caption_index: pd.DataFrame,
    logit_scale: float,
    keep_ratio: float = 0.5,
) -> pd.DataFrame:
    """The caption index with ``prob`` (over the image's captions), ``rank`` (1 = most likely)
    and ``kept``, in the caption index's row order. Embeddings: unit-norm rows (the caches)."""
    if not 0.0 <= keep_ratio <= 1.0:
        raise DataError(f"caption screening: keep_ratio must be in [0, 1], got {keep_ratio}")
    if not np.isfinite(logit_scale) or logit_scale <= 0:
        raise DataError(f"caption screening: logit_scale must be > 0, got {logit_scale}")
    if len(caption_emb) != len(caption_index) or len(image_emb) != len(image_index):
        raise DataError("caption screening: embeddings and index tables differ in length")
    pos = {s: i for i, s in enumerate(image_index["stim_id"].astype(str))}
    ids = caption_index["stim_id"].astype(str).to_numpy()
    missing = sorted({s for s in ids if s not in pos})
    if missing:
        raise DataError(f"caption screening: captions of images with no embedding: {missing[:5]}")
    rows = np.array([pos[s] for s in ids])
    cos = np.einsum("ij,ij->i", caption_emb.astype(np.float64), image_emb[rows].astype(np.float64))
    logits = logit_scale * cos
    table = caption_index.reset_index(drop=True).copy()
    prob = np.empty(len(table))
    rank = np.empty(len(table), dtype=np.int64)
    for idx in table.groupby(ids, sort=False).indices.values():
        z = logits[idx] - logits[idx].max()
        p = np.exp(z) / np.exp(z).sum()
        prob[idx] = p
        rank[idx[np.argsort(-p, kind="stable")]] = np.arange(1, len(idx) + 1)
    best = pd.Series(prob).groupby(ids).transform("max").to_numpy()
    table["prob"] = prob.astype(np.float32)
    table["rank"] = rank
    table["kept"] = (prob >= keep_ratio * best) | (rank == 1)
    return table


def kept_captions(
    caption_emb: np.ndarray, screening: pd.DataFrame
) -> tuple[np.ndarray, pd.DataFrame]:
    """The kept rows of the caption cache and their index (with ``prob`` and ``rank``)."""
    if len(caption_emb) != len(screening):
        raise DataError(
            f"caption screening table has {len(screening)} rows for {len(caption_emb)} captions"
        )
    keep = screening["kept"].to_numpy(bool)
    cols = [c for c in ("stim_id", "caption_idx", "kind", "prob", "rank") if c in screening]
    return caption_emb[keep], screening.loc[keep, cols].reset_index(drop=True)
