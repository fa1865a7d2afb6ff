"""Resumable generation: a killed run picks up at the first missing chunk, same images."""

from __future__ import annotations

import numpy as np
import pytest

from fmridecode.generators.resume import clear, generate_resumable, run_key


def make_rows(start: int, stop: int) -> np.ndarray:
    """Stand-in generator: row i depends only on i (as the real ones, seeded per row)."""
    return np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(start, stop)])


def test_killed_run_resumes_with_the_same_rows(tmp_path) -> None:
    calls = []

    def dies_after_two(a: int, b: int) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append((a, b))
        return make_rows(a, b)

    key = run_key(np.arange(10), {"steps": 4})
    with pytest.raises(KeyboardInterrupt):
        generate_resumable(dies_after_two, 10, 3, tmp_path / "cache", key, progress=False)
    assert sorted(p.name for p in (tmp_path / "cache" / key).iterdir()) == [
        "rows-0-3.npy",
        "rows-3-6.npy",
    ]
    made = []

    def counting(a: int, b: int) -> np.ndarray:
        made.append((a, b))
        return make_rows(a, b)

    rows, reused = generate_resumable(counting, 10, 3, tmp_path / "cache", key, progress=False)
    assert reused == 2 and made == [(6, 9), (9, 10)]
    np.testing.assert_array_equal(rows, make_rows(0, 10))
    clear(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_changed_inputs_never_reuse_chunks(tmp_path) -> None:
    a = run_key(np.zeros(3, np.float32), {"steps": 4})
    assert a == run_key(np.zeros(3, np.float32), {"steps": 4})
    assert a != run_key(np.zeros(3, np.float32), {"steps": 5})
    assert a != run_key(np.ones(3, np.float32), {"steps": 4})
    assert a != run_key(np.zeros(3, np.float64), {"steps": 4})
    with pytest.raises(ValueError, match="returned 1 rows"):
        generate_resumable(lambda s, e: make_rows(0, 1), 4, 2, tmp_path, a, progress=False)


def test_best_of_resumable_keeps_samples_apart(tmp_path) -> None:
    from fmridecode.generators.resume import best_of_resumable

    made = []

    def make(k: int, a: int, b: int) -> np.ndarray:
        made.append((k, a, b))
        return make_rows(a, b) + 50 * k

    def embed(images: np.ndarray) -> np.ndarray:  # sample 1 is brighter: closer to target
        return np.stack([[1.0, float(im.mean())] for im in images])

    target = np.tile([0.0, 1.0], (4, 1))
    key = (np.arange(4), {"s": 1})
    best = best_of_resumable(make, 4, 2, tmp_path, key, 2, embed, target)
    np.testing.assert_array_equal(best, make_rows(0, 4) + 50)  # sample 1 chosen everywhere
    assert len(made) == 4  # 2 samples x 2 chunks, each made once
    again = best_of_resumable(make, 4, 2, tmp_path, key, 2, embed, target)
    np.testing.assert_array_equal(again, best)
    assert len(made) == 4  # a rerun reuses every chunk of both samples


def test_sample_seeds_and_partial_folder(tmp_path) -> None:
    from fmridecode.generators.resume import clip_embedder, partial_dir, sample_seed

    assert sample_seed(5, 0) == 5 and len({sample_seed(5, k) for k in range(10)}) == 10
    assert partial_dir(tmp_path / "g" / "recons.npy") == tmp_path / "g" / ".partial"
    # a single sample is never scored: no CLIP model is needed (not even a loadable one)
    assert clip_embedder(1, "no-such-model", None)(np.zeros((3, 4, 4, 3))).shape == (3, 0)
