"""Class embeddings for zero-shot classification: prompt ensembles (CLIP, BrainCLIP).

Each class name is put into every template, the texts are encoded, and the unit-norm
embeddings are averaged and renormalised (the recipe of CLIP's zero-shot classifiers). The
default templates are the 18 that BrainCLIP uses for zero-shot classification (CLIP's CIFAR
prompt set: "a photo of a {}.", "a blurry photo of a {}.", ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmridecode.embeddings.cache import embed_texts
from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)


def class_embeddings(
    model: Any,
    tokenizer: Any,
    classes: Sequence[str],
    templates: Sequence[str] = TEMPLATES,
) -> np.ndarray:
    """(C, D) float32 unit-norm prompt-ensemble embedding of each class name."""
    classes = [str(c) for c in classes]
    if not classes or not templates:
        raise DataError("class_embeddings: need at least one class and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise DataError(f"class_embeddings: templates need exactly one '{{}}', e.g. {bad[0]!r}")
    texts = [t.format(c) for c in classes for t in templates]
    emb = embed_texts(model, tokenizer, texts).reshape(len(classes), len(templates), -1)
    return l2_normalize(emb.mean(axis=1)).astype(np.float32)
