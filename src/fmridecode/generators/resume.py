"""Resumable generation: finished chunks of images are kept, so a killed run picks up there.

Real pipelines take seconds to minutes per image; a job killed after hours (time limit,
pre-emption) should not start again from the first image. ``generate_resumable`` makes the
rows ``chunk`` at a time through ``make(start, stop)`` and saves each finished chunk as
``<cache>/<key>/rows-<start>-<stop>.npy`` (written atomically). A rerun with the same key
loads the chunks that exist and makes only the rest; the key is a hash of everything the
images depend on (``run_key``), so changed inputs or settings never reuse stale images. The
cache folder is removed once the caller has written its outputs (``clear``).

Resuming gives the images an uninterrupted run gives because the generators seed every row
from (seed, row number) and are called with ``first_row`` = the chunk's start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fmridecode.generators.best_of import best_of_n
from fmridecode.io import (  # noqa: F401 - clear, partial_dir, run_key re-exported
    atomic_path,
    clear,
    partial_dir,
    run_key,
)


def generate_resumable(
    make: Callable[[int, int], np.ndarray],
    n: int,
    chunk: int,
    cache: str | Path,
    key: str,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """All ``n`` rows, made by ``make(start, stop)`` in chunks; (rows, number of chunks reused)."""
    if n < 1 or chunk < 1:
        raise ValueError(f"n and chunk must be >= 1, got {n}, {chunk}")
    folder = Path(cache) / key
    folder.mkdir(parents=True, exist_ok=True)
    parts, reused = [], 0
    starts = range(0, n, chunk)
    for a in tqdm(starts, desc="image chunks", disable=not progress):
        b = min(a + chunk, n)
        path = folder / f"rows-{a}-{b}.npy"
        if path.exists():
            parts.append(np.load(path))
            reused += 1
            continue
        rows = np.asarray(make(a, b))
        if len(rows) != b - a:
            raise ValueError(f"make({a}, {b}) returned {len(rows)} rows")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, rows)
        parts.append(rows)
    return np.concatenate(parts), reused


#: step between the seeds of the samples of best-of-N (a prime keeps their streams apart)
SAMPLE_SEED_STEP = 7919


def sample_seed(seed: int, k: int) -> int:
    """Seed of the k-th sample (k = 0: the single-sample run's seed)."""
    return seed + SAMPLE_SEED_STEP * k


def clip_embedder(
    best_of: int, model: str, pretrained: str | None, device: str = "cpu"
) -> Callable[[np.ndarray], np.ndarray]:
    """The image embedder best-of-N scores samples with: the configured CLIP model, loaded
    only when ``best_of`` > 1 (a single sample is never scored)."""
    if best_of <= 1:
        return lambda images: np.empty((len(images), 0))  # never called by best_of_n
    from fmridecode.embeddings.cache import embed_images
    from fmridecode.embeddings.model import load_model

    clip, preprocess, _ = load_model(model, pretrained, device)
    return lambda images: embed_images(clip, preprocess, images)


def best_of_resumable(
    make: Callable[[int, int, int], np.ndarray],
    n: int,
    chunk: int,
    cache: str | Path,
    key_parts: tuple,
    best_of: int,
    embed: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
    log: Any = None,
) -> np.ndarray:
    """MindEye's best-of-N over resumable samples: sample k of all ``n`` rows is made by
    ``make(k, start, stop)`` in chunks kept under ``cache`` (key ``key_parts`` + k); per row the
    sample whose ``embed`` is closest to ``target`` is kept (``best_of`` 1: the single sample)."""

    def sample(k: int) -> np.ndarray:
        key = run_key(*key_parts, k)
        images, reused = generate_resumable(lambda a, b: make(k, a, b), n, chunk, cache, key)
        if reused and log is not None:
            log.info("sample %d: %d finished chunks of a killed run reused", k, reused)
        return images

    images, _, score = best_of_n(sample, best_of, embed, target)
    if best_of > 1 and log is not None:
        log.info("best of %d: mean CLIP cosine %.3f", best_of, float(np.mean(score)))
    return images
