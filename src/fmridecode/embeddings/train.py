"""Contrastive (CLIP) training of the small dual encoder on stimulus images and captions.

Pretrained CLIP weights cannot be downloaded everywhere the workflow runs, so the default
embedding space is learned here from the pool + train stimuli (never the test images).
Each epoch pairs every image with one of its captions (seeded draw), and the two towers
are trained with the symmetric InfoNCE loss and open_clip's learnable logit scale.
Augmentation is a small translation only: flips and crops would contradict position words
("on the left") and colour jitter would contradict colour words.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fmridecode.embeddings.cache import check_images, preprocess_images
from fmridecode.embeddings.model import (
    SMALL_MODEL_NAME,
    register_small_model,
    save_checkpoint,
)
from fmridecode.io import DataError, write_json
from fmridecode.optim import checked_step

LOG_SCALE_MAX = math.log(100.0)  # open_clip's clamp of the logit scale


def _caption_groups(
    captions: pd.DataFrame, image_ids: list[str]
) -> tuple[list[str], list[np.ndarray]]:
    """Caption texts of the given images, and for each image the rows of its captions."""
    for col in ("stim_id", "caption"):
        if col not in captions.columns:
            raise DataError(f"captions table: missing column {col!r}")
    order = ["stim_id", "caption_idx"] if "caption_idx" in captions.columns else ["stim_id"]
    caps = captions[captions["stim_id"].isin(image_ids)].sort_values(order, kind="stable")
    caps = caps.reset_index(drop=True)
    texts = caps["caption"].astype(str).tolist()
    rows_by_id = caps.groupby("stim_id", sort=False).indices
    groups = []
    for sid in image_ids:
        if sid not in rows_by_id:
            raise DataError(f"captions table: image {sid!r} has no caption")
        groups.append(rows_by_id[sid])
    return texts, groups


def _shift(x: torch.Tensor, max_shift: int, rng: np.random.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` px (edge pixels replicated)."""
    if max_shift <= 0:
        return x
    s = max_shift
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    h, w = x.shape[-2:]
    offsets = rng.integers(0, 2 * s + 1, size=(len(x), 2))
    crops = [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    return torch.stack(crops)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup then cosine decay to 0 over ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on gains, biases, norms and the logit scale (as open_clip does)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
        (no_decay if exclude else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """AdamW with open_clip's betas/eps; fused kernel when available (~8x faster step on CPU)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    text_ids: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE on unit-norm features; pairs with identical caption text all count
    as positives (``text_ids`` equal), so a shared vague caption is not a false negative."""
    logits = logit_scale.exp() * image_features @ text_features.T
    same = (text_ids[:, None] == text_ids[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    loss_i = torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
    loss_t = torch.sum(-target * F.log_softmax(logits.T, dim=1), dim=1).mean()
    return 0.5 * (loss_i + loss_t)


def train_clip(
    images: np.ndarray,
    captions: pd.DataFrame,
    image_ids: list[str],
    out_checkpoint: str | os.PathLike,
    *,
    model_name: str = SMALL_MODEL_NAME,
    model_kwargs: dict[str, Any] | None = None,
    epochs: int = 60,
    max_minutes: float | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 50,
    max_shift: int = 2,
    seed: int = 0,
    threads: int = 1,
    out_stats: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the small CLIP model from scratch on ``images`` and their captions; save it.

    ``images`` (N, H, W, 3) uint8 in the order of ``image_ids``; ``captions`` has columns
    ``stim_id, caption`` (+ ``caption_idx``), rows of other images are ignored.
    ``model_kwargs`` go to ``register_small_model`` (embed_dim, vision_width, ...).
    Stops after ``epochs`` or ``max_minutes`` (whichever first; with a time limit the cosine
    schedule is fitted after epoch 1 to the epochs that fit). Writes ``out_checkpoint``
    (loadable with ``load_model(model_name, out_checkpoint)``) and returns training stats
    (also written to ``out_stats`` as JSON when given).
    """
    t_start = time.perf_counter()
    images = check_images(images)
    image_ids = [str(s) for s in image_ids]
    if len(image_ids) != len(images):
        raise DataError(f"train_clip: {len(images)} images but {len(image_ids)} image_ids")
    if len(set(image_ids)) != len(image_ids):
        raise DataError("train_clip: duplicate stim_id in image_ids")
    if len(images) < 2:
        raise DataError("train_clip: need at least 2 images for a contrastive loss")
    if epochs < 1 or batch_size < 2:
        raise ValueError("epochs must be >= 1 and batch_size >= 2")

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        register_small_model(model_name, **(model_kwargs or {}))
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        model.train()
        tokenizer = open_clip.get_tokenizer(model_name)

        texts, groups = _caption_groups(captions, image_ids)
        tokens = tokenizer(texts)
        text_ids = torch.as_tensor(pd.factorize(pd.Series(texts))[0])
        pixels = preprocess_images(preprocess, images)  # same transform as at inference

        n = len(images)
        n_batches = max(1, math.ceil(n / batch_size))
        planned_epochs = epochs
        total_steps = planned_epochs * n_batches
        warmup = max(1, min(warmup_steps, total_steps // 10))
        optimizer = _adamw(_param_groups(model, weight_decay), lr)

        budget_s = None if max_minutes is None else 60.0 * max_minutes
        losses: list[float] = []
        epoch_seconds: list[float] = []
        stop_reason = "epochs"
        step = 0
        bar = tqdm(range(epochs), desc="clip epochs", file=sys.stderr, disable=not progress)
        t_train = time.perf_counter()
        for epoch in bar:
            if epoch >= planned_epochs:
                stop_reason = "max_minutes"
                break
            if budget_s is not None and time.perf_counter() - t_train >= budget_s:
                stop_reason = "max_minutes"
                break
            t_epoch = time.perf_counter()
            perm = rng.permutation(n)
            pick = np.array([g[rng.integers(len(g))] for g in groups])
            epoch_loss = 0.0
            for batch in np.array_split(perm, n_batches):
                for group in optimizer.param_groups:
                    group["lr"] = lr * _lr_factor(step, total_steps, warmup)
                x = _shift(pixels[batch], max_shift, rng)
                rows = torch.as_tensor(pick[batch])
                img_f, txt_f, _ = model(x, tokens[rows])
                loss = contrastive_loss(img_f, txt_f, model.logit_scale, text_ids[rows])
                lr_now = optimizer.param_groups[0]["lr"]
                checked_step(
                    loss, optimizer, f"train_clip, epoch {epoch} step {step} (lr {lr_now:.2e})"
                )
                with torch.no_grad():
                    model.logit_scale.clamp_(0, LOG_SCALE_MAX)
                epoch_loss += loss.item() * len(batch)
                step += 1
            losses.append(epoch_loss / n)
            epoch_seconds.append(time.perf_counter() - t_epoch)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
            if epoch == 0 and budget_s is not None:
                # Fit the schedule to the epochs the time budget allows (5% margin).
                fit = max(1, int(0.95 * budget_s / max(epoch_seconds[0], 1e-6)))
                if fit < epochs:
                    planned_epochs = fit
                    total_steps = planned_epochs * n_batches
        bar.close()

        model.eval()
        save_checkpoint(model, model_name, out_checkpoint)
        stats = {
            "model_name": model_name,
            "model_cfg": open_clip.get_model_config(model_name),
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "checkpoint": str(Path(out_checkpoint)),
            "n_images": n,
            "n_captions": len(texts),
            "epochs_requested": epochs,
            "epochs_planned": planned_epochs,
            "epochs_run": len(losses),
            "stop_reason": stop_reason,
            "max_minutes": max_minutes,
            "steps": step,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "max_shift": max_shift,
            "seed": seed,
            "threads": threads,
            "loss_per_epoch": [round(v, 6) for v in losses],
            "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 3) if epoch_seconds else None,
            "logit_scale": round(model.logit_scale.exp().item(), 4),
            "wall_seconds": round(time.perf_counter() - t_start, 2),
        }
    finally:
        torch.set_num_threads(old_threads)
    if out_stats is not None:
        write_json(stats, out_stats)
    return stats


def retrieval_top1(image_emb: np.ndarray, text_emb: np.ndarray) -> dict[str, float]:
    """Top-1 retrieval between paired rows (row i of each is a pair), both directions.

    ``image_to_text``: fraction of images whose most similar text is their own;
    ``text_to_image`` likewise. Chance is 1/N.
    """
    image_emb = np.asarray(image_emb, np.float64)
    text_emb = np.asarray(text_emb, np.float64)
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"paired embeddings differ: {image_emb.shape} vs {text_emb.shape}")
    sim = image_emb @ text_emb.T
    target = np.arange(len(sim))
    return {
        "image_to_text": float(np.mean(sim.argmax(axis=1) == target)),
        "text_to_image": float(np.mean(sim.argmax(axis=0) == target)),
        "n": int(len(sim)),
    }


def caption_retrieval(
    image_emb: np.ndarray,
    image_index: pd.DataFrame,
    caption_emb: np.ndarray,
    caption_index: pd.DataFrame,
    *,
    split: str = "test",
    kind: str = "detailed",
) -> dict[str, Any]:
    """How good the embedding space is: paired top-1 retrieval on held-out images.

    Each image of ``split`` is paired with its first caption of ``kind`` (lowest
    ``caption_idx``; of any kind when no caption has that kind, as in COCO's); returns
    ``retrieval_top1`` of those pairs plus what was compared. Images without such a caption
    are left out (and counted).
    """
    images = image_index.reset_index(drop=True)
    rows = np.flatnonzero((images["split"] == split).to_numpy())
    caps = caption_index.reset_index(drop=True)
    if not (caps["kind"] == kind).any():
        kind = "any"
    else:
        caps = caps[caps["kind"] == kind]
    caps = caps.sort_values(["stim_id", "caption_idx"], kind="stable")
    first = caps.groupby("stim_id", sort=False).head(1)
    row_of_caption = dict(zip(first["stim_id"], first.index, strict=True))
    pairs = [
        (r, row_of_caption[s])
        for r, s in zip(rows, images["stim_id"][rows], strict=True)
        if s in row_of_caption
    ]
    if len(pairs) < 2:
        raise DataError(f"caption_retrieval: fewer than 2 {split} images with a {kind} caption")
    img_rows, cap_rows = map(list, zip(*pairs, strict=True))
    out: dict[str, Any] = retrieval_top1(image_emb[img_rows], caption_emb[cap_rows])
    out.update(split=split, kind=kind, chance=1.0 / len(pairs), n_missing=len(rows) - len(pairs))
    return out
