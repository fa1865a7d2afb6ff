"""Caption screening and outlier clamping (Mind Reader), and the caption choices of targets."""

import numpy as np
import pandas as pd
import pytest

from fmridecode.embeddings.clamp import clamp_outliers
from fmridecode.embeddings.screening import kept_captions, screen_captions
from fmridecode.io import DataError, load_indexed, save_indexed_chunks
from fmridecode.mappers.targets import text_embeddings
from fmridecode.mappers.zoo import subject_data


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _hand_made():
    """Two images; each has a matching caption, a near one and an unrelated one."""
    img = _unit(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    caps = _unit(np.array([
        [1.0, 0.05, 0, 0], [1.0, 0.1, 0.1, 0], [0, 0, 0, 1.0],      # image a
        [0.05, 1.0, 0, 0], [0, 0, 1.0, 0], [0.1, 0.95, 0.2, 0],    # image b
    ]))  # fmt: skip
    image_index = pd.DataFrame({"stim_id": ["a", "b"], "split": ["train", "test"]})
    cap_index = pd.DataFrame({"stim_id": list("aaabbb"), "caption_idx": [0, 1, 2, 0, 1, 2],
                              "kind": ["detailed", "detailed", "vague"] * 2})  # fmt: skip
    return img, image_index, caps, cap_index


def test_screening_keeps_matching_captions_and_drops_unrelated_ones():
    img, image_index, caps, cap_index = _hand_made()
    table = screen_captions(img, image_index, caps, cap_index, logit_scale=20.0, keep_ratio=0.5)
    assert list(table["kept"]) == [True, True, False, True, False, True]
    assert list(table["rank"]) == [1, 2, 3, 1, 3, 2]
    np.testing.assert_allclose(table.groupby("stim_id")["prob"].sum(), 1.0, rtol=1e-6)
    # the probabilities are CLIP's softmax over the image's own captions
    logits = 20.0 * caps[:3] @ img[0]
    np.testing.assert_allclose(table["prob"][:3], np.exp(logits) / np.exp(logits).sum(), 1e-5)
    emb, index = kept_captions(caps, table)
    assert emb.shape == (4, 4) and list(index["caption_idx"]) == [0, 1, 0, 2]
    assert {"prob", "rank", "kind"} <= set(index.columns)


def test_screening_keep_ratio_bounds_and_errors():
    img, image_index, caps, cap_index = _hand_made()
    every = screen_captions(img, image_index, caps, cap_index, 20.0, keep_ratio=0.0)
    assert every["kept"].all()
    only_best = screen_captions(img, image_index, caps, cap_index, 20.0, keep_ratio=1.0)
    assert list(only_best["kept"]) == list(only_best["rank"] == 1)  # the best always stays
    with pytest.raises(DataError, match="keep_ratio"):
        screen_captions(img, image_index, caps, cap_index, 20.0, keep_ratio=1.5)
    with pytest.raises(DataError, match="no embedding"):
        screen_captions(img[:1], image_index[:1], caps, cap_index, 20.0)
    with pytest.raises(DataError, match="logit_scale"):
        screen_captions(img, image_index, caps, cap_index, 0.0)


def test_clamp_outlier_dimensions_only():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(200, 16)).astype(np.float32)
    raw[:, 3] += 40.0  # one fixed outlier dimension, as CLIP has
    fit = np.arange(200) < 150
    out, report = clamp_outliers(raw, fit, 4.0, "image")
    scale = np.median(np.sqrt(np.mean(raw[fit].astype(np.float64) ** 2, axis=0)))
    assert list(report["dim"]) == [3] and report["n_clamped"].iloc[0] == 200
    np.testing.assert_allclose(out[:, 3], 4.0 * scale, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(out, 3, 1), np.delete(raw, 3, 1))
    assert report["max_abs_over_scale"].iloc[0] > 30.0
    same, none = clamp_outliers(raw, fit, None, "image")
    assert none.empty and np.array_equal(same, raw)
    # the threshold comes from the non-test rows only
    raw[190:, 5] = 1e4
    _, report = clamp_outliers(raw, fit, 4.0, "image")
    assert report.set_index("dim").loc[5, "n_clamped"] == 10


def test_clamp_rejects_bad_input():
    with pytest.raises(DataError, match="non-finite"):
        clamp_outliers(np.array([[np.nan, 1.0]]), np.array([True]), 3.0, "caption")
    with pytest.raises(DataError, match="> 0"):
        clamp_outliers(np.ones((2, 2)), np.array([True, True]), 0.0, "caption")
    with pytest.raises(DataError, match="no non-test"):
        clamp_outliers(np.ones((2, 2)), np.array([False, False]), 3.0, "caption")


def test_caption_choices_make_the_text_targets():
    img, image_index, caps, cap_index = _hand_made()
    table = screen_captions(img, image_index, caps, cap_index, 20.0, keep_ratio=0.0)
    mean, ids = text_embeddings(caps, table)
    best, _ = text_embeddings(caps, table, "best")
    assert ids == ["a", "b"]
    np.testing.assert_allclose(best, caps[[0, 3]], atol=1e-6)
    np.testing.assert_allclose(mean[0], _unit(caps[:3].mean(0, keepdims=True))[0], atol=1e-6)
    np.testing.assert_array_equal(text_embeddings(caps, table, "all")[0], mean)
    with pytest.raises(ValueError, match="caption choice"):
        text_embeddings(caps, table, "first")


