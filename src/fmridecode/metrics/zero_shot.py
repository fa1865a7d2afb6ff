"""Zero-shot classification of decoded embeddings (BrainCLIP): top-k over class embeddings.

Each test image that shows a held-out category (one never shown in training) is classified by
the cosine similarity of its decoded embedding to every candidate class's prompt-ensemble
embedding (``embeddings.prompts``); it counts as correct at k when one of the held-out
categories it shows is among the k best classes. Candidates: all categories (held-out ones
among them, the stricter test) or only the held-out ones (BrainCLIP's setting on GOD, where
every test image has one held-out category). Chance is computed exactly per image
(1 - C(C - h, k) / C(C, k) for h held-out categories shown among C candidates) and averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb
from typing import Any

import numpy as np

from fmridecode.io import DataError
from fmridecode.mappers.targets import l2_normalize


def zero_shot_rows(
    pred: np.ndarray,
    labels: Sequence[set[str]],
    class_emb: np.ndarray,
    classes: Sequence[str],
    held_out: set[str],
    base: Mapping[str, Any],
    ks: Sequence[int] = (1, 5),
    candidates: str = "all",
) -> list[dict]:
    """Rows ``zero_shot_top{k}`` for decoded embeddings ``pred`` (N, D) of images with category
    sets ``labels``; unavailable rows (with the reason) when no test image shows a held-out
    category or k is not below the number of candidates."""
    classes = list(classes)
    if len(classes) != len(class_emb) or len(pred) != len(labels):
        raise DataError(
            f"zero-shot: {len(classes)} classes for {len(class_emb)} class embeddings, "
            f"{len(pred)} predictions for {len(labels)} label sets"
        )
    if candidates not in ("all", "held_out"):
        raise DataError(f"zero-shot candidates must be 'all' or 'held_out', got {candidates!r}")
    keep = [i for i, c in enumerate(classes) if candidates == "all" or c in held_out]
    names, emb = [classes[i] for i in keep], np.asarray(class_emb)[keep]
    items = [i for i, lab in enumerate(labels) if lab & held_out]
    rows = []
    for k in ks:
        row = {**base, "metric": f"zero_shot_top{k}", "k": int(k), "n": len(items)}
        why = None
        if not items:
            why = "unavailable: no test image shows a held-out category"
        elif k >= len(names):
            why = f"unavailable: top-{k} of {len(names)} candidate classes is trivial"
        if why:
            rows.append({**row, "value": np.nan, "status": why})
            continue
        scores = l2_normalize(np.asarray(pred, np.float64)[items]) @ l2_normalize(emb).T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        hits, chance = [], []
        for row_top, i in zip(top, items, strict=True):
            wanted = labels[i] & held_out & set(names)
            hits.append(any(names[j] in wanted for j in row_top))
            h, c = len(wanted), len(names)
            chance.append(1 - comb(c - h, k) / comb(c, k))
        rows.append({**row, "value": float(np.mean(hits)), "chance": float(np.mean(chance))})
    return rows


def embedding_zero_shot(
    targets: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    labels: Mapping[str, set[str]],
    class_emb: np.ndarray,
    classes: Sequence[str],
    held_out: set[str],
    ids: Sequence[str],
) -> dict[str, float | int | None]:
    """Zero-shot top-1/5 of the true embeddings (``target -> (rows, stimulus ids)``) of the
    images ``ids``: the CLIP space's own accuracy, the ceiling of decoded embeddings. Flat
    keys ``clip_<target>_zero_shot_top<k>``, ``clip_zero_shot_top<k>_chance``,
    ``clip_zero_shot_n``."""
    from fmridecode.mappers.targets import align

    out: dict[str, float | int | None] = {}
    image_labels = [labels.get(s, set()) for s in ids]
    for target, (rows, row_ids) in targets.items():
        true = align(rows, list(row_ids), list(ids), f"{target} embeddings")
        for row in zero_shot_rows(true, image_labels, class_emb, classes, held_out, {}):
            out[f"clip_{target}_{row['metric']}"] = row["value"]
            out[f"clip_{row['metric']}_chance"] = row.get("chance")
            out["clip_zero_shot_n"] = row["n"]
    return out
