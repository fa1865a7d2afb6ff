"""Unit tests of the raw/token-level encoders (``fmridecode.embeddings.tokens``)."""

from __future__ import annotations

import copy

import numpy as np
import open_clip
import pytest
import torch
from open_clip.model import convert_to_custom_text_state_dict

from fmridecode.embeddings.cache import preprocess_images
from fmridecode.embeddings.model import SMALL_MODEL_NAME, create_untrained
from fmridecode.embeddings.tokens import (
    class_embeddings_with_context,
    encode_images,
    encode_texts,
    load_context,
)
from fmridecode.io import DataError

TEXTS = ["a red square on a grey background", "two blue circles", "a cat.", "x"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def small():
    """Our small model, random init (seed 0), eval mode, with its preprocess and tokenizer."""
    torch.manual_seed(0)
    model = create_untrained()
    with torch.no_grad():  # move BatchNorm running stats away from their defaults
        model.visual(torch.randn(8, 3, 64, 64))
    model.eval()
    preprocess = open_clip.image_transform(64, is_train=False)
    return model, preprocess, open_clip.get_tokenizer(SMALL_MODEL_NAME)


@pytest.fixture(scope="module")
def vit():
    """A randomly initialised ViT-B-32 (no weights needed) at 224 px."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()
    preprocess = open_clip.image_transform(224, is_train=False)
    return model, preprocess, open_clip.get_tokenizer("ViT-B-32")


def rand_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def reference_images(model, preprocess, images) -> np.ndarray:
    with torch.no_grad():
        return model.encode_image(preprocess_images(preprocess, images)).numpy()


def reference_texts(model, tokenizer, texts) -> np.ndarray:
    with torch.no_grad():
        return model.encode_text(tokenizer(texts)).numpy()


def test_small_model_pooled_equals_open_clip_and_tokens_are_the_feature_map(small):
    model, preprocess, tokenizer = small
    images = rand_images(5, 48)  # resized to 64 by the preprocess
    pooled, tokens = encode_images(model, preprocess, images, batch_size=2, tokens=True)
    assert pooled.dtype == np.float32 and pooled.shape == (5, 64)
    np.testing.assert_allclose(pooled, reference_images(model, preprocess, images), atol=1e-6)
    assert not np.allclose(np.linalg.norm(pooled, axis=1), 1.0)  # raw, not normalised
    assert tokens.dtype == np.float32 and tokens.shape == (5, 4, 512)  # 2x2 map, 512 channels
    fmap = torch.from_numpy(tokens).transpose(1, 2).reshape(5, 512, 2, 2)
    with torch.no_grad():  # attention pooling of the tokens gives the pooled embedding
        np.testing.assert_allclose(model.visual.attnpool(fmap).numpy(), pooled, atol=1e-5)
    plain, none = encode_images(model, preprocess, images)
    assert none is None
    np.testing.assert_allclose(plain, pooled, atol=1e-6)

    pooled, tokens = encode_texts(model, tokenizer, TEXTS, batch_size=3, tokens=True)
    np.testing.assert_allclose(pooled, reference_texts(model, tokenizer, TEXTS), atol=1e-6)
    assert pooled.shape == (4, 64) and tokens.shape == (4, 40, 128)
    eot = tokenizer(TEXTS).argmax(dim=1).numpy()
    at_eot = tokens[np.arange(4), eot] @ model.text_projection.detach().numpy()
    np.testing.assert_allclose(at_eot, pooled, atol=1e-5)


def test_vit_b32_pooled_equals_open_clip_and_token_shapes(vit):
    model, preprocess, tokenizer = vit
    images = rand_images(3, 224)
    pooled, tokens = encode_images(model, preprocess, images, tokens=True)
    np.testing.assert_allclose(pooled, reference_images(model, preprocess, images), atol=1e-5)
    assert pooled.shape == (3, 512) and tokens.shape == (3, 50, 768)  # class token + 7x7
    proj = model.visual.proj.detach().numpy()
    np.testing.assert_allclose(tokens[:, 0] @ proj, pooled, atol=1e-4)
    model.visual.output_tokens = True  # rows 1.. are exactly open_clip's own patch tokens
    try:
        with torch.no_grad():
            _, patches = model.visual(preprocess_images(preprocess, images))
    finally:
        model.visual.output_tokens = False
    np.testing.assert_allclose(tokens[:, 1:], patches.numpy(), atol=1e-5)

    texts = TEXTS[:2]
    pooled, tokens = encode_texts(model, tokenizer, texts, tokens=True)
    np.testing.assert_allclose(pooled, reference_texts(model, tokenizer, texts), atol=1e-5)
    assert pooled.shape == (2, 512) and tokens.shape == (2, 77, 512)


def test_workers_and_batch_sizes_do_not_change_results(small):
    model, preprocess, tokenizer = small
    images = rand_images(7, 64, seed=1)
    a = encode_images(model, preprocess, images, batch_size=3, workers=0, tokens=True)
    b = encode_images(model, preprocess, images, batch_size=3, workers=2, tokens=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    for bs in (1, 256):
        c = encode_images(model, preprocess, images, batch_size=bs, tokens=True)
        np.testing.assert_allclose(c[0], a[0], atol=1e-5)
        np.testing.assert_allclose(c[1], a[1], atol=1e-5)
    t1 = encode_texts(model, tokenizer, TEXTS, batch_size=1, tokens=True)
    t2 = encode_texts(model, tokenizer, TEXTS, batch_size=256, tokens=True)
    np.testing.assert_allclose(t1[0], t2[0], atol=1e-5)
    np.testing.assert_allclose(t1[1], t2[1], atol=1e-5)


def test_train_mode_is_restored_and_does_not_leak_into_results(small):
    model, preprocess, tokenizer = small
    images = rand_images(3, 64, seed=2)
    ref, _ = encode_images(model, preprocess, images)
    model.train()
    try:
        pooled, _ = encode_images(model, preprocess, images, tokens=True)
        encode_texts(model, tokenizer, TEXTS[:1], tokens=True)
        assert model.training and model.visual.training
    finally:
        model.eval()
    np.testing.assert_allclose(pooled, ref, atol=1e-6)  # eval-mode BatchNorm inside


def test_custom_text_clip_matches_clip_with_the_same_weights(small):
    model, _, tokenizer = small
    custom = open_clip.create_model(SMALL_MODEL_NAME, force_custom_text=True).eval()
    custom.load_state_dict(convert_to_custom_text_state_dict(model.state_dict()))
    pooled, tokens = encode_texts(custom, tokenizer, TEXTS, tokens=True)
    np.testing.assert_allclose(pooled, reference_texts(custom, tokenizer, TEXTS), atol=1e-6)
    ref_pooled, ref_tokens = encode_texts(model, tokenizer, TEXTS, tokens=True)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5)
    np.testing.assert_allclose(tokens, ref_tokens, atol=1e-5)
    ctx = np.random.default_rng(0).normal(0, 0.02, (3, 128)).astype(np.float32)
    a, _ = encode_texts(custom, tokenizer, TEXTS, context=ctx)  # hook path
    b, _ = encode_texts(model, tokenizer, TEXTS, context=ctx)  # explicit path
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not custom.text.output_tokens  # restored


def test_unsupported_towers_and_bad_input_raise_data_error(small):
    model, preprocess, tokenizer = small
    odd = copy.deepcopy(model)
    odd.visual = torch.nn.Identity()
    with pytest.raises(DataError, match="Identity"):
        encode_images(odd, preprocess, rand_images(1, 64), tokens=True)
    odd.text = torch.nn.Linear(2, 2)
    with pytest.raises(DataError, match="Linear"):
        encode_texts(odd, tokenizer, ["a"], tokens=True)
    with pytest.raises(DataError, match="Linear"):
        encode_texts(odd, tokenizer, ["a"], context=np.zeros((1, 128), np.float32))
    with pytest.raises(DataError, match="uint8"):
        encode_images(model, preprocess, rand_images(1, 64).astype(np.float32))
    with pytest.raises(DataError, match="no texts"):
        encode_texts(model, tokenizer, [])


def test_non_finite_outputs_are_refused(small):
    model, preprocess, tokenizer = small
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.text_projection[0, 0] = float("nan")
        broken.visual.attnpool.c_proj.bias[0] = float("inf")
    with pytest.raises(DataError, match="non-finite text embeddings"):
        encode_texts(broken, tokenizer, TEXTS)
    with pytest.raises(DataError, match="non-finite image embeddings"):
        encode_images(broken, preprocess, rand_images(2, 64), tokens=True)


# ------------------------------------------------------------------- learned context (CoOp)


def test_prompt_context_absent_or_zero_length_equals_plain_path(small):
    model, _, tokenizer = small
    plain, plain_tokens = encode_texts(model, tokenizer, TEXTS, tokens=True)
    for ctx in (None, np.zeros((0, 128), np.float32)):
        pooled, tokens = encode_texts(model, tokenizer, TEXTS, tokens=True, context=ctx)
        np.testing.assert_array_equal(pooled, plain)
        np.testing.assert_array_equal(tokens, plain_tokens)


def test_prompt_context_changes_embedding_and_is_deterministic(small):
    model, _, tokenizer = small
    rng = np.random.default_rng(1)
    ctx = rng.normal(0, 0.02, (4, 128)).astype(np.float32)
    plain, _ = encode_texts(model, tokenizer, TEXTS)
    a, ta = encode_texts(model, tokenizer, TEXTS, context=ctx, tokens=True)
    b, tb = encode_texts(model, tokenizer, TEXTS, context=ctx, tokens=True, batch_size=1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ta, tb, atol=1e-5)
    assert not np.allclose(a, plain, atol=1e-3)
    other, _ = encode_texts(model, tokenizer, TEXTS, context=ctx[::-1].copy())
    assert not np.allclose(a, other, atol=1e-3)


def test_context_of_placeholder_embeddings_equals_the_placeholder_text(small):
    """Context = the embedding of 'X' itself reproduces the plain text 'X X X <text>'."""
    model, _, tokenizer = small
    x_id = int(tokenizer(["X"])[0, 1])
    ctx = model.token_embedding.weight[x_id].detach().numpy()[None].repeat(3, axis=0)
    with_ctx, _ = encode_texts(model, tokenizer, TEXTS, context=ctx)
    plain, _ = encode_texts(model, tokenizer, ["X X X " + t for t in TEXTS])
    np.testing.assert_allclose(with_ctx, plain, atol=1e-6)


def test_class_embeddings_with_context_are_unit_norm_coop_prompts(small):
    model, _, tokenizer = small
    classes = ["cat", "dog", "red square"]
    ctx = np.random.default_rng(2).normal(0, 0.02, (2, 128)).astype(np.float32)
    emb = class_embeddings_with_context(model, tokenizer, classes, ctx)
    assert emb.shape == (3, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    raw, _ = encode_texts(model, tokenizer, ["cat.", "dog.", "red square."], context=ctx)
    np.testing.assert_allclose(emb, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_context_width_mismatch_and_length_raise(small):
    model, _, tokenizer = small
    with pytest.raises(DataError, match=r"width 96 .* width 128"):
        encode_texts(model, tokenizer, TEXTS, context=np.zeros((2, 96), np.float32))
    with pytest.raises(DataError, match="context length 40"):
        encode_texts(model, tokenizer, TEXTS, context=np.zeros((39, 128), np.float32))
    with pytest.raises(DataError, match="non-finite"):
        encode_texts(model, tokenizer, TEXTS, context=np.full((2, 128), np.nan, np.float32))


def test_load_context_reads_npy_and_errors_name_the_file(tmp_path):
    good = tmp_path / "ctx.npy"
    np.save(good, np.ones((4, 8), np.float64))
    ctx = load_context(good)
    assert ctx.dtype == np.float32 and ctx.shape == (4, 8)
    flat = tmp_path / "flat_ctx.npy"
    np.save(flat, np.ones(8, np.float32))
    with pytest.raises(DataError, match=r"flat_ctx\.npy.*2-D"):
        load_context(flat)
    nan = tmp_path / "nan_ctx.npy"
    np.save(nan, np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(DataError, match=r"nan_ctx\.npy.*non-finite"):
        load_context(nan)
    junk = tmp_path / "junk_ctx.npy"
    junk.write_text("not an array")
    with pytest.raises(DataError, match=r"junk_ctx\.npy"):
        load_context(junk)
    with pytest.raises(DataError, match=r"missing_ctx\.npy"):
        load_context(tmp_path / "missing_ctx.npy")
