"""The one array-with-index format, and atomic writes.

Every matrix that flows between stages (voxel matrices, embeddings, predictions,
reconstructions) is stored as ``<name>.npy`` with a parquet table ``<name>.index.parquet``
beside it: one index row per array row (stimulus id, split, repeat, ...). Order is never
implicit: readers join on the index, not on row position.

Writes go to a temporary file in the same folder and are renamed into place, so a killed
job never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INDEX_SUFFIX = ".index.parquet"


class DataError(ValueError):
    """Bad input data; the message names the file and the problem."""


def index_path(array_path: str | os.PathLike) -> Path:
    """Path of the index table that belongs to ``array_path`` (``x.npy`` -> ``x.index.parquet``)."""
    p = Path(array_path)
    if p.suffix != ".npy":
        raise ValueError(f"{p}: indexed arrays are .npy files")
    return p.with_suffix(INDEX_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))


def save_nifti(img: Any, path: str | os.PathLike) -> None:
    """Write a nibabel image atomically (the temp name keeps the .nii.gz suffix for nibabel)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        import nibabel as nib

        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table to parquet atomically (no pandas index column)."""
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a parquet table, with the file named in the error if it is missing or broken."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: cannot read as parquet ({e})") from e


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file is a DataError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically, pretty-printed and key-sorted (stable diffs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_indexed(array_path: str | os.PathLike, array: np.ndarray, index: pd.DataFrame) -> None:
    """Save ``array`` and its row index table; rows must match one to one.

    Refuses non-finite floating values: a NaN is a bug upstream, never something to pass on.
    """
    array = np.asarray(array)
    if len(index) != array.shape[0]:
        raise ValueError(
            f"{array_path}: index has {len(index)} rows but array has {array.shape[0]}"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        n_bad = int((~np.isfinite(array)).sum())
        raise DataError(f"{array_path}: refusing to write {n_bad} non-finite values")
    save_npy(array_path, array)
    write_parquet(index, index_path(array_path))


def save_indexed_chunks(
    array_path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: Iterable[np.ndarray],
    index: pd.DataFrame,
) -> None:
    """``save_indexed`` for arrays too large to hold in memory: ``chunks`` (consecutive row
    blocks, e.g. token embeddings of 1,000 images at a time) are written one by one into a
    memory-mapped .npy of ``shape`` and ``dtype`` that replaces ``array_path`` only when every
    row has arrived. Same checks: index rows = array rows, no non-finite values."""
    if len(index) != shape[0]:
        raise ValueError(f"{array_path}: index has {len(index)} rows but array has {shape[0]}")
    dtype = np.dtype(dtype)
    with atomic_path(array_path) as tmp:
        # header, then the rows appended with plain writes: nothing stays mapped in memory
        with open(tmp, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
            np.lib.format.write_array_header_1_0(f, header | {"shape": tuple(shape)})
            row = 0
            for chunk in chunks:
                chunk = np.ascontiguousarray(chunk, dtype=dtype)
                if chunk.shape[1:] != tuple(shape[1:]) or row + len(chunk) > shape[0]:
                    raise DataError(
                        f"{array_path}: chunk of shape {chunk.shape} at row {row} does not fit "
                        f"an array of shape {tuple(shape)}"
                    )
                if not np.isfinite(chunk).all():
                    raise DataError(f"{array_path}: refusing non-finite values (rows from {row})")
                f.write(chunk.tobytes())
                row += len(chunk)
        if row != shape[0]:
            raise DataError(f"{array_path}: {row} rows were written, {shape[0]} expected")
    write_parquet(index, index_path(array_path))


def load_indexed(
    array_path: str | os.PathLike, mmap: bool = False
) -> tuple[np.ndarray, pd.DataFrame]:
    """Load an array and its index table, checking that they belong together."""
    array_path = Path(array_path)
    try:
        array = np.load(array_path, mmap_mode="r" if mmap else None)
    except FileNotFoundError as e:
        raise DataError(f"{array_path}: file not found") from e
    except ValueError as e:
        raise DataError(f"{array_path}: not a readable .npy file ({e})") from e
    index = read_parquet(index_path(array_path))
    if len(index) != array.shape[0]:
        raise DataError(
            f"{array_path}: {array.shape[0]} rows but its index "
            f"{index_path(array_path).name} has {len(index)}"
        )
    return array, index


def file_sha256(path: str | os.PathLike, block: int = 1 << 24) -> str:
    """SHA-256 of a file, read in blocks (checkpoints are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def run_key(*parts: Any) -> str:
    """A short hash of arrays (their dtype, shape and bytes) and JSON-able settings."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def partial_dir(output_path: str | os.PathLike) -> Path:
    """Where a resumable job keeps its finished pieces (generator chunks, mapper checkpoints):
    ``.partial/`` beside its outputs. Not a declared output, so Snakemake keeps it when the
    job fails or is killed; the job removes it (``clear``) once its outputs are written."""
    return Path(output_path).parent / ".partial"


def clear(folder: str | os.PathLike) -> None:
    """Remove a ``partial_dir`` folder (after the outputs are written)."""
    shutil.rmtree(folder, ignore_errors=True)
