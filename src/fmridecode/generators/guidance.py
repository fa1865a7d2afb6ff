"""CLIP guidance (BrainCLIP-style): steer sampling towards a predicted CLIP image embedding.

``clip_guide`` turns an open_clip model and the predicted embeddings into the loss the pipeline
differentiates at each step: one minus the cosine similarity between the CLIP embedding of the
current clean-image estimate and the prediction. ``nearest_in_bank`` retrieves the prior image
of the guided sampler: the bank image whose embedding is closest to the prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize


def clip_guide(
    model: torch.nn.Module, targets: np.ndarray
) -> Callable[[torch.Tensor, slice], torch.Tensor]:
    """Loss ``1 - cos(CLIP(x0), target)`` per image, differentiable in ``x0``.

    ``x0`` is (B, 3, H, W) in [-1, 1]; it is resized (bilinear, antialiased) to the model's
    input size and normalised with the model's mean and std, as its preprocess does to PIL
    images. ``rows`` picks the batch's targets out of ``targets`` (N, D). The model must be on
    the device of ``x0`` (the generator's).
    """
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)
    target = torch.from_numpy(l2_normalize(np.asarray(targets, dtype=np.float32)))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def loss(x0: torch.Tensor, rows: slice) -> torch.Tensor:
        img = F.interpolate((x0 + 1) / 2, size=size, mode="bilinear", antialias=True)
        img = (img - mean.to(img)) / std.to(img)
        emb = F.normalize(model.encode_image(img).float(), dim=-1)
        return 1 - (emb * target[rows].to(emb)).sum(dim=-1)

    return loss


def nearest_in_bank(
    pred: np.ndarray, bank_emb: np.ndarray, bank_images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each predicted embedding, the bank image with the highest cosine similarity.

    Returns (images (N, H, W, 3), bank row of each). The bank must not hold the test images
    (the workflow passes the non-test stimuli), or retrieval would copy the answer.
    """
    pred, bank_emb = np.asarray(pred, np.float64), np.asarray(bank_emb, np.float64)
    if pred.ndim != 2 or bank_emb.ndim != 2 or pred.shape[1] != bank_emb.shape[1]:
        raise DataError(f"bank retrieval: embeddings {pred.shape} vs bank {bank_emb.shape}")
    if len(bank_emb) != len(bank_images) or len(bank_emb) == 0:
        raise DataError(f"bank retrieval: {len(bank_emb)} embeddings, {len(bank_images)} images")
    rows = np.argmax(l2_normalize(pred) @ l2_normalize(bank_emb).T, axis=1)
    return np.asarray(bank_images)[rows], rows
