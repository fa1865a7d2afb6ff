"""Unit tests of the embedding stage: open_clip registration/loading, training, caches."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from devices import DEVICES

from fmridecode.embeddings import (
    embed_images,
    embed_texts,
    load_model,
    register_config,
    register_small_model,
    retrieval_top1,
    small_model_config,
    train_clip,
    write_caches,
)
from fmridecode.embeddings.cache import load_pooled, save_pooled, write_token_caches
from fmridecode.embeddings.model import create_untrained, save_checkpoint
from fmridecode.embeddings.tokens import encode_images
from fmridecode.io import DataError, file_sha256, load_indexed, save_indexed, write_parquet
from fmridecode.mappers.targets import align, text_embeddings

TINY = "fmridecode-test-tiny"
TINY_KW = dict(
    embed_dim=32,
    image_size=32,
    vision_width=8,
    text_width=64,
    text_layers=1,
    text_heads=2,
    context_length=16,
)
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 50, 230),
    "yellow": (235, 220, 30),
    "white": (245, 245, 245),
    "purple": (160, 40, 190),
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def colour_squares(n_per_colour: int, seed: int, size: int = 32):
    """Solid colour squares of random size/position on dark noisy backgrounds, with captions."""
    rng = np.random.default_rng(seed)
    images, ids, rows, labels = [], [], [], []
    for c, rgb in enumerate(COLOURS.values()):
        for k in range(n_per_colour):
            img = rng.integers(0, 50, (size, size, 3)).astype(np.uint8)
            s = int(rng.integers(size // 3, size // 2 + 1))
            y, x = rng.integers(0, size - s, 2)
            img[y : y + s, x : x + s] = rgb
            images.append(img)
            labels.append(c)
            ids.append(f"s{seed}c{c}k{k}")
    names = list(COLOURS)
    for sid, c in zip(ids, labels, strict=True):
        rows.append((sid, 0, f"a {names[c]} square", "detailed"))
        rows.append((sid, 1, f"{names[c]}", "colour_shape"))
    captions = pd.DataFrame(rows, columns=["stim_id", "caption_idx", "caption", "kind"])
    return np.stack(images), ids, captions, np.array(labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for a few seconds on colour squares (shared by several tests)."""
    torch.set_num_threads(1)
    images, ids, captions, _ = colour_squares(16, seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    stats = train_clip(
        images, captions, ids, path,
        model_name=TINY, model_kwargs=TINY_KW, epochs=25, max_minutes=None,
        batch_size=32, lr=3e-3, warmup_steps=10, seed=0, progress=False,
    )  # fmt: skip
    return path, stats


def test_register_is_idempotent_and_refuses_builtin_names():
    assert register_small_model(TINY, **TINY_KW) == TINY
    assert register_small_model(TINY, **TINY_KW) == TINY
    assert open_clip.get_model_config(TINY) == small_model_config(**TINY_KW)
    assert open_clip.get_tokenizer(TINY).context_length == TINY_KW["context_length"]
    with pytest.raises(ValueError, match="RN50"):
        register_config("RN50", small_model_config())


def test_checkpoint_loads_through_open_clip_with_identical_embeddings(tmp_path):
    register_small_model(TINY, **TINY_KW)
    torch.manual_seed(3)
    model = create_untrained(TINY)
    with torch.no_grad():  # move BatchNorm running stats away from their defaults
        model(torch.randn(8, 3, 32, 32), None)
    model.eval()
    path = save_checkpoint(model, TINY, tmp_path / "m.pt")
    images, _, captions, _ = colour_squares(2, seed=1)
    texts = captions["caption"].tolist()
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)
    tokenizer = open_clip.get_tokenizer(TINY)
    ref_img = embed_images(model, preprocess, images)
    ref_txt = embed_texts(model, tokenizer, texts)

    # straight through open_clip's own factory, with our file as `pretrained`
    loaded, _, preprocess2 = open_clip.create_model_and_transforms(TINY, pretrained=str(path))
    loaded.eval()
    np.testing.assert_allclose(embed_images(loaded, preprocess2, images), ref_img, atol=1e-6)
    np.testing.assert_allclose(embed_texts(loaded, tokenizer, texts), ref_txt, atol=1e-6)

    # through load_model under a name never registered: the config comes from the checkpoint
    other, preprocess3, tokenizer3 = load_model("fmridecode-test-fromckpt", path)
    assert not other.training
    np.testing.assert_allclose(embed_images(other, preprocess3, images), ref_img, atol=1e-6)
    np.testing.assert_allclose(embed_texts(other, tokenizer3, texts), ref_txt, atol=1e-6)

    # a random model differs (the comparison above can fail)
    torch.manual_seed(4)
    fresh = create_untrained(TINY).eval()
    assert not np.allclose(embed_images(fresh, preprocess, images), ref_img, atol=1e-3)


