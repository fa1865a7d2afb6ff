"""Per-image random streams: every generator seeds image i from (seed, i), never from batching.

Drawing each image's noise from its own generator makes a row's result independent of the
batch size and of which call made it, so a killed run resumes with the images an
uninterrupted run gives (``generators.resume``).
"""

from __future__ import annotations

import numpy as np
import torch


def row_generator(seed: int, row: int) -> torch.Generator:
    """A CPU generator seeded from (seed, row): noise per image, independent of batching."""
    state = np.random.SeedSequence([seed, row]).generate_state(2)  # two uint32 words
    return torch.Generator("cpu").manual_seed(int(state[0]) << 31 ^ int(state[1]))