def test_subject_data_orders_captions_by_rank_and_expands_all():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(12)]
    vindex = pd.DataFrame({"stim_id": ids, "split": ["train"] * 10 + ["test"] * 2})
    X = rng.normal(size=(12, 5)).astype(np.float32)
    emb = _unit(rng.normal(size=(12, 4)))
    image_index = pd.DataFrame({"stim_id": ids})
    n_caps = [1 + i % 3 for i in range(12)]  # 1, 2 or 3 kept captions
    cap_ids = [s for s, k in zip(ids, n_caps, strict=True) for _ in range(k)]
    caps = _unit(rng.normal(size=(len(cap_ids), 4)))
    rank = [r for k in n_caps for r in range(k, 0, -1)]  # best caption last in row order
    cap_index = pd.DataFrame({"stim_id": cap_ids, "rank": rank})
    train, val, _, _ = subject_data(X, vindex, emb, image_index, caps, cap_index, 0.2, 0,
                                    caption="best")  # fmt: skip
    # "best": every row's text target is its image's rank-1 caption (last in row order here)
    best = {tuple(np.round(v, 6)) for v in caps[(cap_index["rank"] == 1).to_numpy()]}
    assert all(tuple(np.round(t, 6)) in best for t in train.text(None))
    assert all(np.allclose(c[0], t) for c, t in zip(train.captions, train.text(None), strict=True))
    every, val2, _, _ = subject_data(X, vindex, emb, image_index, caps, cap_index, 0.2, 0,
                                     caption="all")  # fmt: skip
    assert len(every.x) == sum(len(c) for c in train.captions) > len(train.x)
    assert len(val2.x) == len(val.x)  # validation rows are never expanded
    assert np.array_equal(np.unique(every.x, axis=0), np.unique(train.x, axis=0))
    with pytest.raises(ValueError, match="caption must be"):
        subject_data(X, vindex, emb, image_index, caps, cap_index, 0.2, 0, caption="first")


def test_save_indexed_chunks_streams_and_checks(tmp_path):
    rows = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    index = pd.DataFrame({"stim_id": list("abcdef")})
    path = tmp_path / "tok.npy"
    save_indexed_chunks(path, rows.shape, "float16", (rows[i : i + 4] for i in (0, 4)), index)
    arr, idx = load_indexed(path)
    assert (
        arr.dtype == np.float16
        and np.array_equal(arr, rows)
        and list(idx["stim_id"]) == list("abcdef")
    )
    with pytest.raises(DataError, match="4 rows were written"):
        save_indexed_chunks(tmp_path / "short.npy", rows.shape, "float32", [rows[:4]], index)
    bad = rows.copy()
    bad[5, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        save_indexed_chunks(tmp_path / "nan.npy", rows.shape, "float32", [bad], index)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.index.parquet", "tok.npy"]


def test_augmented_views_are_seeded_per_image_and_view():
    from fmridecode.embeddings.augment import augment_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    a = augment_images(images, 2, seed=5)
    assert a.shape == (3, 2, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, augment_images(images, 2, seed=5))
    assert not np.array_equal(a, augment_images(images, 2, seed=6))
    assert not np.array_equal(a[:, 0], a[:, 1])
    flat = np.full((1, 32, 32, 3), 100, np.uint8)  # a crop of a flat image stays flat
    out = augment_images(flat, 4, seed=0, jitter=0.0)
    assert (out == 100).all()
    with pytest.raises(DataError, match="views >= 1"):
        augment_images(images, 0, seed=0)


def test_image_views_are_drawn_per_row_and_epoch():
    from fmridecode.mappers.training import MapperData

    x = np.zeros((50, 3), np.float32)
    image = np.zeros((50, 2), np.float32)
    views = np.stack([np.full((50, 2), 1.0), np.full((50, 2), 2.0)], axis=1).astype(np.float32)
    data = MapperData(x, {"image": image}, image_views=views)
    drawn = data.tensors(np.random.default_rng(0))["image"][:, 0]
    assert set(np.unique(drawn)) == {0.0, 1.0, 2.0}  # the image itself or one of its views
    np.testing.assert_array_equal(data.tensors(None)["image"], image)  # evaluation: the image
    with pytest.raises(DataError, match="image views"):
        MapperData(x, {"image": image}, image_views=views[:10])


def test_augmented_view_embeddings_are_unit_norm_clamped_and_seeded(tmp_path):
    import open_clip
    import torch

    from fmridecode.embeddings.cache import embed_views
    from fmridecode.embeddings.model import create_untrained, image_norm
    from fmridecode.embeddings.tokens import encode_images
    from fmridecode.io import save_indexed
    from fmridecode.mappers.zoo import load_image_views

    torch.manual_seed(0)
    model = create_untrained().eval()
    mean, std, size = image_norm(model)
    preprocess = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    a = embed_views(model, preprocess, images, 2, seed=1)
    dim = model.text_projection.shape[1]
    assert a.shape == (3, 2, dim) and np.allclose(np.linalg.norm(a, axis=-1), 1)
    np.testing.assert_array_equal(a, embed_views(model, preprocess, images, 2, seed=1))
    raw, _ = encode_images(model, preprocess, images)
    tight = float(np.quantile(np.abs(raw), 0.005))  # a threshold that clamps nearly every value
    b = embed_views(model, preprocess, images, 2, seed=1, threshold=tight)
    # clamped to +-tight before normalising: nearly every entry has the row's largest magnitude
    share = np.isclose(np.abs(b), np.abs(b).max(axis=-1, keepdims=True), rtol=1e-5).mean()
    assert share > 0.9 and not np.allclose(a, b), share
    save_indexed(tmp_path / "views.npy", a, pd.DataFrame({"stim_id": ["x", "y", "z"]}))
    emb, ids = load_image_views([str(tmp_path / "views.npy")])
    assert ids == ["x", "y", "z"] and np.array_equal(emb, a)
    assert load_image_views([]) is None