def test_missing_checkpoint_error_names_the_file(tmp_path):
    missing = tmp_path / "no_such_model.pt"
    with pytest.raises(DataError, match="no_such_model.pt"):
        load_model("fmridecode-small", missing)
    with pytest.raises(DataError, match="no_such_model.pt"):
        load_model("ViT-B-32", missing)  # not a tag and not a file: no download attempted


def test_training_lowers_loss_and_retrieves_colours(trained):
    path, stats = trained
    losses = stats["loss_per_epoch"]
    assert stats["epochs_run"] == 25 and stats["stop_reason"] == "epochs"
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]

    model, preprocess, tokenizer = load_model(TINY, path)
    images, _, _, labels = colour_squares(5, seed=7)  # new images, same colours
    names = list(COLOURS)
    img = embed_images(model, preprocess, images)
    txt = embed_texts(model, tokenizer, [f"a {c} square" for c in names])
    sim = img @ txt.T
    image_to_text = np.mean(sim.argmax(axis=1) == labels)
    # text -> image: the 5 most similar images of each caption should have its colour
    top5 = np.argsort(-sim, axis=0)[:5]
    text_to_image = np.mean(labels[top5] == np.arange(len(names))[None, :])
    chance = 1 / len(names)
    assert image_to_text >= 0.8, image_to_text
    assert text_to_image >= 0.8 > 3 * chance, text_to_image


def test_training_is_deterministic_for_a_seed(tmp_path):
    images, ids, captions, _ = colour_squares(3, seed=2)
    kw = dict(
        model_name=TINY, model_kwargs=TINY_KW, epochs=2, batch_size=8, lr=1e-3, progress=False
    )
    a = train_clip(images, captions, ids, tmp_path / "a.pt", seed=5, **kw)
    b = train_clip(images, captions, ids, tmp_path / "b.pt", seed=5, **kw)
    c = train_clip(images, captions, ids, tmp_path / "c.pt", seed=6, **kw)
    assert a["loss_per_epoch"] == b["loss_per_epoch"]
    assert a["loss_per_epoch"] != c["loss_per_epoch"]
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_time_limit_stops_training_and_says_so(tmp_path):
    images, ids, captions, _ = colour_squares(2, seed=3)
    stats = train_clip(
        images, captions, ids, tmp_path / "t.pt", model_name=TINY, model_kwargs=TINY_KW,
        epochs=1000, max_minutes=1e-4, batch_size=6, seed=0, progress=False,
        out_stats=tmp_path / "t.json",
    )  # fmt: skip
    assert stats["stop_reason"] == "max_minutes"
    assert 1 <= stats["epochs_run"] < 1000
    assert (tmp_path / "t.pt").is_file() and (tmp_path / "t.json").is_file()


def test_training_rejects_bad_input(tmp_path):
    images, ids, captions, _ = colour_squares(2, seed=4)
    kw = dict(model_name=TINY, model_kwargs=TINY_KW, epochs=1, batch_size=4, progress=False)
    with pytest.raises(DataError, match="image_ids"):
        train_clip(images, captions, ids[:-1], tmp_path / "x.pt", **kw)
    no_caption = captions[captions["stim_id"] != ids[0]]
    with pytest.raises(DataError, match=ids[0]):
        train_clip(images, no_caption, ids, tmp_path / "x.pt", **kw)
    with pytest.raises(DataError, match="uint8"):
        train_clip(images.astype(np.float32), captions, ids, tmp_path / "x.pt", **kw)


