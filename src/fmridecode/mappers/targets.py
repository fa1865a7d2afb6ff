"""Decoding targets: embeddings aligned to voxel-matrix rows by stimulus id (never by position)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmridecode.io import DataError


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero rather than becoming NaN)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def mean_per_stimulus(
    rows: np.ndarray, index: pd.DataFrame, ids: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Mean of the rows of each stimulus (``index["stim_id"]``, one per row), e.g. over its
    captions; for ``ids`` in that order (error naming missing ones), else in sorted id order."""
    groups = index.reset_index(drop=True).groupby("stim_id", sort=True).indices
    ids = list(groups) if ids is None else list(ids)
    missing = [s for s in ids if s not in groups]
    if missing:
        raise DataError(f"no rows for {len(missing)} stimuli, e.g. {missing[:5]}")
    return np.stack([rows[groups[s]].mean(axis=0) for s in ids]), ids


def text_embeddings(
    caption_emb: np.ndarray, caption_index: pd.DataFrame, choice: str = "mean"
) -> tuple[np.ndarray, list[str]]:
    """One text target per image: the L2-normalised mean of its caption embeddings, or with
    ``choice="best"`` its most likely caption (the screening's ``rank`` 1; without a ``rank``
    column, its first row). Closed-form mappers use this for ``fit.training.caption``: a
    least-squares fit to every caption (``all``) or to a random one per epoch (``random``)
    has the mean's solution when images have equally many captions, so those give the mean.

    Returns (targets (n_images, d), stimulus ids in sorted order).
    """
    if choice == "best":
        index = caption_index.reset_index(drop=True)
        rank = index["rank"] if "rank" in index else index.groupby("stim_id").cumcount() + 1
        best = index[rank.to_numpy() == 1]
        out, ids = mean_per_stimulus(caption_emb[best.index.to_numpy()], best)
    elif choice in ("mean", "random", "all"):
        out, ids = mean_per_stimulus(caption_emb, caption_index)
    else:
        raise ValueError(f"unknown caption choice {choice!r}: mean, random, best or all")
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


def lowres_targets(images: np.ndarray, size: int) -> np.ndarray:
    """Low-level decoding target: each image box-downsampled to ``size`` px, flattened, in [0, 1].

    The first stage of two-stage reconstruction predicts this from voxels (the role of
    Brain-Diffuser's VDVAE latents for our small generator); ``lowres_images`` inverts it.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"lowres targets need uint8 (N, H, W, 3) images, got {images.shape}")
    h, w = images.shape[1:3]
    if h % size or w % size:
        raise DataError(f"lowres size {size} does not divide the image size {h}x{w}")
    blocks = images.reshape(len(images), size, h // size, size, w // size, 3).astype(np.float32)
    return (blocks.mean(axis=(2, 4)) / 255.0).reshape(len(images), -1)


def lowres_images(pred: np.ndarray, size: int) -> np.ndarray:
    """Predicted low-res targets (N, size*size*3) -> uint8 images (N, size, size, 3), clipped."""
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 2 or pred.shape[1] != size * size * 3:
        raise DataError(f"lowres predictions must be (N, {size * size * 3}), got {pred.shape}")
    if not np.isfinite(pred).all():
        raise DataError("lowres predictions contain non-finite values")
    img = np.clip(np.rint(pred * 255.0), 0, 255).astype(np.uint8)
    return img.reshape(len(pred), size, size, 3)


def decoding_targets(
    image_emb: np.ndarray,
    image_index: pd.DataFrame,
    caption_emb: np.ndarray,
    caption_index: pd.DataFrame,
    images: np.ndarray,
    images_index: pd.DataFrame,
    lowres_size: int,
    caption: str = "mean",
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Every target a mapper predicts, as ``name -> (rows, stimulus ids)``.

    ``image``: CLIP image embeddings; ``text``: the captions' target per image
    (``text_embeddings`` with ``caption``); ``lowres``:
    the downsampled image of the two-stage first guess. Mappers align rows to their voxel
    matrix by id with ``align``; the ``truth`` mapper writes these rows themselves.
    """
    return {
        "image": (image_emb, list(image_index["stim_id"])),
        "text": text_embeddings(caption_emb, caption_index, caption),
        "lowres": (lowres_targets(images, lowres_size), list(images_index["stim_id"])),
    }


def match_target_stats(pred: np.ndarray, train_targets: np.ndarray) -> np.ndarray:
    """Predictions rescaled per feature to the training targets' mean and standard deviation.

    Ridge shrinks predictions towards the mean; generators conditioned on token embeddings
    expect them at the scale they were trained on. Brain-Diffuser standardises each predicted
    feature over the test set and gives it the training targets' mean and SD. Features that are
    constant in the predictions keep the training mean.
    """
    pred = np.asarray(pred, dtype=np.float64)
    train_targets = np.asarray(train_targets, dtype=np.float64)
    if pred.ndim != 2 or train_targets.ndim != 2 or pred.shape[1] != train_targets.shape[1]:
        raise DataError(
            f"match_target_stats: predictions {pred.shape} and targets {train_targets.shape} "
            "must be 2D with the same number of features"
        )
    mean, sd = pred.mean(axis=0), pred.std(axis=0)
    varies = sd > 1e-9 * np.maximum(np.abs(mean), 1.0)  # float noise of a constant is not spread
    z = np.where(varies, (pred - mean) / np.where(varies, sd, 1.0), 0.0)
    return (z * train_targets.std(axis=0) + train_targets.mean(axis=0)).astype(np.float32)
