"""Image outputs of the reconstruction stage: resizing, one PNG per image, the grid figure.

Kept free of torch and diffusers so light rules (the two-stage first guess) can write
reconstructions without importing a deep-learning stack.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from fmridecode.io import DataError, atomic_dir, atomic_path, save_indexed
from fmridecode.mappers.targets import align

# save_grid layout (pixels): tiles of TILE x TILE, a LABEL strip above each row of tiles,
# PAD between pairs and around the edge, PAIRS_PER_ROW (stimulus, reconstruction) pairs per row.
TILE = 96
LABEL = 16
PAD = 6
PAIRS_PER_ROW = 4


def resize_images(images: np.ndarray, size: int, resample: int = Image.BICUBIC) -> np.ndarray:
    """Resize uint8 (N, H, W, 3) to (N, size, size, 3) with PIL (bicubic by default)."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), resample))
    return out


def grid_size(n: int, n_max: int = 24) -> tuple[int, int]:
    """(width, height) in pixels of the PNG ``save_grid`` draws for ``n`` pairs."""
    n = min(n, n_max)
    cols = min(PAIRS_PER_ROW, n)
    rows = math.ceil(n / PAIRS_PER_ROW)
    return cols * (2 * TILE + PAD) + PAD, rows * (LABEL + TILE + PAD) + PAD


def save_grid(
    stimuli: np.ndarray,
    recons: np.ndarray,
    path: str | os.PathLike,
    ids: Sequence[str] | None = None,
    n_max: int = 24,
) -> None:
    """Write a PNG of (stimulus, reconstruction) pairs, each pair labelled with its id.

    Pairs are laid out ``PAIRS_PER_ROW`` to a row; within a pair the stimulus is on the left.
    Images of any size are scaled to ``TILE`` pixels (nearest neighbour: pixels stay visible).
    """
    stimuli, recons = np.asarray(stimuli), np.asarray(recons)
    if stimuli.ndim != 4 or recons.ndim != 4 or stimuli.shape[-1] != 3 or recons.shape[-1] != 3:
        raise DataError(
            f"{path}: grid needs (N, H, W, 3) arrays, got {stimuli.shape} and {recons.shape}"
        )
    if len(stimuli) != len(recons) or len(stimuli) == 0:
        raise DataError(f"{path}: {len(stimuli)} stimuli vs {len(recons)} reconstructions")
    if ids is not None and len(ids) != len(stimuli):
        raise DataError(f"{path}: {len(ids)} ids for {len(stimuli)} images")
    n = min(len(stimuli), n_max)
    labels = [str(i) for i in ids[:n]] if ids is not None else [str(i) for i in range(n)]
    stim = resize_images(stimuli[:n].astype(np.uint8), TILE, Image.NEAREST)
    rec = resize_images(recons[:n].astype(np.uint8), TILE, Image.NEAREST)
    canvas = Image.new("RGB", grid_size(n, n_max), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k in range(n):
        r, c = divmod(k, PAIRS_PER_ROW)
        x = PAD + c * (2 * TILE + PAD)
        y = PAD + r * (LABEL + TILE + PAD)
        draw.text((x + 2, y + 1), f"{labels[k]}  | recon", fill="black", font=font)
        canvas.paste(Image.fromarray(stim[k]), (x, y + LABEL))
        canvas.paste(Image.fromarray(rec[k]), (x + TILE, y + LABEL))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def save_pngs(images: np.ndarray, ids: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """Write each (H, W, 3) uint8 image as ``<out_dir>/<id>.png``; the folder appears whole."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{out_dir}: need (N, H, W, 3) uint8 images, got {images.shape} {images.dtype}"
        )
    ids = [str(i) for i in ids]
    if len(ids) != len(images) or len(set(ids)) != len(ids):
        raise DataError(
            f"{out_dir}: need one unique id per image ({len(ids)} ids, {len(images)} images)"
        )
    bad = [i for i in ids if not i or "/" in i or i.startswith(".")]
    if bad:
        raise DataError(f"{out_dir}: ids unusable as file names: {bad[:3]}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for sid, img in zip(ids, images, strict=True):
            Image.fromarray(img).save(tmp / f"{sid}.png", format="PNG")
    return [out_dir / f"{sid}.png" for sid in ids]


def save_reconstructions(
    recons: np.ndarray,
    recon_index: pd.DataFrame,
    stimuli: np.ndarray,
    stimuli_index: pd.DataFrame,
    out_array: str | os.PathLike,
    out_pngs: str | os.PathLike,
    out_grid: str | os.PathLike,
) -> None:
    """Write one generator's outputs: the indexed array, one PNG per image and the grid figure.

    ``recon_index`` and ``stimuli_index`` are the index tables (``stim_id`` column) of the
    reconstructions and of the stimulus array; the grid pairs each reconstruction with its stimulus.
    """
    ids = list(recon_index["stim_id"])
    save_indexed(out_array, recons, recon_index[["stim_id"]])
    save_pngs(recons, ids, out_pngs)
    truth = align(stimuli, list(stimuli_index["stim_id"]), ids, "stimuli")
    save_grid(truth, recons, out_grid, ids=ids)


def add_noise(images: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    """uint8 images plus Gaussian noise of SD ``amplitude`` (0-255 scale), rounded and clipped.

    The noise depends on ``(seed, amplitude)`` only, so a table over amplitudes does not change
    when amplitudes are added or reordered; amplitude 0 returns an unchanged copy.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"noise needs uint8 images, got {images.dtype}")
    if amplitude < 0 or not np.isfinite(amplitude):
        raise DataError(f"noise amplitude must be finite and >= 0, got {amplitude}")
    if amplitude == 0:
        return images.copy()
    rng = np.random.default_rng([seed, int(round(amplitude * 1000))])
    noisy = images.astype(np.float64) + rng.normal(0.0, amplitude, size=images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
