"""Array backend of the GLM's heavy steps: numpy, or torch (CUDA when present).

The GLM's voxel-wise work is a handful of dense linear-algebra kernels (projections, QR
solves, SVDs, matrix products over voxels). They are written once against this small
interface; arithmetic operators, ``.T``, ``.sum(0)``, ``.mean(0)`` and indexing are shared by
numpy arrays and torch tensors, the rest goes through the methods below. Everything is
float64 on either backend, so the two give the same numbers up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the backends ``glm.backend`` accepts
BACKENDS = ("numpy", "torch")


class Backend:
    """numpy (default) or torch on ``device`` ("auto": CUDA if available, else CPU)."""

    def __init__(self, name: str = "numpy", device: str = "auto") -> None:
        if name not in BACKENDS:
            raise ValueError(f"GLM backend must be one of {BACKENDS}, got {name!r}")
        self.name = name
        self.torch = None
        self.device = "cpu"
        if name == "torch":
            import torch

            from fmridecode.devices import resolve_device

            self.torch = torch
            self.device = resolve_device(device)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device!r})"

    def array(self, x: Any) -> Any:
        """float64 array on this backend."""
        if self.torch is None:
            return np.asarray(x, dtype=np.float64)
        return self.torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)

    def numpy(self, x: Any) -> np.ndarray:
        if self.torch is not None and isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def cat(self, xs: Sequence[Any], axis: int = 0) -> Any:
        if self.torch is None:
            return np.concatenate(xs, axis=axis)
        return self.torch.cat(list(xs), dim=axis)

    def stack(self, xs: Sequence[Any]) -> Any:
        return np.stack(xs) if self.torch is None else self.torch.stack(list(xs))

    def qr(self, a: Any) -> tuple[Any, Any]:
        return np.linalg.qr(a) if self.torch is None else self.torch.linalg.qr(a)

    def solve(self, a: Any, b: Any) -> Any:
        return np.linalg.solve(a, b) if self.torch is None else self.torch.linalg.solve(a, b)

    def svd(self, a: Any) -> tuple[Any, Any, Any]:
        if self.torch is None:
            return np.linalg.svd(a, full_matrices=False)
        return self.torch.linalg.svd(a, full_matrices=False)

    def std1(self, x: Any) -> Any:
        """Standard deviation over axis 0 with n - 1 in the denominator."""
        return x.std(0, ddof=1) if self.torch is None else x.std(0, correction=1)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        if self.torch is None:
            return np.where(cond, a, b)
        t = self.torch
        a = a if isinstance(a, t.Tensor) else t.tensor(a, dtype=t.float64, device=self.device)
        b = b if isinstance(b, t.Tensor) else t.tensor(b, dtype=t.float64, device=self.device)
        return t.where(cond, a, b)

    def nan_to_num(self, x: Any) -> Any:
        return np.nan_to_num(x) if self.torch is None else self.torch.nan_to_num(x)

    def isfinite(self, x: Any) -> Any:
        return np.isfinite(x) if self.torch is None else self.torch.isfinite(x)

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x) if self.torch is None else self.torch.sqrt(x)

    def log1p(self, x: Any) -> Any:
        return np.log1p(x) if self.torch is None else self.torch.log1p(x)

    def expm1(self, x: Any) -> Any:
        return np.expm1(x) if self.torch is None else self.torch.expm1(x)

    def clip(self, x: Any, lo: float, hi: float) -> Any:
        return np.clip(x, lo, hi) if self.torch is None else self.torch.clamp(x, lo, hi)

    def index(self, idx: np.ndarray) -> Any:
        """An integer or boolean index array usable on this backend's arrays."""
        if self.torch is None:
            return idx
        return self.torch.as_tensor(np.asarray(idx), device=self.device)

    def flip0(self, x: Any) -> Any:
        """``x`` reversed along axis 0."""
        return x[::-1] if self.torch is None else x.flip(0)

    def divide(self, a: Any, b: Any, fill: float) -> Any:
        """a / b where b != 0, else ``fill`` (no warnings, no infinities)."""
        ok = b != 0
        return self.where(ok, a / self.where(ok, b, 1.0), fill)


NUMPY = Backend("numpy")
