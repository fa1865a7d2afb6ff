"""Category decoding (Mind Reader, section 3.4): which categories an image shows, from fMRI,
from CLIP embeddings and from fMRI-mapped CLIP embeddings, scored by AUC-ROC.

A multi-label classifier of three linear layers (ReLU between, dropout) is trained with binary
cross-entropy on the training images (inputs standardised with training statistics only; a
seeded validation split of the training images stops training early) and scored on the test
images per category by the area under the ROC curve; the mean over categories is the headline.
The fMRI-mapped variant applies the classifier trained on true CLIP embeddings to the
embeddings decoded from fMRI (both L2-normalised), so it measures how much category
information survives the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from fmridecode.io import DataError
from fmridecode.mappers.targets import align, l2_normalize


def multi_hot(labels: Sequence[set[str]], classes: Sequence[str]) -> np.ndarray:
    """(N, C) float32: 1 where image i shows class c."""
    pos = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float32)
    for i, lab in enumerate(labels):
        for c in lab:
            if c in pos:
                out[i, pos[c]] = 1.0
    return out


@dataclass
class CategoryClassifier:
    """A trained classifier with the training statistics its inputs are standardised by."""

    net: nn.Module
    mean: np.ndarray
    std: np.ndarray
    epochs_run: int
    val_loss: float

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N, C) probabilities."""
        x = torch.from_numpy(
            ((np.asarray(X, np.float32) - self.mean) / self.std).astype(np.float32)
        )
        self.net.eval()
        return torch.sigmoid(self.net(x)).numpy()


