"""Low-level image metrics between reconstructions and stimuli (Brain-Diffuser settings).

Images are (n, H, W, 3) RGB, uint8 (read as value / 255) or float in [0, 1]; reconstructions
and stimuli must share a resolution: bring them together with ``resize`` first (the workflow
compares at the stimulus resolution).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmridecode.io import DataError


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W, 3) -> uint8 (n, size, size, 3), PIL bicubic (antialiased when shrinking)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"resize: expected uint8 (n, H, W, 3), got {images.dtype} {images.shape}")
    if int(size) < 1:
        raise ValueError(f"resize: size must be >= 1, got {size}")
    size = int(size)
    if images.shape[1:3] == (size, size):
        return images.copy()
    out = np.empty((images.shape[0], size, size, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC))
    return out


def _as_float(images: np.ndarray, name: str) -> np.ndarray:
    """(n, H, W, 3) in [0, 1] as float64; uint8 is divided by 255."""
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise DataError(f"{name}: expected (n, H, W, 3) RGB images, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{name}: expected uint8 or float images, got {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise DataError(f"{name}: float images must be finite and within [0, 1]")
    return a


def _pair(recons: np.ndarray, stimuli: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, s = _as_float(recons, "recons"), _as_float(stimuli, "stimuli")
    if r.shape != s.shape:
        raise DataError(f"recons {r.shape} and stimuli {s.shape} differ: resize them first")
    if r.shape[0] == 0:
        raise DataError("no images to compare")
    return r, s


def pixcorr_each(recons: np.ndarray, stimuli: np.ndarray) -> np.ndarray:
    """Per image, the Pearson r between the flattened RGB pixels of recon and stimulus."""
    r, s = _pair(recons, stimuli)
    r = r.reshape(len(r), -1)
    s = s.reshape(len(s), -1)
    for name, a in (("recons", r), ("stimuli", s)):
        const = np.flatnonzero(~(a.max(axis=1) > a.min(axis=1)))
        if const.size:
            raise DataError(
                f"pixcorr: {name} {const[:5].tolist()} are constant images (r undefined)"
            )
    r = r - r.mean(axis=1, keepdims=True)
    s = s - s.mean(axis=1, keepdims=True)
    return (r * s).sum(axis=1) / np.sqrt((r**2).sum(axis=1) * (s**2).sum(axis=1))


def pixcorr(recons: np.ndarray, stimuli: np.ndarray) -> float:
    """Mean over images of the Pearson r between flattened RGB pixels (see ``pixcorr_each``)."""
    return float(np.mean(pixcorr_each(recons, stimuli)))


def ssim_each(recons: np.ndarray, stimuli: np.ndarray) -> np.ndarray:
    """Per image, SSIM of the grayscale images (skimage ``rgb2gray``: 0.2125 R + 0.7154 G +
    0.0721 B), Gaussian window sigma 1.5, population covariances, data_range 1, no
    downsampling. Images need H, W >= 11 (the Gaussian window)."""
    r, s = _pair(recons, stimuli)
    if min(r.shape[1:3]) < 11:
        raise DataError(f"ssim: images of {r.shape[1:3]} are smaller than the 11-pixel window")
    return np.array(
        [
            structural_similarity(
                rgb2gray(a),
                rgb2gray(b),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for a, b in zip(r, s, strict=True)
        ]
    )


def ssim(recons: np.ndarray, stimuli: np.ndarray) -> float:
    """Mean over images of grayscale SSIM with the Brain-Diffuser settings (see ``ssim_each``)."""
    return float(np.mean(ssim_each(recons, stimuli)))