def test_embeddings_unit_norm_and_deterministic(trained):
    model, preprocess, tokenizer = load_model(TINY, trained[0])
    images, _, captions, _ = colour_squares(2, seed=5, size=64)  # 64 px into a 32 px model
    a = embed_images(model, preprocess, images, batch_size=5)
    b = embed_images(model, preprocess, images, batch_size=256)
    assert a.dtype == np.float32 and a.shape == (len(images), TINY_KW["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)  # batching does not matter (eval-mode BN)
    t = embed_texts(model, tokenizer, captions["caption"].tolist(), batch_size=3)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    again = embed_texts(model, tokenizer, captions["caption"].tolist())
    np.testing.assert_allclose(t, again, atol=1e-6)
    assert not np.allclose(t[0], t[1])


def test_write_caches_follows_the_contract(trained, tmp_path):
    stim = tmp_path / "stimuli"
    images, ids, captions, labels = colour_squares(2, seed=6)
    split = np.where(np.arange(len(ids)) % 3 == 0, "test", "train")
    index = pd.DataFrame({"stim_id": ids, "split": split, "subjects": "sub-01"})
    save_indexed(stim / "images.npy", images, index)
    write_parquet(captions, stim / "captions.parquet")

    summary = write_caches(TINY, trained[0], stim, tmp_path / "embed")
    img, img_index = load_indexed(tmp_path / "embed" / "image.npy")
    cap, cap_index = load_indexed(tmp_path / "embed" / "caption.npy")
    assert list(img_index.columns) == ["stim_id", "split"]
    assert list(cap_index.columns) == ["stim_id", "caption_idx", "kind"]
    assert img_index["stim_id"].tolist() == ids and img_index["split"].tolist() == split.tolist()
    assert summary["n_images"] == len(ids) and summary["n_captions"] == len(captions)
    assert img.dtype == np.float32 and cap.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cap, axis=1), 1.0, atol=1e-5)
    model, preprocess, tokenizer = load_model(TINY, trained[0])
    np.testing.assert_allclose(img, embed_images(model, preprocess, images), atol=1e-6)

    # text targets: mean of each image's captions, renormalised; matches its own image best
    text_emb, text_ids = text_embeddings(cap, cap_index)
    targets = align(text_emb, text_ids, ids, "text targets")
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    first = cap[cap_index["stim_id"] == ids[0]].mean(axis=0)
    np.testing.assert_allclose(targets[0], first / np.linalg.norm(first), atol=1e-6)
    same_colour = labels[(targets @ img.T).argmax(axis=1)] == labels
    assert same_colour.mean() >= 0.8

    # the model's identity beside the caches: the weights' checksum is the cache key's core
    identity = json.loads((tmp_path / "embed" / "model.json").read_text())
    assert identity["weights_sha256"] == file_sha256(trained[0]) and identity["logit_scale"] > 1
    assert pd.read_parquet(tmp_path / "embed" / "clamped.parquet").empty  # clamp None: off

    # token-level caches, streamed in chunks of 3 items: the encoder's states, in float16
    out = {"image": tmp_path / "tok" / "image.npy", "caption": tmp_path / "tok" / "caption.npy"}
    shapes = write_token_caches(TINY, trained[0], stim, out, dtype="float16", chunk=3)
    tok, tok_index = load_indexed(out["image"])
    _, ref = encode_images(model, preprocess, images, tokens=True)
    assert tok.dtype == np.float16 and list(tok.shape) == shapes["image"] == list(ref.shape)
    np.testing.assert_allclose(tok, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    assert tok_index["stim_id"].tolist() == ids
    ctok, ctok_index = load_indexed(out["caption"])
    assert ctok.shape[0] == len(captions) and ctok_index.columns.tolist() == list(cap_index.columns)

    bad = pd.concat([captions, captions.iloc[:1].assign(stim_id="ghost")])
    write_parquet(bad, stim / "captions.parquet")
    with pytest.raises(DataError, match="captions.parquet"):
        write_caches(TINY, trained[0], stim, tmp_path / "embed2")


def test_float16_pooled_caches_halve_the_file_and_read_back_as_float32_unit_rows(trained, tmp_path):
    stim = tmp_path / "stimuli"
    images, ids, captions, _ = colour_squares(2, seed=6)
    split = np.where(np.arange(len(ids)) % 3 == 0, "test", "train")
    save_indexed(stim / "images.npy", images, pd.DataFrame({"stim_id": ids, "split": split}))
    write_parquet(captions, stim / "captions.parquet")
    full = write_caches(TINY, trained[0], stim, tmp_path / "f32", clamp=6.0)
    half = write_caches(TINY, trained[0], stim, tmp_path / "f16", clamp=6.0, dtype="float16")
    assert (full["dtype"], half["dtype"]) == ("float32", "float16")
    for name in ("image", "caption"):
        stored = np.load(tmp_path / "f16" / f"{name}.npy")
        assert stored.dtype == np.float16
        ref, ref_index = load_pooled(tmp_path / "f32" / f"{name}.npy")
        rows, index = load_pooled(tmp_path / "f16" / f"{name}.npy")
        pd.testing.assert_frame_equal(index, ref_index)
        assert rows.dtype == np.float32 and ref.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(rows, ref, atol=1e-3)  # float16 rounding only
        assert (rows @ rows.T).argmax(1).tolist() == (ref @ ref.T).argmax(1).tolist()
        data = rows.shape[0] * rows.shape[1]
        size = (tmp_path / "f16" / f"{name}.npy").stat().st_size
        assert size - 2 * data == (tmp_path / "f32" / f"{name}.npy").stat().st_size - 4 * data
    # float32 caches come back exactly as written; views (N, V, D) normalised on the last axis
    assert np.array_equal(
        load_pooled(tmp_path / "f32" / "image.npy")[0], np.load(tmp_path / "f32" / "image.npy")
    )
    views = np.random.default_rng(0).standard_normal((4, 3, 8)).astype(np.float32)
    views /= np.linalg.norm(views, axis=-1, keepdims=True)
    save_pooled(tmp_path / "views.npy", views, pd.DataFrame({"stim_id": list("abcd")}), "float16")
    back, _ = load_pooled(tmp_path / "views.npy")
    assert back.shape == views.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, views, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1.0, atol=1e-6)
    # refused: other storage types, and caches that are not embeddings
    bad_type = "pooled caches: dtype must be float16 or float32, got 'bfloat16'"
    with pytest.raises(DataError, match=bad_type):
        write_caches(TINY, trained[0], stim, tmp_path / "bad", dtype="bfloat16")
    with pytest.raises(DataError, match="views.npy: dtype must be float16 or float32"):
        save_pooled(tmp_path / "views.npy", views, pd.DataFrame({"stim_id": list("abcd")}), "int8")
    save_indexed(tmp_path / "u8.npy", images[:2], pd.DataFrame({"stim_id": ["a", "b"]}))
    with pytest.raises(DataError, match="u8.npy: an embedding cache must be float16 or float32"):
        load_pooled(tmp_path / "u8.npy")
    zero = np.zeros((2, 8), np.float16)
    save_indexed(tmp_path / "zero.npy", zero, pd.DataFrame({"stim_id": ["a", "b"]}))
    with pytest.raises(DataError, match="zero.npy: non-finite or all-zero"):
        load_pooled(tmp_path / "zero.npy")


