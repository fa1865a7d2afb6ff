"""The stimulus set of a real dataset in the workflow's own files (docs/CONTRACTS.md):
``images.npy`` (uint8, N x S x S x 3, written a batch at a time) with its index (``stim_id,
split, subjects`` + dataset columns), ``captions.parquet``, ``labels.parquet`` and
``categories.parquet``, whatever the dataset keeps its images in (NSD's HDF5 brick, image files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from fmridecode.io import DataError, save_indexed_chunks, write_parquet

CAPTION_COLUMNS = ["stim_id", "caption_idx", "caption", "kind"]


def square(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """Centre-crop an image to a square and resize it to ``size`` (bicubic): uint8 RGB."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def write_images(
    path: str | Path,
    index: pd.DataFrame,
    load: Callable[[Sequence[str]], list[np.ndarray]],
    size: int,
    batch: int = 64,
    progress: bool = True,
) -> None:
    """Write ``images.npy`` + index for the rows of ``index`` (its ``stim_id`` order):
    ``load(ids)`` returns the images of a batch of ids; each is squared to ``size``."""
    ids = index["stim_id"].tolist()

    def batches() -> Iterator[np.ndarray]:
        for b0 in tqdm(range(0, len(ids), batch), desc="images", disable=not progress):
            chunk = ids[b0 : b0 + batch]
            yield np.stack([square(im, size) for im in load(chunk)])

    save_indexed_chunks(path, (len(ids), size, size, 3), np.uint8, batches(), index)


def image_file_loader(dirs: Sequence[str | Path], template: str = "{stim_id}") -> Callable:
    """A ``load`` for ``write_images`` reading ``<dir>/<template>`` from the first of ``dirs``
    that has it; a stimulus without a file is an error naming the places looked in."""
    dirs = [Path(d) for d in dirs]

    def find(stim_id: str) -> Path:
        name = template.replace("{stim_id}", stim_id)
        for d in dirs:
            if (d / name).is_file():
                return d / name
        raise DataError(f"stimulus {stim_id!r}: no image file {name} in {[str(d) for d in dirs]}")

    def load(batch: Sequence[str]) -> list[np.ndarray]:
        out = []
        for stim_id in batch:
            path = find(stim_id)
            try:
                with Image.open(path) as img:
                    out.append(np.asarray(img.convert("RGB")))
            except OSError as e:
                raise DataError(f"{path}: cannot read the image ({e})") from e
        return out

    load.find = find  # type: ignore[attr-defined]
    return load


def _by_coco_id(coco_of: dict[str, int]) -> dict[int, list[str]]:
    """COCO id -> the stimuli showing that image."""
    wanted: dict[int, list[str]] = {}
    for s, c in coco_of.items():
        wanted.setdefault(int(c), []).append(s)
    return wanted


def _read_coco(path: Path, what: str, keys: set[str]) -> dict:
    """A COCO annotation file (``what``: caption, instances) with the top-level ``keys``."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: COCO {what} file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(doc, dict) or not keys <= set(doc):
        raise DataError(f"{path}: not a COCO {what} file (needs {sorted(keys)})")
    return doc


def coco_captions(files: Sequence[str | Path], coco_of: dict[str, int]) -> pd.DataFrame:
    """Captions of the stimuli from COCO caption annotation files (``captions_*.json``), joined
    by COCO id: ``stim_id, caption_idx, caption, kind`` ("coco"), caption_idx in annotation-id
    order. Images of the files that no stimulus shows are ignored."""
    wanted = _by_coco_id(coco_of)
    rows = []
    for f in files:
        doc = _read_coco(Path(f), "caption", {"annotations"})
        for a in doc["annotations"]:
            for s in wanted.get(int(a["image_id"]), []):
                rows.append((s, int(a["id"]), str(a["caption"]).strip()))
    df = pd.DataFrame(rows, columns=["stim_id", "ann_id", "caption"])
    df = df.drop_duplicates(["stim_id", "ann_id"]).sort_values(["stim_id", "ann_id"])
    df["caption_idx"] = df.groupby("stim_id").cumcount().astype(np.int64)
    df["kind"] = "coco"
    return df[CAPTION_COLUMNS].reset_index(drop=True)


def _categories_table(index: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``category, zero_shot`` (seen in test images only) of a labels table."""
    split = dict(zip(index["stim_id"], index["split"], strict=True))
    pairs = zip(labels["stim_id"], labels["category"], strict=True)
    seen_train = {c for s, c in pairs if split[s] != "test"}
    names = sorted(set(labels["category"]))
    return pd.DataFrame({"category": names, "zero_shot": [c not in seen_train for c in names]})


def coco_categories(
    files: Sequence[str | Path], coco_of: dict[str, int], index: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category labels of the stimuli from COCO instance annotation files
    (``instances_*.json``): one row per (stimulus, object category present), joined by COCO
    id; and the categories table (``zero_shot``: seen in test images only)."""
    wanted = _by_coco_id(coco_of)
    rows = set()
    for f in files:
        doc = _read_coco(Path(f), "instances", {"annotations", "categories"})
        name_of = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        for a in doc["annotations"]:
            for s in wanted.get(int(a["image_id"]), []):
                rows.add((s, name_of[int(a["category_id"])]))
    labels = pd.DataFrame(sorted(rows), columns=["stim_id", "category"])
    return labels, _categories_table(index, labels)


def categories_from_ids(
    index: pd.DataFrame, pattern: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category labels read from the stimulus ids with a regex whose first group is the
    category (GOD: the WordNet synset of ``n01518878_5958``); ``zero_shot`` marks categories
    seen in test images only. Empty tables when ``pattern`` is None."""
    if not pattern:
        return (
            pd.DataFrame({"stim_id": pd.Series(dtype=str), "category": pd.Series(dtype=str)}),
            pd.DataFrame({"category": pd.Series(dtype=str), "zero_shot": pd.Series(dtype=bool)}),
        )
    rx = re.compile(pattern)
    cats = []
    for s in index["stim_id"]:
        m = rx.search(s)
        if m is None:
            raise DataError(f"stimulus {s!r}: category pattern {pattern!r} does not match it")
        cats.append(m.group(1))
    labels = pd.DataFrame({"stim_id": index["stim_id"].to_numpy(), "category": cats})
    return labels, _categories_table(index, labels)


def write_tables(
    captions: pd.DataFrame,
    labels: pd.DataFrame,
    categories: pd.DataFrame,
    out: dict[str, str | Path],
) -> None:
    """Write the stimulus set's tables (keys ``captions, labels, categories`` of ``out``)."""
    write_parquet(captions.reset_index(drop=True), out["captions"])
    write_parquet(labels.reset_index(drop=True), out["labels"])
    write_parquet(categories.reset_index(drop=True), out["categories"])


def coco_ids(stim_ids: Sequence[str], pattern: str) -> dict[str, int]:
    """COCO image ids of the stimuli whose id matches ``pattern`` (first group: the id), e.g.
    BOLD5000's ``COCO_train2014_000000123456.jpg``; others (ImageNet, scenes) are left out."""
    rx = re.compile(pattern)
    out = {}
    for s in stim_ids:
        m = rx.search(s)
        if m is not None:
            out[s] = int(m.group(1))
    return out
