"""The reconstruction metric rows (PixCorr, SSIM, 2-way identification), defined once.

Used by the ``metrics_recon`` rule and by the noise-sensitivity analysis, so both tables score
reconstructions the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fmridecode.metrics.identification import two_way_identification
from fmridecode.metrics.image import pixcorr, resize, ssim


def recon_rows(
    recons: np.ndarray,
    stimuli: np.ndarray,
    recon_emb: np.ndarray,
    true_emb: np.ndarray,
    image_size: int,
    base: Mapping[str, Any],
) -> list[dict]:
    """Metric rows of one set of reconstructions against the stimuli they decode.

    ``recons`` and ``stimuli`` are uint8 (N, H, W, 3) in the same order (any sizes: both are
    resized to ``image_size`` for PixCorr and SSIM); ``recon_emb`` and ``true_emb`` (N, D) are
    the CLIP image embeddings of the reconstructions and of the stimuli (2-way identification
    against all other test images). ``base`` holds the identifying columns of every row.
    """
    a, b = resize(recons, image_size), resize(stimuli, image_size)
    base = {**base, "target": "image", "n": len(recons)}
    return [
        {**base, "metric": "pixcorr", "value": pixcorr(a, b)},
        {**base, "metric": "ssim", "value": ssim(a, b)},
        {
            **base,
            "metric": "two_way_identification",
            "feature": "embedding",
            "value": two_way_identification(recon_emb, true_emb),
            "chance": 0.5,
        },
    ]