@pytest.mark.parametrize("device", DEVICES)
def test_half_precision_compute_stays_within_rounding_of_float32(trained, tmp_path, device):
    """embed.dtype.compute: float16 autocast (auto's choice on CUDA) gives the float32
    embeddings to half-precision rounding, on the CPU and on CUDA; auto on the CPU is float32."""
    stim = tmp_path / "stimuli"
    images, ids, captions, _ = colour_squares(2, seed=6)
    split = np.where(np.arange(len(ids)) % 3 == 0, "test", "train")
    save_indexed(stim / "images.npy", images, pd.DataFrame({"stim_id": ids, "split": split}))
    write_parquet(captions, stim / "captions.parquet")
    ref = write_caches(TINY, trained[0], stim, tmp_path / "ref")
    auto = write_caches(TINY, trained[0], stim, tmp_path / "auto", device=device, compute="auto")
    half = write_caches(TINY, trained[0], stim, tmp_path / "half", device=device, compute="float16")
    assert ref["compute_dtype"] == "float32" and half["compute_dtype"] == "float16"
    assert auto["compute_dtype"] == ("float16" if device == "cuda" else "float32")
    for name in ("image", "caption"):
        want = np.load(tmp_path / "ref" / f"{name}.npy")
        got = np.load(tmp_path / "half" / f"{name}.npy")
        assert got.dtype == np.float32  # storage stays embed.dtype.pooled
        err = np.abs(got - want).max()
        assert 0 < err < 5e-3, (name, err)  # really ran in half precision, and only rounded
        assert ((got @ got.T).argmax(1) == (want @ want.T).argmax(1)).all()
        if device == "cpu":
            assert np.array_equal(np.load(tmp_path / "auto" / f"{name}.npy"), want)
    out = {"image": tmp_path / "tok16.npy"}
    write_token_caches(TINY, trained[0], stim, {"image": tmp_path / "tok32.npy"}, dtype="float32")
    write_token_caches(
        TINY, trained[0], stim, out, dtype="float32", device=device, compute="float16"
    )
    a, b = np.load(tmp_path / "tok32.npy"), np.load(out["image"])
    np.testing.assert_allclose(b, a, atol=1e-2 * np.abs(a).max())
    with pytest.raises(DataError, match="unknown dtype 'float8'"):
        write_caches(TINY, trained[0], stim, tmp_path / "bad", compute="float8")


