"""Tests for the sd_unclip generator on a tiny random SD unCLIP pipeline (no weights needed)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # loading must never need the network

import json

import numpy as np
import pytest
import torch
from devices import needs_cuda
from diffusers import DDIMScheduler
from diffusion_helpers import zero_unet_and_round_trip
from PIL import Image

from fmridecode.generators.unclip import (
    build_tiny_unclip,
    encode_text_tokens,
    expected_embed_norm,
    image_embed_dim,
    load_unclip,
    reconstruct_unclip,
)
from fmridecode.images import resize_images
from fmridecode.io import DataError

D = 16  # image-embedding width of the tiny pipeline
FAST = dict(steps=2, out_size=24, progress=False)  # tiny pipeline: 2 steps, 32 px native


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    torch.set_num_threads(1)
    return build_tiny_unclip(tmp_path_factory.mktemp("unclip") / "sd_unclip", D, sample_size=16)


@pytest.fixture(scope="module")
def pipe(built):
    return load_unclip(str(built), device="cpu")


@pytest.fixture(scope="module")
def embeds():
    return np.random.default_rng(0).standard_normal((3, D)).astype(np.float32)


@pytest.fixture(scope="module")
def images(pipe, embeds):
    return reconstruct_unclip(pipe, embeds, batch_size=3, **FAST)


def test_saved_layout_is_a_stable_unclip_pipeline(built):
    index = json.loads((built / "model_index.json").read_text())
    assert index["_class_name"] == "StableUnCLIPImg2ImgPipeline"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "image_normalizer"):
        assert part in index and (built / part).is_dir()
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_loaded_pipeline_config(pipe):
    assert image_embed_dim(pipe) == D
    assert pipe.unet.config.projection_class_embeddings_input_dim == 2 * D
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    assert expected_embed_norm(pipe) == pytest.approx(np.sqrt(D))  # random normaliser: 0 / 1


def test_shape_dtype_and_content(images):
    assert images.shape == (3, 24, 24, 3) and images.dtype == np.uint8
    assert images.std() > 5  # not a blank image


def test_same_seed_identical(pipe, embeds, images):
    np.testing.assert_array_equal(reconstruct_unclip(pipe, embeds, batch_size=3, **FAST), images)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_batch_size_does_not_change_images(pipe, embeds, images, batch_size):
    # The noise of each row is drawn from its own (seed, row) generator, so batching changes
    # nothing but the order of float additions inside batched kernels: at most a rare pixel
    # one grey level off. (Noise drawn per batch would change every image completely.)
    out = reconstruct_unclip(pipe, embeds, batch_size=batch_size, **FAST)
    diff = np.abs(out.astype(int) - images)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_different_seed_different_images(pipe, embeds, images):
    other = reconstruct_unclip(pipe, embeds, batch_size=3, seed=1, **FAST)
    assert np.abs(other.astype(int) - images).mean() > 2


def test_embedding_changes_image_and_only_its_own_row(pipe, embeds, images):
    changed = embeds.copy()
    changed[1] = np.random.default_rng(1).standard_normal(D)
    out = reconstruct_unclip(pipe, changed, batch_size=3, **FAST)
    assert np.abs(out[1].astype(int) - images[1]).mean() > 2
    np.testing.assert_array_equal(out[[0, 2]], images[[0, 2]])


def test_embedding_norm_is_ignored(pipe, embeds, images):
    # Ridge predictions are shrunk: rows are rescaled to the expected norm, so scale is moot.
    shrunk = reconstruct_unclip(pipe, 0.05 * embeds, batch_size=3, **FAST)
    assert np.abs(shrunk.astype(int) - images).max() <= 1  # float rounding only


def test_prompt_and_noise_level_change_the_image(pipe, embeds, images):
    texted = reconstruct_unclip(pipe, embeds, prompt=["a red cat", "", "sky"], **FAST)
    assert np.abs(texted[0].astype(int) - images[0]).mean() > 2
    np.testing.assert_array_equal(texted[1], images[1])  # '' is the default prompt
    noised = reconstruct_unclip(pipe, embeds, noise_level=900, **FAST)
    assert np.abs(noised.astype(int) - images).mean() > 2


def test_caption_token_states_condition_like_the_prompt(pipe, embeds, images):
    """The targets a mapper predicts for caption conditioning are exactly what the pipeline
    makes of the text: conditioning on them reproduces the prompted images."""
    texts = ["a red cat", "", "sky"]
    tokens = encode_text_tokens(pipe, texts, batch_size=2)
    width = pipe.text_encoder.config.hidden_size
    assert tokens.shape == (3, pipe.tokenizer.model_max_length, width)
    assert tokens.dtype == np.float32 and np.isfinite(tokens).all()
    prompted = reconstruct_unclip(pipe, embeds, prompt=texts, **FAST)
    from_tokens = reconstruct_unclip(pipe, embeds, prompt_embeds=tokens, **FAST)
    assert np.abs(from_tokens.astype(int) - prompted).max() <= 1  # float rounding only
    assert np.abs(from_tokens[1].astype(int) - images[1]).max() <= 1  # '' = no prompt
    long = ["a cat " * 40, "sky", "a dog " * 30]  # over the context length: truncated
    assert np.isfinite(encode_text_tokens(pipe, long, batch_size=3, progress=False)).all()
    with pytest.raises(DataError, match=rf"\(N=3, tokens, {width}\)"):
        reconstruct_unclip(pipe, embeds, prompt_embeds=tokens[:, :, :-1], **FAST)
    with pytest.raises(DataError, match="not both"):
        reconstruct_unclip(pipe, embeds, prompt="a cat", prompt_embeds=tokens, **FAST)
    bad = tokens.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="non-finite"):
        reconstruct_unclip(pipe, embeds, prompt_embeds=bad, **FAST)


def test_float16_pipeline_runs(built, embeds, images):
    # float16 is what 'auto' picks on CUDA; on CPU it only checks the dtype plumbing.
    half = load_unclip(built, device="cpu", dtype="float16")
    assert half.unet.dtype == torch.float16 and half.image_normalizer.mean.dtype == torch.float16
    out = reconstruct_unclip(half, embeds, batch_size=3, **FAST)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - images).mean() < 2


# Measured on an H200 (torch 2.11, diffusers 0.42.1): float16 on CUDA gave images 33 grey
# levels (mean) from the float32 ones for this random tiny pipeline, while float32 on CUDA and
# float16 on the CPU (which computes in float32 inside) match; Versatile Diffusion's float16
# matches too. Cause not found yet (no GPU to bisect on): kept as an expected failure, so a
# GPU session sees at once whether it still fails, without failing the suite.
FP16_ON_CUDA = pytest.mark.xfail(
    reason="float16 unCLIP on CUDA differs from float32 (33 grey levels on an H200); open",
    strict=False,
)


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", pytest.param("float16", marks=FP16_ON_CUDA)])
def test_cuda_gives_the_cpu_images(built, embeds, images, dtype):
    """On CUDA the noise still comes from each row's CPU generator: the CPU's images, up to
    float rounding (float32) or half precision (float16, what 'auto' picks there)."""
    gpu = load_unclip(built, device="cuda", dtype=dtype)
    assert gpu.device.type == "cuda" and gpu.unet.dtype == getattr(torch, dtype)
    out = reconstruct_unclip(gpu, embeds, batch_size=3, **FAST)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - images).mean() < (1 if dtype == "float32" else 2)


def test_bad_embeddings_raise(pipe, embeds):
    with pytest.raises(DataError, match=rf"\(N, {D}\).*expected width {D}"):
        reconstruct_unclip(pipe, np.zeros((2, D + 1), np.float32), **FAST)
    with pytest.raises(DataError, match=rf"\(N, {D}\)"):
        reconstruct_unclip(pipe, embeds[0], **FAST)  # 1-D
    bad = embeds.copy()
    bad[1, 3] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        reconstruct_unclip(pipe, bad, **FAST)
    with pytest.raises(DataError, match="zero"):
        reconstruct_unclip(pipe, np.zeros((1, D), np.float32), **FAST)
    with pytest.raises(DataError, match="noise_level"):
        reconstruct_unclip(pipe, embeds, noise_level=1000, **FAST)
    with pytest.raises(DataError, match="2 prompts for 3"):
        reconstruct_unclip(pipe, embeds, prompt=["a", "b"], **FAST)


def test_load_errors_name_the_source(tmp_path, built):
    missing = tmp_path / "no_such_pipeline"
    with pytest.raises(DataError, match="no_such_pipeline"):
        load_unclip(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty.*model_index\.json"):
        load_unclip(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(DataError, match="StableDiffusionPipeline"):
        load_unclip(other)
    with pytest.raises(DataError, match="nobody/not-cached-unclip.*cache"):
        load_unclip("nobody/not-cached-unclip")
    with pytest.raises(DataError, match="dtype"):
        load_unclip(built, dtype="float8")


def test_resumed_rows_equal_the_uninterrupted_run(pipe, embeds, images):
    """Rows 1:3 made alone with first_row=1 (how a killed run resumes) equal rows 1:3 of the
    full call: each row's noise is seeded by its row number, not its position in the call."""
    part = reconstruct_unclip(pipe, embeds[1:], batch_size=3, first_row=1, **FAST)
    diff = np.abs(part.astype(int) - images[1:])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    shifted = reconstruct_unclip(pipe, embeds[1:], batch_size=3, **FAST)  # first_row 0
    assert np.abs(shifted.astype(int) - images[1:]).mean() > 5


