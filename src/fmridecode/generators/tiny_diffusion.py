"""The ``tiny`` generator's entry points for the workflow: load, reconstruct, draw a grid.

Training lives in ``generators.train``; the model and pipeline in ``generators.pipeline``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fmridecode.devices import resolve_device
from fmridecode.generators.pipeline import EmbeddingDiffusionPipeline
from fmridecode.generators.seeding import row_generator
from fmridecode.images import (  # noqa: F401 - re-exported: the generator's image outputs
    LABEL,
    PAD,
    PAIRS_PER_ROW,
    TILE,
    grid_size,
    resize_images,
    save_grid,
    save_pngs,
    save_reconstructions,
)
from fmridecode.io import DataError


def load_generator(
    path: str | os.PathLike, device: str | None = "cpu"
) -> EmbeddingDiffusionPipeline:
    """Load a pipeline saved by ``train_generator`` from a local folder (never the network),
    on ``device`` ('auto' or None: CUDA when present, else CPU); float32 (the model is small)."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise DataError(f"{path}: not a saved generator (no model_index.json)")
    try:
        pipe = EmbeddingDiffusionPipeline.from_pretrained(
            path, local_files_only=True, low_cpu_mem_usage=False
        )
    except Exception as e:  # diffusers raises several types for broken folders
        raise DataError(f"{path}: cannot load generator ({e})") from e
    pipe = pipe.to(resolve_device(device))
    pipe.unet.eval()
    pipe.projection.eval()
    return pipe


def reconstruct(
    pipe: EmbeddingDiffusionPipeline,
    embeds: np.ndarray,
    *,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
    out_size: int | None = None,
    batch_size: int = 64,
    init_images: np.ndarray | None = None,
    strength: float = 1.0,
    guide: Callable[[torch.Tensor, slice], torch.Tensor] | None = None,
    guide_scale: float = 0.0,
    first_row: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 from embeddings (N, D); same seed -> identical output.

    The noise of row i comes from a CPU generator seeded by (``seed``, ``first_row`` + i), so
    rows ``a:b`` of a call equal a call on those rows with ``first_row=a`` (how a killed run
    resumes) and ``batch_size`` does not change what is sampled. ``device``: where to run
    (None: where the pipeline is).

    ``out_size`` upsamples (bicubic) to the stimulus size so metrics compare like with like.
    ``init_images`` (uint8, any size; resized to the model's) with ``strength`` < 1 make it
    img2img: the second stage of two-stage reconstruction, starting from a first guess.
    ``guide``/``guide_scale``: loss-gradient guidance at each step (see the pipeline;
    ``guidance.clip_guide`` builds the CLIP one).
    """
    embeds = np.asarray(embeds, dtype=np.float32)
    if init_images is not None:
        size = pipe.unet.config.sample_size
        init_images = np.asarray(init_images)
        if init_images.ndim == 4 and init_images.shape[1] != size:
            init_images = resize_images(init_images, size, Image.BOX)
    if device is not None:
        pipe = pipe.to(device)
    gens = [row_generator(seed, first_row + i) for i in range(len(embeds))]
    imgs = pipe(
        torch.from_numpy(embeds),
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=gens,
        batch_size=batch_size,
        init_images=init_images,
        strength=strength,
        guide=guide,
        guide_scale=guide_scale,
    )
    if out_size is not None and out_size != imgs.shape[1]:
        imgs = resize_images(imgs, out_size)
    return imgs