def test_retrieval_top1_counts_matches():
    e = np.eye(4, dtype=np.float32)
    assert retrieval_top1(e, e) == {"image_to_text": 1.0, "text_to_image": 1.0, "n": 4}
    shuffled = e[[1, 0, 2, 3]]
    assert retrieval_top1(e, shuffled)["image_to_text"] == 0.5


def test_caption_retrieval_pairs_first_caption_of_kind():
    from fmridecode.embeddings.train import caption_retrieval

    eye = np.eye(3, dtype=np.float32)
    image_index = pd.DataFrame({"stim_id": ["a", "b", "c"], "split": ["test", "test", "train"]})
    # a's first detailed caption (caption_idx 0) is row 1 and matches a; its later one (row 0)
    # points at b, so taking the wrong caption would drop top-1 to 0.5
    caption_index = pd.DataFrame(
        {
            "stim_id": ["a", "a", "b", "b", "a"],
            "caption_idx": [1, 0, 0, 1, 2],
            "kind": ["detailed", "detailed", "detailed", "vague", "vague"],
        }
    )
    caption_emb = np.stack([eye[1], eye[0], eye[1], eye[2], eye[2]])
    out = caption_retrieval(eye, image_index, caption_emb, caption_index)
    assert out["n"] == 2 and out["chance"] == 0.5 and out["n_missing"] == 0
    assert out["image_to_text"] == 1.0 and out["text_to_image"] == 1.0
    # a kind no caption has (COCO's captions have one kind): every image's first caption
    out = caption_retrieval(eye, image_index, caption_emb, caption_index, kind="colour_shape")
    assert out["kind"] == "any" and out["n"] == 2 and out["image_to_text"] == 1.0
    only_a = caption_index["stim_id"] == "a"
    with pytest.raises(DataError, match="fewer than 2"):
        caption_retrieval(eye, image_index, caption_emb[only_a], caption_index[only_a])
