"""Image and caption embedding caches (``<embed>/image.npy``, ``<embed>/caption.npy``).

Every later stage (mappers, generators, metrics) works in the embedding space computed here
once. Images go through the model's own preprocess (so a real 224 px model resizes our
64 px stimuli the way it expects); all embeddings are float32 and L2-normalised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fmridecode.embeddings.model import load_model
from fmridecode.io import DataError, load_indexed, read_parquet, save_indexed

CAPTION_COLUMNS = ("stim_id", "caption_idx", "caption", "kind")


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _normalise(x: torch.Tensor) -> np.ndarray:
    """Rows to unit length in float32; refuses non-finite or zero rows."""
    x = x.detach().float().cpu()
    norms = x.norm(dim=1, keepdim=True)
    if not torch.isfinite(x).all() or (norms == 0).any():
        raise FloatingPointError("model produced non-finite or all-zero embeddings")
    return (x / norms).numpy().astype(np.float32)


def check_images(images: np.ndarray, source: str | os.PathLike = "images") -> np.ndarray:
    """Validate an (N, H, W, 3) uint8 image stack; ``source`` names it in the error."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{source}: expected images of shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{source}: expected uint8 images, got {images.dtype}")
    return images


def preprocess_images(preprocess: Any, images: np.ndarray) -> torch.Tensor:
    """Apply the model's PIL preprocess to each (H, W, 3) uint8 image; returns (N, 3, S, S)."""
    images = check_images(images)
    return torch.stack([preprocess(Image.fromarray(img)) for img in images])


def _encode_batches(
    model: torch.nn.Module, encode: Any, items: Sequence[Any], batch_size: int
) -> np.ndarray:
    """Run ``encode(batch) -> features`` over ``items`` in eval/inference mode, unit-normed."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                out.append(_normalise(encode(items[start : start + batch_size])))
    finally:
        model.train(was_training)
    dim = out[0].shape[1] if out else int(getattr(model, "embed_dim", 0) or 0)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def embed_images(
    model: torch.nn.Module, preprocess: Any, images: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """(N, D) float32 unit-norm image embeddings of (N, H, W, 3) uint8 images."""
    images = check_images(images)
    device = _device_of(model)

    def encode(batch: np.ndarray) -> torch.Tensor:
        return model.encode_image(preprocess_images(preprocess, batch).to(device))

    return _encode_batches(model, encode, images, batch_size)


def embed_texts(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """(M, D) float32 unit-norm text embeddings (open_clip tokenizer; long texts are truncated)."""
    texts = [str(t) for t in texts]
    device = _device_of(model)

    def encode(batch: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(batch).to(device))

    return _encode_batches(model, encode, texts, batch_size)


def read_stimuli(stim_dir: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Read ``<stim>/images.npy`` (+index) and ``<stim>/captions.parquet``, cross-checked."""
    stim_dir = Path(stim_dir)
    images_path = stim_dir / "images.npy"
    images, index = load_indexed(images_path)
    check_images(images, images_path)
    for col in ("stim_id", "split"):
        if col not in index.columns:
            raise DataError(f"{images_path}: index lacks column {col!r}")
    if index["stim_id"].duplicated().any():
        dup = index.loc[index["stim_id"].duplicated(), "stim_id"].iloc[0]
        raise DataError(f"{images_path}: duplicate stim_id {dup!r} in index")
    captions_path = stim_dir / "captions.parquet"
    captions = read_parquet(captions_path)
    missing = [c for c in CAPTION_COLUMNS if c not in captions.columns]
    if missing:
        raise DataError(f"{captions_path}: missing columns {missing}")
    unknown = ~captions["stim_id"].isin(index["stim_id"])
    if unknown.any():
        raise DataError(
            f"{captions_path}: {int(unknown.sum())} captions name images not in {images_path.name} "
            f"(e.g. {captions.loc[unknown, 'stim_id'].iloc[0]!r})"
        )
    return images, index, captions


def write_caches(
    model_name: str,
    pretrained: str | os.PathLike | None,
    stim_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str = "cpu",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Embed all stimuli and captions and write ``<out>/image.npy`` and ``<out>/caption.npy``.

    Index of image.npy: ``stim_id, split`` (rows in the order of images.npy); index of
    caption.npy: ``stim_id, caption_idx, kind`` (rows in the order of captions.parquet).
    Returns a small summary (counts, embedding dim).
    """
    images, index, captions = read_stimuli(stim_dir)
    model, preprocess, tokenizer = load_model(model_name, pretrained, device=device)
    image_emb = embed_images(model, preprocess, images, batch_size=batch_size)
    caption_emb = embed_texts(model, tokenizer, captions["caption"].tolist(), batch_size=batch_size)
    out_dir = Path(out_dir)
    save_indexed(
        out_dir / "image.npy",
        image_emb,
        index[["stim_id", "split"]].astype({"stim_id": str, "split": str}).reset_index(drop=True),
    )
    cap_index = captions[["stim_id", "caption_idx", "kind"]].reset_index(drop=True)
    save_indexed(
        out_dir / "caption.npy",
        caption_emb,
        cap_index.astype({"stim_id": str, "caption_idx": "int64", "kind": str}),
    )
    return {
        "model_name": model_name,
        "pretrained": None if pretrained is None else str(pretrained),
        "n_images": int(len(image_emb)),
        "n_captions": int(len(caption_emb)),
        "dim": int(image_emb.shape[1]),
    }
