"""Augmented views of the stimuli (Mind Reader): more image targets for the mappers.

Mind Reader found that training the mapper against the CLIP embeddings of several augmented
views of each image helps. A view here is a random crop (area ``crop``..1 of the image, aspect
3/4..4/3) resized back to the image size, with brightness and contrast jittered by up to
``jitter``; no flips (the simulator's captions, like COCO's, name left and right). Each view
is drawn from its own generator seeded by (seed, image row, view), so the views do not depend
on batching or on which images are embedded together.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fmridecode.io import DataError


def augmented_view(image: np.ndarray, rng: np.random.Generator, crop: float, jitter: float):
    """One augmented view of a uint8 (H, W, 3) image (same size and dtype)."""
    h, w = image.shape[:2]
    area = rng.uniform(crop, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(h, max(1.0, np.sqrt(area / aspect)))))
    cw = int(round(min(w, max(1.0, np.sqrt(area * aspect)))))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    patch = Image.fromarray(image[top : top + ch, left : left + cw])
    out = np.asarray(patch.resize((w, h), Image.BILINEAR), dtype=np.float32)
    brightness, contrast = 1.0 + rng.uniform(-jitter, jitter, 2)
    mean = out.mean()
    out = (out - mean) * contrast + mean * brightness
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment_images(
    images: np.ndarray, views: int, seed: int, crop: float = 0.7, jitter: float = 0.1
) -> np.ndarray:
    """(N, views, H, W, 3) uint8: ``views`` augmented views of each of (N, H, W, 3) images."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"augmentation needs uint8 (N, H, W, 3) images, got {images.shape}")
    if views < 1 or not 0.0 < crop <= 1.0 or not 0.0 <= jitter < 1.0:
        raise DataError(
            f"augmentation: views >= 1, crop in (0, 1], jitter in [0, 1) (got {views}, "
            f"{crop}, {jitter})"
        )
    out = np.empty((len(images), views, *images.shape[1:]), dtype=np.uint8)
    for i, image in enumerate(images):
        for v in range(views):
            rng = np.random.default_rng([seed, i, v])
            out[i, v] = augmented_view(image, rng, crop, jitter)
    return out
