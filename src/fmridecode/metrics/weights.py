"""Where the metric networks' weights are, found without importing torch (so the workflow
resolves them at parse time and a weight file appearing or changing reruns the metrics).

A configured file wins; otherwise torchvision's own cached checkpoint (what ``weights=...``
would have downloaded into ``<torch hub dir>/checkpoints/``) is used if present; otherwise
the reason they are missing is returned. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmridecode.io import DataError

#: checkpoint file name of each network (torchvision's; SwAV: the facebookresearch release)
CACHE_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "inception": "inception_v3_google-0cc3c7bd.pth",
    "effnet": "efficientnet_b1-c27df63c.pth",
    "swav": "swav_800ep_pretrain.pth.tar",
}


def hub_dir() -> Path:
    """torch.hub's default folder: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]) / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "torch" / "hub"


def find_weights(name: str, configured: str | os.PathLike | None) -> tuple[Path | None, str]:
    """(weights file, '') or (None, why not). A configured path that does not exist is an
    error (a typo must not turn into a silently unavailable metric)."""
    if name not in CACHE_FILES:
        raise DataError(f"unknown metric network {name!r}; known: {sorted(CACHE_FILES)}")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise DataError(f"metrics.networks.{name}: {path} is not a file")
        return path, ""
    cached = hub_dir() / "checkpoints" / CACHE_FILES[name]
    if cached.is_file():
        return cached, ""
    return None, (
        f"unavailable: no {name} weights (metrics.networks.{name} is null and {cached} does "
        "not exist; nothing is downloaded)"
    )