def train_classifier(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    hidden: tuple[int, int] = (512, 256),
    dropout: float = 0.3,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    val_fraction: float = 0.15,
    patience: int = 20,
    seed: int = 0,
) -> CategoryClassifier:
    """Three linear layers, BCE, AdamW; early stopping on a seeded validation split (the best
    epoch's weights are kept). Deterministic for a given seed on the CPU."""
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) < 4:
        raise DataError(f"category classifier: X {X.shape} and Y {Y.shape} must be (N >= 4, .)")
    if not np.isfinite(X).all():
        raise DataError("category classifier: inputs contain non-finite values")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    n_val = max(1, int(round(val_fraction * len(X))))
    val, train = order[:n_val], order[n_val:]
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0) + 1e-6
    Xs = torch.from_numpy((X - mean) / std)
    Yt = torch.from_numpy(Y)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(X.shape[1], hidden[0]),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden[1], Y.shape[1]),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    best, best_state, since, run = np.inf, None, 0, 0
    for run in range(1, epochs + 1):  # noqa: B007 - the count is returned
        net.train()
        perm = torch.from_numpy(train)[torch.randperm(len(train), generator=gen)]
        for s in range(0, len(perm), batch_size):
            idx = perm[s : s + batch_size]
            opt.zero_grad()
            loss_fn(net(Xs[idx]), Yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(loss_fn(net(Xs[val]), Yt[val]))
        if v < best - 1e-5:
            best, since = v, 0
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    net.load_state_dict(best_state)
    return CategoryClassifier(net, mean, std, run, best)


def no_labels_rows(base: dict, mappers: list[str], why: str) -> list[dict]:
    """The ``category_auc`` mean rows of a dataset without category labels, marked
    unavailable with ``why``: fMRI, true CLIP and each mapper's decoded CLIP."""
    features = [("none", "fmri"), ("none", "clip")] + [(m, "mapped_clip") for m in mappers]
    row = {**base, "metric": "category_auc", "category": "mean", "value": float("nan")}
    return [{**row, "status": why, "mapper": m, "feature": f} for m, f in features]


def category_auc_rows(
    scores: np.ndarray,
    Y: np.ndarray,
    classes: Sequence[str],
    base: Mapping[str, Any],
    trainable: np.ndarray | None = None,
) -> list[dict]:
    """``category_auc`` rows: one per category (column ``category``) and their mean (category
    'mean'). A category without both positive and negative test images, or never shown in
    training (``trainable`` False), has no AUC: unavailable row with the reason."""
    scores, Y = np.asarray(scores), np.asarray(Y)
    trainable = np.ones(len(classes), bool) if trainable is None else np.asarray(trainable)
    rows, aucs = [], []
    for j, c in enumerate(classes):
        row = {**base, "metric": "category_auc", "category": c, "chance": 0.5, "n": len(Y)}
        positives = int(Y[:, j].sum())
        if not trainable[j]:
            rows.append({**row, "value": np.nan, "status": "unavailable: not in training images"})
        elif positives in (0, len(Y)):
            why = f"unavailable: {positives} of {len(Y)} test images show it"
            rows.append({**row, "value": np.nan, "status": why})
        else:
            auc = float(roc_auc_score(Y[:, j], scores[:, j]))
            aucs.append(auc)
            rows.append({**row, "value": auc})
    mean = {**base, "metric": "category_auc", "category": "mean", "chance": 0.5, "n": len(Y)}
    if aucs:
        rows.append({**mean, "value": float(np.mean(aucs))})
    else:
        rows.append({**mean, "value": np.nan, "status": "unavailable: no scorable category"})
    return rows


def category_decoding_rows(
    X: np.ndarray,
    split: Sequence[str],
    stim_ids: Sequence[str],
    labels: Mapping[str, set[str]],
    classes: Sequence[str],
    clip: tuple[np.ndarray, Sequence[str]],
    decoded: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    base: Mapping[str, Any],
    *,
    seed: int = 0,
    log: Any = None,
    **settings: Any,
) -> list[dict]:
    """Mind Reader's category decoding (3.4) for one subject, as ``category_auc`` rows.

    ``X`` (rows, voxels) with each row's ``split`` and ``stim_id``; ``labels`` the categories
    each stimulus shows; ``clip`` the true CLIP image embeddings and their stimulus ids;
    ``decoded`` maps each mapper to its decoded test embeddings and their stimulus ids (rows
    are matched by id; embeddings are L2-normalised here). One
    classifier is trained on the training rows' voxels (``feature`` fmri) and one on their CLIP
    embeddings (clip); the clip classifier then scores each mapper's decoded embeddings
    (mapped_clip). ``settings`` go to ``train_classifier``."""
    split = np.asarray(split)
    train, test = split == "train", split == "test"
    ids = list(stim_ids)
    Y = multi_hot([labels.get(s, set()) for s in ids], classes)
    trainable = Y[train].sum(axis=0) > 0  # categories held out of training cannot be learned
    test_ids = [s for s, t in zip(ids, test, strict=True) if t]
    clip = l2_normalize(align(clip[0], list(clip[1]), ids, "image embeddings"))
    rows: list[dict] = []
    classifiers = {}
    for feature, inputs in (("fmri", X), ("clip", clip)):
        clf = classifiers[feature] = train_classifier(
            inputs[train], Y[train], seed=seed, **settings
        )
        rows += category_auc_rows(
            clf.predict(inputs[test]), Y[test], classes,
            {**base, "mapper": "none", "feature": feature}, trainable,
        )  # fmt: skip
        if log is not None:
            log.info("%s: %d epochs, mean AUC %.3f", feature, clf.epochs_run, rows[-1]["value"])
    for mapper, (pred, pred_ids) in decoded.items():
        pred = l2_normalize(align(pred, list(pred_ids), test_ids, f"{mapper} decoded embeddings"))
        rows += category_auc_rows(
            classifiers["clip"].predict(pred), Y[test], classes,
            {**base, "mapper": mapper, "feature": "mapped_clip"}, trainable,
        )  # fmt: skip
        if log is not None:
            log.info("mapped_clip (%s): mean AUC %.3f", mapper, rows[-1]["value"])
    return rows
