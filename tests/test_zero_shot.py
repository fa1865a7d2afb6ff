"""Zero-shot classification: prompt-ensemble class embeddings and the top-k metric."""

from math import comb

import numpy as np
import open_clip
import pytest

from fmridecode.embeddings.cache import embed_texts
from fmridecode.embeddings.model import SMALL_MODEL_NAME, create_untrained
from fmridecode.embeddings.prompts import TEMPLATES, class_embeddings
from fmridecode.io import DataError
from fmridecode.metrics.zero_shot import zero_shot_rows

CLASSES = list("abcdefg")
HELD_OUT = {"f", "g"}
EYE = np.eye(7)


def _rows(pred, labels, **kw):
    rows = zero_shot_rows(np.asarray(pred, float), labels, EYE, CLASSES, HELD_OUT, {}, **kw)
    return {r["metric"]: r for r in rows}


def test_hand_case_over_all_classes():
    pred = [
        EYE[5],  # shows f: ranked first
        [5, 4, 3, 2, 1, 0, 0.5],  # shows g: ranked 6th of 7
        EYE[0],  # shows no held-out category: not scored
    ]
    rows = _rows(pred, [{"f", "a"}, {"g"}, {"a"}])
    assert rows["zero_shot_top1"]["value"] == 0.5 and rows["zero_shot_top1"]["n"] == 2
    assert rows["zero_shot_top5"]["value"] == 0.5
    assert rows["zero_shot_top1"]["chance"] == pytest.approx(1 / 7)
    assert rows["zero_shot_top5"]["chance"] == pytest.approx(1 - comb(6, 5) / comb(7, 5))


def test_held_out_candidates_only_and_unavailable_cases():
    pred = [EYE[5], [5, 4, 3, 2, 1, 0, 0.5]]
    rows = _rows(pred, [{"f"}, {"g"}], candidates="held_out")
    assert rows["zero_shot_top1"]["value"] == 1.0 and rows["zero_shot_top1"]["chance"] == 0.5
    top5 = rows["zero_shot_top5"]  # 5 of 2 candidates: trivial, so not a number
    assert np.isnan(top5["value"]) and "trivial" in top5["status"]
    none = _rows([EYE[0]], [{"a"}])
    assert all(np.isnan(r["value"]) and "no test image" in r["status"] for r in none.values())
    with pytest.raises(DataError, match="'all' or 'held_out'"):
        _rows(pred, [{"f"}, {"g"}], candidates="some")


def test_prompt_ensemble_is_the_normalised_mean_over_templates():
    model = create_untrained(SMALL_MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(SMALL_MODEL_NAME)
    assert len(TEMPLATES) == 18 and TEMPLATES[:2] == ("a photo of a {}.", "a blurry photo of a {}.")
    emb = class_embeddings(model, tokenizer, ["red star", "blue ring"])
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    each = embed_texts(model, tokenizer, [t.format("blue ring") for t in TEMPLATES])
    mean = each.mean(axis=0)
    np.testing.assert_allclose(emb[1], mean / np.linalg.norm(mean), atol=1e-6)
    with pytest.raises(DataError, match="exactly one"):
        class_embeddings(model, tokenizer, ["x"], templates=["no slot"])


def test_embedding_zero_shot_scores_the_true_embeddings():
    from fmridecode.metrics.zero_shot import embedding_zero_shot

    classes = ["cat", "dog", "car", "tree", "boat", "cup", "hat"]
    class_emb = np.eye(7, dtype=np.float32)
    # image i shows class i; its true embedding is near its class for a, b, and wrong for c
    rows = np.eye(7, dtype=np.float32)[[0, 1, 3]] + 0.05
    targets = {"image": (rows, ["a", "b", "c"])}
    labels = {"a": {"cat"}, "b": {"dog"}, "c": {"car"}}
    q = embedding_zero_shot(targets, labels, class_emb, classes, {"cat", "dog", "car"},
                            ["a", "b", "c"])  # fmt: skip
    assert q["clip_image_zero_shot_top1"] == pytest.approx(2 / 3)
    assert q["clip_zero_shot_n"] == 3
    assert q["clip_zero_shot_top1_chance"] == pytest.approx(1 / 7)
