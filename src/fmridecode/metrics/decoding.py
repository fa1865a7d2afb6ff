"""Every decoding metric of one mapper's predicted embeddings, in one place.

Retrieval (Recall@k and mean recall, both directions, whole pool and random pools), R2 and
cosine to the true embeddings, 2-way / random 2-way / n-way identification and zero-shot
classification, for the image and the text target. Used by rule metrics_decoding (every
mapper) and by the supervision ablation (BrainCLIP's V / T / VT), so both score alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmridecode.io import load_indexed, read_parquet
from fmridecode.mappers.targets import align, text_embeddings
from fmridecode.metrics.prediction import prediction_rows
from fmridecode.metrics.recon import identification_rows
from fmridecode.metrics.retrieval import retrieval_rows
from fmridecode.metrics.zero_shot import zero_shot_rows


@dataclass(frozen=True)
class DecodingSettings:
    """The metrics config the decoding rows depend on (``metrics.*``)."""

    ks: Sequence[int]
    pool: int | None
    pool_repeats: int
    n_way: Sequence[int]
    repeats: int
    seed: int
    zero_shot_classes: str


@dataclass(frozen=True)
class Truth:
    """What predictions are scored against: true embeddings per target (rows, stimulus
    ids), the zero-shot class embeddings and categories, and each image's category set."""

    targets: Mapping[str, tuple[np.ndarray, list[str]]]
    class_emb: np.ndarray
    classes: pd.DataFrame  # columns category, zero_shot
    labels: Mapping[str, set[str]]


def load_truth(
    image: str | os.PathLike,
    caption: str | os.PathLike,
    classes: str | os.PathLike,
    labels: str | os.PathLike,
) -> Truth:
    """The scoring truth from the embedding caches (image, caption and class embeddings,
    each an indexed array) and the stimulus label table (``stim_id, category``)."""
    from fmridecode.embeddings.cache import load_pooled

    image_emb, image_index = load_pooled(image)
    caption_emb, caption_index = load_pooled(caption)
    class_emb, class_index = load_indexed(classes)
    return Truth(
        targets={
            "image": (image_emb, list(image_index["stim_id"])),
            "text": text_embeddings(caption_emb, caption_index),
        },
        class_emb=class_emb,
        classes=class_index,
        labels=read_parquet(labels).groupby("stim_id")["category"].agg(set).to_dict(),
    )


def decoding_rows(
    preds: Mapping[str, tuple[np.ndarray, pd.DataFrame]], truth: Truth, s: DecodingSettings
) -> list[dict]:
    """Metric rows of the predictions ``target -> (rows, index with stim_id)``."""
    held_out = set(truth.classes.loc[truth.classes["zero_shot"], "category"])
    draws = {"n_way": s.n_way, "repeats": s.repeats, "seed": s.seed}
    rows: list[dict] = []
    for target, (pred, index) in preds.items():
        emb, ids = truth.targets[target]
        # candidates: the embeddings of the test images, in the predictions' order
        candidates = align(emb, ids, list(index["stim_id"]), f"{target} embeddings")
        rows += retrieval_rows(
            pred, candidates, target=target, ks=s.ks, pool=s.pool,
            pool_repeats=s.pool_repeats, seed=s.seed,
        )  # fmt: skip
        rows += prediction_rows(pred, candidates, target)
        rows += identification_rows(
            pred, candidates, {"target": target, "feature": "embedding"}, **draws
        )
        rows += zero_shot_rows(
            pred, [truth.labels.get(sid, set()) for sid in index["stim_id"]], truth.class_emb,
            list(truth.classes["category"]), held_out, {"target": target},
            candidates=s.zero_shot_classes,
        )  # fmt: skip
    return rows
