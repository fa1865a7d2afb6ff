"""Generators stage: images from (predicted) CLIP embeddings.

``tiny``: a small diffusers UNet conditioned on CLIP image embeddings, trained by the workflow
on the stimulus images (``train_generator``), saved with ``save_pretrained`` and loaded with
``load_generator``; ``reconstruct`` samples with DDIM + classifier-free guidance.
"""

from fmridecode.generators.pipeline import EmbeddingDiffusionPipeline, EmbeddingProjection
from fmridecode.generators.tiny_diffusion import (
    grid_size,
    load_generator,
    reconstruct,
    save_grid,
    save_pngs,
    save_reconstructions,
)
from fmridecode.generators.train import train_generator

__all__ = [
    "EmbeddingDiffusionPipeline",
    "EmbeddingProjection",
    "grid_size",
    "load_generator",
    "reconstruct",
    "save_grid",
    "save_pngs",
    "save_reconstructions",
    "train_generator",
]
