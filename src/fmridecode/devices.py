"""Where torch work runs: one rule for every stage ('auto' = CUDA when present, else CPU)."""

from __future__ import annotations

import torch

from fmridecode.io import DataError


def resolve_device(device: str | None = "auto") -> str:
    """'auto' or None -> 'cuda' when a GPU is visible, else 'cpu'; anything else as given."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def torch_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' -> float16 on CUDA (half the memory), float32 elsewhere; or the named dtype."""
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype in ("float32", "float16", "bfloat16"):
        return getattr(torch, dtype)
    raise DataError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'float16' or 'bfloat16'")
