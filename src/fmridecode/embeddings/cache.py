"""Image and caption embedding caches (``<embed>/image.npy``, ``<embed>/caption.npy``).

Every later stage (mappers, generators, metrics) works in the embedding space computed here
once. Images go through the model's own preprocess (so a real 224 px model resizes our
64 px stimuli the way it expects) in batches (``embeddings.tokens``, the one encoder); the
pooled caches have outlier dimensions clamped and are L2-normalised, stored in float32 or
float16 (``save_pooled``; every consumer reads them back through ``load_pooled`` as float32
unit rows); token-level caches are written in chunks, float16 or float32.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fmridecode.devices import torch_dtype
from fmridecode.embeddings.model import load_model
from fmridecode.io import (
    DataError,
    load_indexed,
    read_parquet,
    save_indexed,
    save_indexed_chunks,
    write_json,
    write_parquet,
)

CAPTION_COLUMNS = ("stim_id", "caption_idx", "caption", "kind")
DTYPES = ("float16", "float32")  # storage types of the caches (config embed.dtype)


def _check_dtype(dtype: str, what: str) -> str:
    if dtype not in DTYPES:
        raise DataError(f"{what}: dtype must be float16 or float32, got {dtype!r}")
    return dtype


def save_pooled(
    path: str | os.PathLike, rows: np.ndarray, index: pd.DataFrame, dtype: str = "float32"
) -> None:
    """Write a pooled embedding cache (unit rows along the last axis) in ``dtype``: float16
    halves the file (NSD's 73,000 ViT-L/14 image embeddings: 112 MB instead of 224 MB)."""
    _check_dtype(dtype, str(path))
    save_indexed(path, np.asarray(rows).astype(dtype, copy=False), index)


def load_pooled(path: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    """A pooled embedding cache (image, caption, kept captions, views) as float32 unit rows
    along the last axis, and its index, whatever its storage type. float16 storage rounds
    each value (relative error <= 2**-11), so such rows are renormalised in float32;
    float32 rows are returned as written."""
    rows, index = load_indexed(path)
    if rows.dtype == np.float32:
        return rows, index
    if rows.dtype != np.float16:
        raise DataError(f"{path}: an embedding cache must be float16 or float32, got {rows.dtype}")
    rows = rows.astype(np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    if not np.isfinite(rows).all() or (norms == 0).any():
        raise DataError(f"{path}: non-finite or all-zero embeddings")
    return rows / norms, index


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
    from PIL import Image

    images = check_images(images)
    return torch.stack([preprocess(Image.fromarray(img)) for img in images])


def embed_images(
    model: torch.nn.Module, preprocess: Any, images: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """(N, D) float32 unit-norm image embeddings of (N, H, W, 3) uint8 images (unclamped:
    for comparing images with each other, e.g. reconstructions with their stimuli)."""
    from fmridecode.embeddings.tokens import encode_images

    images = check_images(images)
    if len(images) == 0:
        return np.zeros((0, int(getattr(model, "embed_dim", 0) or 0)), np.float32)
    return unit_rows(encode_images(model, preprocess, images, batch_size=batch_size)[0])


def embed_texts(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """(M, D) float32 unit-norm text embeddings (open_clip tokenizer; long texts are truncated)."""
    from fmridecode.embeddings.tokens import encode_texts

    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, int(getattr(model, "embed_dim", 0) or 0)), np.float32)
    return unit_rows(encode_texts(model, tokenizer, texts, batch_size=batch_size)[0])


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


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows to unit length in float32; refuses non-finite or all-zero rows."""
    return _normalise(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))


def write_caches(
    model_name: str,
    pretrained: str | os.PathLike | None,
    stim_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    batch_size: int = 256,
    workers: int = 0,
    clamp: float | None = None,
    dtype: str = "float32",
    compute: str = "float32",
    progress: bool = False,
) -> dict[str, Any]:
    """Embed every stimulus image and caption once; write the caches into ``out_dir``.

    ``image.npy`` (index ``stim_id, split``, rows in the order of images.npy) and
    ``caption.npy`` (index ``stim_id, caption_idx, kind``, rows in the order of
    captions.parquet): the pooled embeddings, outlier dimensions clamped to ``clamp`` x RMS
    (``clamp_outliers``; None: not clamped), then L2-normalised, stored in ``dtype``
    (``save_pooled``); the model runs in ``compute`` (``devices.torch_dtype``: auto =
    float16 autocast on CUDA, float32 on the CPU). ``clamped.parquet``:
    which dimensions were clamped, per modality. ``model.json``: the model's identity
    (``model_identity``: weights' checksum, preprocessing, logit scale). Returns a summary.
    """
    from fmridecode.embeddings.clamp import clamp_outliers, typical_scale
    from fmridecode.embeddings.model import model_identity
    from fmridecode.embeddings.tokens import encode_images, encode_texts

    _check_dtype(dtype, "pooled caches")
    compute_dtype = torch_dtype(compute, device)  # checked before the model is loaded
    images, index, captions = read_stimuli(stim_dir)
    model, preprocess, tokenizer = load_model(model_name, pretrained, device=device)
    identity = model_identity(model_name, pretrained, model, preprocess)
    raw_image, _ = encode_images(
        model, preprocess, images, batch_size=batch_size, workers=workers, compute=compute,
        progress=progress,
    )  # fmt: skip
    texts = captions["caption"].astype(str).tolist()
    raw_caption, _ = encode_texts(
        model, tokenizer, texts, batch_size=batch_size, compute=compute, progress=progress
    )
    split = dict(zip(index["stim_id"].astype(str), index["split"].astype(str), strict=True))
    fit_image = index["split"].astype(str).to_numpy() != "test"
    fit_caption = captions["stim_id"].astype(str).map(split).to_numpy() != "test"
    image, image_report = clamp_outliers(raw_image, fit_image, clamp, "image")
    caption, caption_report = clamp_outliers(raw_caption, fit_caption, clamp, "caption")
    out_dir = Path(out_dir)
    save_pooled(
        out_dir / "image.npy",
        unit_rows(image),
        index[["stim_id", "split"]].astype({"stim_id": str, "split": str}).reset_index(drop=True),
        dtype,
    )
    cap_index = captions[["stim_id", "caption_idx", "kind"]].reset_index(drop=True)
    save_pooled(
        out_dir / "caption.npy",
        unit_rows(caption),
        cap_index.astype({"stim_id": str, "caption_idx": "int64", "kind": str}),
        dtype,
    )
    reports = [r for r in (image_report, caption_report) if len(r)] or [image_report]
    clamped = pd.concat(reports, ignore_index=True).astype({"dim": "int64", "n_clamped": "int64"})
    write_parquet(clamped, out_dir / "clamped.parquet")
    write_json(identity, out_dir / "model.json")
    return {
        "model_name": model_name,
        "pretrained": identity["pretrained"],
        "weights_sha256": identity["weights_sha256"],
        "n_images": int(len(image)),
        "n_captions": int(len(caption)),
        "dim": int(image.shape[1]),
        "dtype": dtype,
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
        "clamp_rms": clamp,
        # absolute thresholds, for embeddings made later in the same space (augmented views)
        "clamp_threshold_image": None
        if clamp is None
        else clamp * typical_scale(raw_image[fit_image]),
        "clamp_threshold_caption": None
        if clamp is None
        else clamp * typical_scale(raw_caption[fit_caption]),
        "clamped_image_dims": image_report["dim"].tolist(),
        "clamped_caption_dims": caption_report["dim"].tolist(),
    }


def write_token_caches(
    model_name: str,
    pretrained: str | os.PathLike | None,
    stim_dir: str | os.PathLike,
    out: dict[str, str | os.PathLike],
    *,
    dtype: str = "float16",
    device: str = "cpu",
    compute: str = "float32",
    batch_size: int = 64,
    workers: int = 0,
    chunk: int = 1024,
    progress: bool = False,
) -> dict[str, list[int]]:
    """Token-level caches, streamed to disk ``chunk`` items at a time (bounded memory at NSD
    scale: 73,000 x 257 x 768 is 29 GB in float16). ``out``: ``image`` and/or ``caption`` ->
    .npy path (index as in ``write_caches``). Stored unnormalised (the model's own hidden
    states) in ``dtype``; computed in ``compute`` (as in ``write_caches``). Returns each
    array's shape."""
    from fmridecode.embeddings.tokens import encode_images, encode_texts

    _check_dtype(dtype, "token caches")
    torch_dtype(compute, device)  # checked before the model is loaded
    images, index, captions = read_stimuli(stim_dir)
    model, preprocess, tokenizer = load_model(model_name, pretrained, device=device)
    texts = captions["caption"].astype(str).tolist()
    cap_index = captions[["stim_id", "caption_idx", "kind"]].reset_index(drop=True)
    sources = {  # what -> (items, index, items -> token states)
        "image": (
            images,
            index[["stim_id", "split"]].astype(str).reset_index(drop=True),
            lambda b: encode_images(model, preprocess, b, batch_size=batch_size,
                                    workers=workers, tokens=True, compute=compute,
                                    progress=progress)[1],
        ),
        "caption": (
            texts,
            cap_index.astype({"stim_id": str, "caption_idx": "int64", "kind": str}),
            lambda b: encode_texts(model, tokenizer, b, batch_size=batch_size, tokens=True,
                                   compute=compute, progress=progress)[1],
        ),
    }  # fmt: skip
    shapes: dict[str, list[int]] = {}
    for what, path in out.items():
        if what not in sources:
            raise DataError(f"token caches: unknown kind {what!r} (image or caption)")
        items, idx, encode = sources[what]
        shape = (len(items), *encode(items[:1]).shape[1:])
        blocks = (encode(items[s : s + chunk]).astype(dtype) for s in range(0, len(items), chunk))
        save_indexed_chunks(path, shape, dtype, blocks, idx)
        shapes[what] = list(shape)
    return shapes


def embed_views(
    model: torch.nn.Module,
    preprocess: Any,
    images: np.ndarray,
    views: int,
    seed: int,
    *,
    crop: float = 0.7,
    jitter: float = 0.1,
    threshold: float | None = None,
    batch_size: int = 256,
    workers: int = 0,
    compute: str = "float32",
    progress: bool = False,
) -> np.ndarray:
    """(N, views, D) unit-norm embeddings of augmented views of (N, H, W, 3) images
    (``augment.augment_images``), raw values clamped to +-``threshold`` first (the image
    cache's clamp, ``write_caches``'s ``clamp_threshold_image``) so views and images share
    one space; computed in ``compute`` on the model's device (as in ``write_caches``)."""
    from fmridecode.embeddings.augment import augment_images
    from fmridecode.embeddings.tokens import encode_images

    aug = augment_images(check_images(images), views, seed, crop, jitter)
    raw, _ = encode_images(
        model, preprocess, aug.reshape(-1, *aug.shape[2:]), batch_size=batch_size,
        workers=workers, compute=compute, progress=progress,
    )  # fmt: skip
    if threshold is not None:
        raw = np.clip(raw, -threshold, threshold)
    return unit_rows(raw).reshape(len(aug), views, -1)
