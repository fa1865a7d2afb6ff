"""Embedding stage: CLIP models (pretrained or our small one), its training, and the caches.

- ``model``: register the small model with open_clip; one loader for every CLIP model.
- ``train``: contrastive training of the small model on stimulus images and captions.
- ``cache``: image/caption embeddings (float32, L2-normalised) written as indexed arrays.
"""

from fmridecode.embeddings.cache import (
    embed_images,
    embed_texts,
    read_stimuli,
    write_caches,
)
from fmridecode.embeddings.model import (
    SMALL_MODEL_NAME,
    load_model,
    register_config,
    register_small_model,
    small_model_config,
)
from fmridecode.embeddings.train import retrieval_top1, train_clip

__all__ = [
    "SMALL_MODEL_NAME",
    "embed_images",
    "embed_texts",
    "load_model",
    "read_stimuli",
    "register_config",
    "register_small_model",
    "retrieval_top1",
    "small_model_config",
    "train_clip",
    "write_caches",
]