def test_two_stage_img2img_from_a_first_guess(built, pipe, embeds, images):
    """init_images + strength: 0 returns the init, 1 ignores it; in between, with the UNet's
    output zeroed (DDIM then only rescales the noised init latent), less of the init survives
    as strength grows. The tiny VAE is random, so 'the init' is its VAE round trip."""
    init = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    kept = reconstruct_unclip(pipe, embeds, batch_size=3, init_images=init, strength=0.0, **FAST)
    np.testing.assert_array_equal(kept, resize_images(init, FAST["out_size"], Image.BICUBIC))
    full = reconstruct_unclip(pipe, embeds, batch_size=3, init_images=init, strength=1.0, **FAST)
    np.testing.assert_array_equal(full, images)  # strength 1: from noise, init unused
    zero = load_unclip(str(built), device="cpu")
    # epsilon prediction, so a zero output means "no change" (the tiny pipeline predicts v,
    # where zero pulls every step towards grey)
    zero.scheduler = DDIMScheduler.from_config(zero.scheduler.config, prediction_type="epsilon")
    # the random tiny VAE's latents are tiny (SD's scaling factor makes them unit-variance):
    # scale them up so the noise of a low strength is small against them, as with real weights
    zero.vae.register_to_config(scaling_factor=4.0)
    rt = zero_unet_and_round_trip(zero.unet, zero.vae, init)
    opts = {"steps": 10, "out_size": 32, "progress": False, "batch_size": 3}
    mse = {
        s: np.mean(
            (reconstruct_unclip(zero, embeds, init_images=init, strength=s, **opts) - rt) ** 2
        )
        for s in (0.1, 0.5, 1.0)
    }
    assert mse[0.1] < mse[0.5] < mse[1.0], mse
    assert mse[0.1] < 100, mse  # a few grey levels: the init survives a low strength
    with pytest.raises(DataError, match="init images must be uint8"):
        reconstruct_unclip(pipe, embeds, init_images=init[:2], strength=0.5, **FAST)


def test_vae_latents_of_the_unclip_pipeline(pipe):
    """sd_unclip's low-level first guess: its VAE's latents at its resolution (32 px: 16 x 16
    latents of 4 channels), decoded back to images of the requested size."""
    from fmridecode.generators.vae_latents import decode_latents, encode_latents, latent_shape

    stimuli = np.random.default_rng(1).integers(0, 256, (3, 20, 20, 3), np.uint8)
    z = encode_latents(pipe, stimuli)
    assert latent_shape(pipe) == (4, 16, 16) and z.shape == (3, 4, 16, 16)
    assert np.isfinite(z).all() and np.abs(z[0] - z[1]).mean() > 1e-3
    imgs = decode_latents(pipe, z, 24)
    assert imgs.shape == (3, 24, 24, 3) and imgs.dtype == np.uint8
    with pytest.raises(DataError, match="stimulus images must be uint8"):
        encode_latents(pipe, stimuli.astype(np.float32))
