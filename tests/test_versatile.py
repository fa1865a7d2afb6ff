"""Tests for the versatile_diffusion generator on a tiny random Versatile Diffusion pipeline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # loading must never need the network

import json
import re

import numpy as np
import pytest
import torch
from devices import needs_cuda
from diffusion_helpers import zero_unet_and_round_trip
from PIL import Image

from fmridecode.generators.seeding import row_generator
from fmridecode.generators.tiny_diffusion import resize_images
from fmridecode.generators.versatile import (
    build_tiny_versatile,
    encode_condition_tokens,
    load_versatile,
    reconstruct_versatile,
    token_shapes,
)
from fmridecode.io import DataError

IMAGE_SHAPE, TEXT_SHAPE = (17, 32), (16, 32)  # tiny pipeline: 32 px / 8 px patches + class token
SIZE = 32  # pipeline resolution: latent 16, VAE factor 2
FAST = dict(steps=4, out_size=24, progress=False)
# Byte-level tokens, 16 per caption: the last one is too long and is truncated, as CLIP does.
CAPTIONS = ["a red bus", "two cats on a sofa", "a plate of food on a table"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_versatile(tmp_path_factory.mktemp("vd") / "versatile", sample_size=16)


@pytest.fixture(scope="module")
def pipe(built):
    return load_versatile(str(built), device="cpu")


@pytest.fixture(scope="module")
def stimuli():
    return np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tokens(pipe, stimuli):
    return encode_condition_tokens(pipe, stimuli, CAPTIONS)


@pytest.fixture(scope="module")
def init():
    return np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def images(pipe, tokens, init):
    it, tt = tokens
    return reconstruct_versatile(pipe, it, tt, init_images=init, batch_size=3, **FAST)


def test_saved_layout_is_a_dual_guided_pipeline(built):
    index = json.loads((built / "model_index.json").read_text())
    assert index["_class_name"] == "VersatileDiffusionDualGuidedPipeline"
    for part in ("image_unet", "text_unet", "vae", "text_encoder", "image_encoder", "tokenizer"):
        assert part in index and (built / part).is_dir()
    # Saved unmerged, like the real checkpoint: the pipeline merges the transformers on load.
    unet_config = json.loads((built / "image_unet" / "config.json").read_text())
    assert not unet_config.get("dual_cross_attention", False)
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_loaded_pipeline_is_merged_and_shapes_match_config(pipe):
    assert token_shapes(pipe) == (IMAGE_SHAPE, TEXT_SHAPE)
    vis = pipe.image_encoder.config
    assert IMAGE_SHAPE[0] == (vis.image_size // vis.patch_size) ** 2 + 1
    assert TEXT_SHAPE[0] == pipe.text_encoder.config.max_position_embeddings
    assert pipe.image_unet.config.cross_attention_dim == IMAGE_SHAPE[1]
    assert pipe.image_unet.config.dual_cross_attention and pipe.text_unet is None
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.image_unet.dtype == torch.float32 and pipe.device.type == "cpu"


def test_encoded_tokens_have_the_expected_shapes_and_normalisation(pipe, tokens, stimuli):
    it, tt = tokens
    assert it.shape == (3, *IMAGE_SHAPE) and tt.shape == (3, *TEXT_SHAPE)
    assert it.dtype == tt.dtype == np.float32 and np.isfinite(it).all() and np.isfinite(tt).all()
    # The pipeline's normalisation: the class token and the end-of-text token have unit norm.
    np.testing.assert_allclose(np.linalg.norm(it[:, 0], axis=-1), 1.0, rtol=1e-5)
    ids = pipe.tokenizer(CAPTIONS, padding="max_length", truncation=True).input_ids
    eos = [row.index(pipe.tokenizer.eos_token_id) for row in ids]
    np.testing.assert_allclose(np.linalg.norm(tt[np.arange(3), eos], axis=-1), 1.0, rtol=1e-5)
    assert np.abs(it[0] - it[1]).max() > 1e-3 and np.abs(tt[0] - tt[1]).max() > 1e-3
    only_images, none = encode_condition_tokens(pipe, stimuli[:2], None)
    assert none is None
    np.testing.assert_allclose(only_images, it[:2], atol=1e-5)  # batch-independent


def test_matches_the_pipelines_own_call(pipe, tokens, stimuli, monkeypatch):
    """Injecting the true tokens == the stock pipeline encoding the image and prompt itself."""
    it, tt = tokens
    mine = reconstruct_versatile(pipe, it[:1], tt[:1], image_weight=0.6, steps=3, out_size=SIZE,
                                 seed=5, progress=False)  # fmt: skip
    stock = pipe.set_transformer_params

    def tiny_lengths(mix_ratio=0.5, condition_types=("text", "image")):
        stock(mix_ratio, condition_types)  # hard-codes 257 image tokens; the tiny model has 17
        for block in pipe.image_unet.modules():
            if hasattr(block, "condition_lengths"):
                block.condition_lengths = [TEXT_SHAPE[0], IMAGE_SHAPE[0]]

    monkeypatch.setattr(pipe, "set_transformer_params", tiny_lengths)
    latents = torch.randn((1, 4, 16, 16), generator=row_generator(5, 0))
    ref = pipe(prompt=CAPTIONS[0], image=Image.fromarray(stimuli[0]), text_to_image_strength=0.4,
               num_inference_steps=3, guidance_scale=7.5, latents=latents, output_type="np",
               ).images  # fmt: skip
    ref = (ref * 255).round().astype(np.uint8)
    assert np.abs(ref.astype(int) - mine).max() <= 1


def test_shape_dtype_and_content(images):
    assert images.shape == (3, FAST["out_size"], FAST["out_size"], 3) and images.dtype == np.uint8
    assert images.std() > 5  # not a blank image


def test_same_seed_identical_other_seed_differs(pipe, tokens, init, images):
    it, tt = tokens
    again = reconstruct_versatile(pipe, it, tt, init_images=init, batch_size=3, **FAST)
    np.testing.assert_array_equal(again, images)
    other = reconstruct_versatile(pipe, it, tt, init_images=init, batch_size=3, seed=1, **FAST)
    assert not np.array_equal(other, images)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_batch_size_does_not_change_images(pipe, tokens, init, images, batch_size):
    # Noise per (seed, row): batching changes at most the order of float additions inside
    # batched kernels, i.e. a rare pixel one grey level off.
    it, tt = tokens
    out = reconstruct_versatile(pipe, it, tt, init_images=init, batch_size=batch_size, **FAST)
    diff = np.abs(out.astype(int) - images)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_image_weight_reaches_the_unet(pipe, tokens):
    it, tt = tokens
    pure_image = reconstruct_versatile(pipe, it, tt, image_weight=1.0, **FAST)
    pure_text = reconstruct_versatile(pipe, it, tt, image_weight=0.0, **FAST)
    assert np.abs(pure_image.astype(int) - pure_text).mean() > 2
    # Text tokens None = image only: the text slot is weighted 0, so its content is irrelevant.
    np.testing.assert_array_equal(reconstruct_versatile(pipe, it, None, **FAST), pure_image)
    # ... and at weight 0 only the text matters: other image tokens, same images.
    shuffled = reconstruct_versatile(pipe, it[::-1].copy(), tt, image_weight=0.0, **FAST)
    np.testing.assert_array_equal(shuffled, pure_text)


def test_strength_zero_returns_the_init_images(pipe, tokens, init):
    it, tt = tokens
    same = reconstruct_versatile(pipe, it, tt, init_images=init, strength=0.0, steps=4,
                                 out_size=SIZE, progress=False)  # fmt: skip
    np.testing.assert_array_equal(same, init)
    small = reconstruct_versatile(pipe, it, tt, init_images=init, strength=0.0, **FAST)
    np.testing.assert_array_equal(small, resize_images(init, FAST["out_size"], Image.BICUBIC))


def test_low_strength_stays_closer_to_the_init(built, tokens, init):
    """With the UNet's output zeroed, DDIM just rescales the noised init latent, so what is
    left of the init is exactly what the noise level of ``strength`` leaves. The tiny VAE is
    random, so 'the init' is its VAE round trip (decode(encode(init)))."""
    zero = load_versatile(str(built), device="cpu")
    rt = zero_unet_and_round_trip(zero.image_unet, zero.vae, init)
    it, tt = tokens
    mse = {
        s: np.mean((reconstruct_versatile(zero, it, tt, init_images=init, strength=s, steps=10,
                                          out_size=SIZE, progress=False) - rt) ** 2)
        for s in (0.1, 0.5, 1.0)
    }  # fmt: skip
    assert mse[0.1] < mse[0.5] < mse[1.0]
    assert mse[0.1] < 100  # a few grey levels: the init survives a low strength


def test_strength_one_ignores_the_init(pipe, tokens, init):
    it, tt = tokens
    from_init = reconstruct_versatile(pipe, it, tt, init_images=init, strength=1.0, **FAST)
    np.testing.assert_array_equal(from_init, reconstruct_versatile(pipe, it, tt, **FAST))
    half = reconstruct_versatile(pipe, it, tt, init_images=init, strength=0.5, **FAST)
    assert not np.array_equal(half, from_init)


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_gives_the_cpu_images(built, tokens, init, images, dtype):
    """On CUDA the noise still comes from each row's CPU generator: the CPU's images, up to
    float rounding (float32) or half precision (float16, what 'auto' picks there)."""
    gpu = load_versatile(built, device="cuda", dtype=dtype)
    assert gpu.device.type == "cuda" and gpu.image_unet.dtype == getattr(torch, dtype)
    it, tt = tokens
    out = reconstruct_versatile(gpu, it, tt, init_images=init, batch_size=3, **FAST)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - images).mean() < (1 if dtype == "float32" else 2)
    again, _ = encode_condition_tokens(gpu, init[:2], None)  # the token encoders on CUDA
    np.testing.assert_allclose(
        again,
        encode_condition_tokens(load_versatile(built, device="cpu"), init[:2], None)[0],
        atol=1e-2 if dtype == "float16" else 1e-4,
    )


def test_wrong_token_shapes_are_rejected(pipe, tokens):
    it, tt = tokens
    with pytest.raises(DataError, match=r"\(N, 17, 32\)"):
        reconstruct_versatile(pipe, it[:, :16], tt, **FAST)
    with pytest.raises(DataError, match=r"\(N, 16, 32\)"):
        reconstruct_versatile(pipe, it, tt[..., :8], **FAST)
    with pytest.raises(DataError, match="2 rows of text tokens for 3"):
        reconstruct_versatile(pipe, it, tt[:2], **FAST)
    with pytest.raises(DataError, match="init images"):
        reconstruct_versatile(pipe, it, tt, init_images=np.zeros((2, 8, 8, 3), np.uint8), **FAST)


def test_non_finite_tokens_are_rejected(pipe, tokens):
    it, tt = tokens
    bad = it.copy()
    bad[1, 3, 5] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        reconstruct_versatile(pipe, bad, tt, **FAST)
    bad = tt.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="text tokens contain non-finite"):
        reconstruct_versatile(pipe, it, bad, **FAST)


def test_missing_or_wrong_folder_is_rejected(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        load_versatile(str(missing), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no model_index.json"):
        load_versatile(str(empty), device="cpu")
    (empty / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(DataError, match="StableDiffusionPipeline"):
        load_versatile(str(empty), device="cpu")


def test_resumed_rows_equal_the_uninterrupted_run(pipe, tokens, init, images):
    """Rows 1:3 made alone with first_row=1 (how a killed run resumes) equal the full call's."""
    it, tt = tokens
    part = reconstruct_versatile(
        pipe, it[1:], tt[1:], init_images=init[1:], batch_size=3, first_row=1, **FAST
    )
    diff = np.abs(part.astype(int) - images[1:])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    shifted = reconstruct_versatile(
        pipe, it[1:], tt[1:], init_images=init[1:], batch_size=3, **FAST
    )
    assert np.abs(shifted.astype(int) - images[1:]).mean() > 1


def test_vae_latents_round_trip_to_a_first_guess(pipe, stimuli):
    """encode_latents -> decode_latents gives images of the right shape; the latents carry the
    stimulus (a different stimulus gives different latents), and bad shapes are refused."""
    from fmridecode.generators.vae_latents import decode_latents, encode_latents, latent_shape

    z = encode_latents(pipe, stimuli)
    assert z.shape == (3, *latent_shape(pipe)) and z.dtype == np.float32
    assert np.abs(z[0] - z[1]).mean() > 1e-3
    imgs = decode_latents(pipe, z, 24)
    assert imgs.shape == (3, 24, 24, 3) and imgs.dtype == np.uint8
    with pytest.raises(DataError, match="latents must be"):
        decode_latents(pipe, z[:, :1], 24)
