"""Best-of-N sampling (MindEye): several samples per stimulus, keep the one closest in CLIP space.

Generator-agnostic: it takes a function that draws one sample per stimulus for a given sample
number, and a function that embeds images with the CLIP model of the predicted embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize


def best_of_n(
    sample: Callable[[int], np.ndarray],
    n: int,
    embed: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` samples per stimulus and keep, per stimulus, the most similar to ``target``.

    ``sample(k)`` returns uint8 (N, H, W, 3), the k-th sample of every stimulus (k = 0 must be
    what a single-sample run produces, so ``n = 1`` is exactly the plain generator);
    ``embed(images)`` returns (N, D) image embeddings in the space of ``target`` (N, D), the
    predicted embeddings. Returns ``(images, chosen k (N,), cosine of the chosen (N,))``.
    """
    if n < 1:
        raise ValueError(f"best-of-N needs n >= 1, got {n}")
    target = np.asarray(target, dtype=np.float64)
    if not np.isfinite(target).all():
        raise DataError("best-of-N: predicted embeddings contain non-finite values")
    target = l2_normalize(target)
    best = best_score = chosen = None
    for k in range(n):
        images = np.asarray(sample(k))
        if images.shape[0] != len(target):
            raise DataError(f"best-of-N: sample {k} has {len(images)} images for {len(target)}")
        if n == 1:
            return images, np.zeros(len(images), dtype=int), np.full(len(images), np.nan)
        emb = l2_normalize(np.asarray(embed(images), dtype=np.float64))
        score = (emb * target).sum(axis=1)
        if best is None:
            best, best_score, chosen = images.copy(), score, np.zeros(len(images), dtype=int)
        else:
            better = score > best_score
            best[better] = images[better]
            best_score = np.where(better, score, best_score)
            chosen[better] = k
    return best, chosen, best_score
