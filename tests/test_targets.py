"""Decoding targets: alignment by stimulus id, text targets, low-res image targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmridecode.io import DataError
from fmridecode.mappers.targets import align, lowres_images, lowres_targets, text_embeddings


def test_lowres_targets_are_block_means_and_invert():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, :2, :2, 0] = 255  # top-left 2x2 block fully red
    img[0, 2:, 2:, 2] = [[0, 255], [255, 0]]  # bottom-right block half blue
    t = lowres_targets(img, 2)
    assert t.shape == (1, 12) and t.dtype == np.float32
    grid = t.reshape(2, 2, 3)
    np.testing.assert_allclose(grid[0, 0], [1, 0, 0])
    np.testing.assert_allclose(grid[1, 1], [0, 0, 0.5])
    back = lowres_images(t, 2)
    assert back.dtype == np.uint8 and back[0, 0, 0].tolist() == [255, 0, 0]
    assert back[0, 1, 1].tolist() == [0, 0, 128]
    # predictions outside [0, 1] are clipped, not wrapped
    assert lowres_images(np.full((1, 12), 1.7), 2).max() == 255
    assert lowres_images(np.full((1, 12), -0.3), 2).min() == 0


def test_lowres_errors_name_the_problem():
    with pytest.raises(DataError, match="does not divide"):
        lowres_targets(np.zeros((1, 10, 10, 3), np.uint8), 4)
    with pytest.raises(DataError, match="uint8"):
        lowres_targets(np.zeros((1, 8, 8, 3), np.float32), 4)
    with pytest.raises(DataError, match="non-finite"):
        lowres_images(np.full((1, 48), np.nan), 4)
    with pytest.raises(DataError, match=r"\(N, 48\)"):
        lowres_images(np.zeros((1, 12)), 4)


def test_text_embeddings_and_align_by_id():
    cap = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    index = pd.DataFrame({"stim_id": ["b", "b", "a"]})
    emb, ids = text_embeddings(cap, index)
    assert ids == ["a", "b"]
    np.testing.assert_allclose(emb[1], [2**-0.5, 2**-0.5], atol=1e-6)
    np.testing.assert_array_equal(align(emb, ids, ["b", "a"], "t"), emb[[1, 0]])
    with pytest.raises(DataError, match="e.g. \\['zz'\\]"):
        align(emb, ids, ["zz"], "t")
