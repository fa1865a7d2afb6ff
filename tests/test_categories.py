"""Category decoding (Mind Reader 3.4): the classifier, and AUC rows against hand computation."""

import numpy as np
import pytest

from fmridecode.io import DataError
from fmridecode.metrics.categories import category_auc_rows, multi_hot, train_classifier


def test_multi_hot():
    Y = multi_hot([{"a", "c"}, set(), {"b", "zzz"}], ["a", "b", "c"])
    np.testing.assert_array_equal(Y, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_auc_rows_match_the_pairwise_definition():
    """AUC = P(score of a positive > score of a negative), ties half: counted by hand."""
    rng = np.random.default_rng(0)
    Y = (rng.random((30, 4)) < 0.4).astype(float)
    Y[:, 2] = 0  # never shown in the test images
    scores = Y + rng.normal(scale=0.8, size=Y.shape)
    rows = category_auc_rows(scores, Y, list("abcd"), {"feature": "x"}, [True, True, True, False])
    by = {r["category"]: r for r in rows}
    pos, neg = scores[Y[:, 0] == 1, 0], scores[Y[:, 0] == 0, 0]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert by["a"]["value"] == pytest.approx(np.mean(pairs), abs=1e-12)
    assert by["a"]["chance"] == 0.5 and by["a"]["feature"] == "x"
    assert (
        np.isnan(by["c"]["value"])
        and by["c"]["status"] == "unavailable: 0 of 30 test images show it"
    )
    assert by["d"]["status"] == "unavailable: not in training images"
    assert by["mean"]["value"] == pytest.approx(np.mean([by["a"]["value"], by["b"]["value"]]))


def test_classifier_learns_categories_and_is_deterministic():
    rng = np.random.default_rng(1)
    Y = (rng.random((300, 5)) < 0.3).astype(np.float32)
    W = rng.normal(size=(5, 40))
    X = Y @ W + 0.5 * rng.normal(size=(300, 40))
    clf = train_classifier(X[:240], Y[:240], epochs=60, seed=3)
    assert 1 <= clf.epochs_run <= 60 and np.isfinite(clf.val_loss)
    probs = clf.predict(X[240:])
    assert probs.shape == (60, 5) and ((probs >= 0) & (probs <= 1)).all()
    mean = category_auc_rows(probs, Y[240:], list("abcde"), {})[-1]
    assert mean["category"] == "mean" and mean["value"] > 0.9
    again = train_classifier(X[:240], Y[:240], epochs=60, seed=3).predict(X[240:])
    np.testing.assert_array_equal(probs, again)
    # labels unrelated to the inputs: chance-level AUC
    shuffled = train_classifier(X[:240], Y[rng.permutation(240)], epochs=60, seed=3)
    chance = category_auc_rows(shuffled.predict(X[240:]), Y[240:], list("abcde"), {})[-1]
    assert abs(chance["value"] - 0.5) < 0.15
    with pytest.raises(DataError, match="non-finite"):
        train_classifier(np.full((10, 3), np.nan), Y[:10])


def test_category_decoding_rows_fmri_clip_and_mapped_clip():
    """The whole Mind Reader 3.4 flow on a case where voxels and embeddings both carry the
    labels: decoded embeddings equal to the true ones score what the clip classifier scores;
    a category absent from the training rows is unavailable; a missing decoded row fails."""
    from fmridecode.metrics.categories import category_decoding_rows

    rng = np.random.default_rng(2)
    classes = ["a", "b", "c", "held"]
    ids = [f"s{i:03d}" for i in range(200)]
    split = np.array(["train"] * 160 + ["test"] * 40)
    labels = {s: {c for c in classes[:3] if rng.random() < 0.4} for s in ids}
    for s in ids[160:170]:
        labels[s].add("held")  # only in test images: never learnable
    Y = multi_hot([labels[s] for s in ids], classes)
    X = Y @ rng.normal(size=(4, 30)) + 0.3 * rng.normal(size=(200, 30))
    clip = Y @ rng.normal(size=(4, 16)) + 0.3 * rng.normal(size=(200, 16))
    clip /= np.linalg.norm(clip, axis=1, keepdims=True)
    test_ids = ids[160:]
    order = rng.permutation(200)  # the caches' own row order: matched by stimulus id
    true = (clip[order], [ids[i] for i in order])
    decoded = {"perfect": (5 * clip[160:][::-1], test_ids[::-1])}  # any scale, any order
    rows = category_decoding_rows(X, split, ids, labels, classes, true, decoded,
                                  {"dataset": "d", "subject": "01"}, seed=0, epochs=40)  # fmt: skip
    mean = {(r["mapper"], r["feature"]): r["value"] for r in rows if r["category"] == "mean"}
    assert set(mean) == {("none", "fmri"), ("none", "clip"), ("perfect", "mapped_clip")}
    assert mean[("none", "fmri")] > 0.9 and mean[("none", "clip")] > 0.9, mean
    assert mean[("perfect", "mapped_clip")] == mean[("none", "clip")]
    held = [r for r in rows if r["category"] == "held"]
    assert len(held) == 3 and all(
        r["status"] == "unavailable: not in training images" for r in held
    )
    with pytest.raises(DataError, match="perfect decoded embeddings: no embedding for 1"):
        category_decoding_rows(X, split, ids, labels, classes, true,
                               {"perfect": (clip[161:], test_ids[1:])}, {}, epochs=2)  # fmt: skip
