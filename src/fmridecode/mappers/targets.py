"""Decoding targets: embeddings aligned to voxel-matrix rows by stimulus id (never by position)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmridecode.io import DataError


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero rather than becoming NaN)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def text_embeddings(
    caption_emb: np.ndarray, caption_index: pd.DataFrame
) -> tuple[np.ndarray, list[str]]:
    """One text target per image: the L2-normalised mean of its caption embeddings.

    Returns (targets (n_images, d), stimulus ids in sorted order).
    """
    groups = caption_index.reset_index(drop=True).groupby("stim_id", sort=True).indices
    ids = list(groups)
    out = np.stack([caption_emb[groups[s]].mean(axis=0) for s in ids])
    return l2_normalize(out).astype(np.float32), ids


def align(
    emb: np.ndarray, emb_ids: list[str] | pd.Series, wanted: list[str] | pd.Series, what: str
) -> np.ndarray:
    """Rows of ``emb`` for the stimulus ids ``wanted`` (error naming the missing ids)."""
    pos = {s: i for i, s in enumerate(emb_ids)}
    missing = [s for s in wanted if s not in pos]
    if missing:
        raise DataError(f"{what}: no embedding for {len(missing)} stimuli, e.g. {missing[:5]}")
    return emb[[pos[s] for s in wanted]]
