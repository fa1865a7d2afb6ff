"""The ``sd_unclip`` generator: Stable Diffusion 2.1 unCLIP driven by predicted CLIP embeddings.

``diffusers.StableUnCLIPImg2ImgPipeline`` conditions its UNet on a CLIP image embedding: the
embedding is standardised by the pipeline's ``image_normalizer`` (the CLIP image encoder's
per-dimension mean and std), noised to ``noise_level`` by ``image_noising_scheduler``,
un-standardised, concatenated with a sinusoidal embedding of ``noise_level`` (hence width
``2 * D``) and added to the timestep embedding through the UNet's ``projection`` class
embedding. Passing ``image_embeds`` (and no ``image``) skips the pipeline's own image encoder,
so an embedding predicted from fMRI goes straight into the UNet. A text prompt conditions the
cross-attention as in plain Stable Diffusion, or, in its place, caption token states predicted
from fMRI (targets: ``encode_text_tokens`` of the shown images' captions).

Users with weights point the config at a model id in the local Hugging Face cache (for
example ``stabilityai/stable-diffusion-2-1-unclip``) or at a local directory; nothing is ever
downloaded. ``build_tiny_unclip`` assembles the same pipeline from small random components,
so the whole path (save, load, reconstruct) is tested without any weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    StableUnCLIPImg2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
    StableUnCLIPImageNormalizer,
)
from PIL import Image
from tqdm.auto import tqdm
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPVisionModelWithProjection,
)

from fmridecode.devices import resolve_device, torch_dtype
from fmridecode.generators.hf_parts import (
    load_error,
    resolve_pipeline,
    tiny_text_config,
    tiny_tokenizer,
    tiny_vae,
    tiny_vision_config,
)
from fmridecode.generators.seeding import row_generator
from fmridecode.generators.vae_latents import images_to_latents, pixel_size
from fmridecode.images import resize_images
from fmridecode.io import DataError, atomic_dir

PIPELINE_CLASS = "StableUnCLIPImg2ImgPipeline"

# Tiny text side: token sequence length and width of the text encoder (= UNet cross-attention).
TINY_MAX_LENGTH = 16
TINY_TEXT_DIM = 32


def build_tiny_unclip(
    out_dir: str | os.PathLike, embed_dim: int, sample_size: int = 32, seed: int = 0
) -> Path:
    """Save a StableUnCLIPImg2ImgPipeline of small random components to ``out_dir``; return it.

    Its image-embedding width is ``embed_dim`` (the width of the embeddings predicted from
    fMRI). ``sample_size`` is the UNet's latent size, as in the diffusers config; the VAE
    downsamples by 2, so images are ``2 * sample_size`` pixels. Same arguments -> the same
    weights. The folder has the layout of a real SD 2.1 unCLIP pipeline (``model_index.json``
    plus one subfolder per component) and appears whole or not at all.
    """
    if embed_dim < 2 or embed_dim % 2:
        raise DataError(f"{out_dir}: embed_dim must be an even number >= 2, got {embed_dim}")
    if sample_size < 8 or sample_size % 4:
        raise DataError(f"{out_dir}: sample_size must be a multiple of 4, >= 8, got {sample_size}")
    tokenizer = tiny_tokenizer(TINY_MAX_LENGTH)

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(tiny_text_config(tokenizer, TINY_TEXT_DIM, TINY_MAX_LENGTH)).eval()
    torch.manual_seed(seed + 1)
    image_encoder = CLIPVisionModelWithProjection(tiny_vision_config(32, embed_dim)).eval()
    feature_extractor = CLIPImageProcessor(crop_size={"height": 32, "width": 32}, size=32)
    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_DIM,
        attention_head_dim=(2, 4),
        use_linear_projection=True,  # as in SD 2.x
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embed_dim,  # embedding + noise-level embedding
    ).eval()
    torch.manual_seed(seed + 3)
    vae = tiny_vae((32, 64), 2 * sample_size)
    # Schedulers configured like SD 2.1 unCLIP's (cosine embedding noise; v-prediction DDIM).
    image_noising_scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=feature_extractor,
        image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
        image_noising_scheduler=image_noising_scheduler,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        vae=vae,
    )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp)
    return out_dir


def load_unclip(
    path_or_id: str | os.PathLike, device: str | None = None, dtype: str = "auto"
) -> StableUnCLIPImg2ImgPipeline:
    """Load an SD unCLIP img2img pipeline from a local folder or the local HF cache, offline.

    ``device`` None: CUDA when available, else CPU. ``dtype`` 'auto': float16 on CUDA,
    float32 on CPU (CPU half precision is slow and poorly supported); or name it.
    """
    device = resolve_device(device)
    tdtype = torch_dtype(dtype, device)
    source, index = resolve_pipeline(path_or_id, (PIPELINE_CLASS,), "sd_unclip")
    try:
        pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
            source, dtype=tdtype, local_files_only=True
        )
    except Exception as e:  # diffusers/hub raise several types for missing or broken folders
        raise load_error(str(path_or_id), PIPELINE_CLASS, index is not None, e) from e
    pipe = pipe.to(device)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.image_encoder):
        part.eval()
    return pipe


def image_embed_dim(pipe: StableUnCLIPImg2ImgPipeline) -> int:
    """Width D of the image embeddings ``pipe`` is conditioned on, from the components' configs.

    The UNet's class-embedding input is the embedding concatenated with a noise-level
    embedding of the same width, so it must be ``2 * D``; the image normaliser holds D.
    """
    d = int(pipe.image_normalizer.config.embedding_dim)
    unet_in = pipe.unet.config.projection_class_embeddings_input_dim
    if pipe.unet.config.class_embed_type != "projection" or unet_in != 2 * d:
        raise DataError(
            f"inconsistent unCLIP pipeline: image_normalizer width {d} but UNet class embedding "
            f"{pipe.unet.config.class_embed_type!r} with input width {unet_in} (expected {2 * d})"
        )
    return d


def expected_embed_norm(pipe: StableUnCLIPImg2ImgPipeline) -> float:
    """Typical L2 norm of the CLIP image embeddings the pipeline was trained on.

    The image normaliser stores their per-dimension mean and std, so
    E||x||^2 = ||mean||^2 + ||std||^2; in high dimensions norms concentrate around its root.
    """
    mean = pipe.image_normalizer.mean.detach().float()
    std = pipe.image_normalizer.std.detach().float()
    return float(torch.sqrt((mean**2).sum() + (std**2).sum()))


def reconstruct_unclip(
    pipe: StableUnCLIPImg2ImgPipeline,
    image_embeds: np.ndarray,
    *,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
    out_size: int = 64,
    noise_level: int = 0,
    prompt: str | Sequence[str] = "",
    batch_size: int = 8,
    progress: bool = True,
    embed_norm: float | None = None,
    first_row: int = 0,
    init_images: np.ndarray | None = None,
    strength: float = 1.0,
    prompt_embeds: np.ndarray | None = None,
) -> np.ndarray:
    """One image per embedding row: (N, D) -> uint8 (N, out_size, out_size, 3).

    Rows are L2-normalised, then scaled to ``embed_norm`` (None: ``expected_embed_norm``,
    the typical norm of the real CLIP embeddings the pipeline was trained on). Ridge
    predictions are shrunk towards the mean, and the project's CLIP targets are unit-norm,
    while SD unCLIP was trained on raw (unnormalised) CLIP image embeddings; only the
    direction carries the prediction, and a too-short embedding would act as a weak
    condition. ``noise_level`` (0..999) noises the embedding first (more variation, less
    fidelity). ``prompt``: one text for all images or one per row (e.g. predicted captions);
    '' is the unconditional text. ``prompt_embeds`` (N, L, H) replace the prompt: the text
    encoder's token states of a caption (``encode_text_tokens``), e.g. predicted from fMRI;
    classifier-free guidance then contrasts them with the empty prompt.

    All noise of row i (embedding noise, initial latents) comes from a CPU generator seeded by
    (``seed``, ``first_row`` + i), so ``batch_size`` does not change what is sampled and rows
    ``a:b`` of a call equal a call on those rows with ``first_row=a`` (how runs resume); same
    seed and batch size -> identical images. (Batched float kernels may add in another order,
    so another batch size can move a rare pixel by one grey level.) Images are generated at
    the pipeline's native resolution and resized (bicubic) to ``out_size``.

    Two-stage (img2img): ``init_images`` uint8 (N, H, W, 3), e.g. the low-level first guess,
    are resized (Lanczos) to the pipeline's resolution, VAE-encoded (posterior mean), noised to
    the level of ``strength`` (noise from a second per-row generator) and denoised over the last
    ``int(strength * steps)`` steps; the predicted embedding conditions every step as usual.
    ``strength`` 1 or no init: from pure noise; no step to run: the init images come back.
    """
    d = image_embed_dim(pipe)
    x = np.asarray(image_embeds)
    if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
        raise DataError(
            f"image embeddings must be (N, {d}) with N >= 1 for this unCLIP pipeline "
            f"(expected width {d}), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError("image embeddings contain non-finite (NaN or inf) values")
    n = len(x)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    if (norms == 0).any():
        raise DataError(f"image embedding rows {np.flatnonzero(norms == 0)[:5].tolist()} are zero")
    if steps < 1 or batch_size < 1 or out_size < 1:
        raise DataError(
            f"steps, batch_size and out_size must be >= 1 ({steps}, {batch_size}, {out_size})"
        )
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    n_levels = pipe.image_noising_scheduler.config.num_train_timesteps
    if not 0 <= noise_level < n_levels:
        raise DataError(f"noise_level must be in [0, {n_levels - 1}], got {noise_level}")
    prompts = [prompt] * n if isinstance(prompt, str) else [str(p) for p in prompt]
    if len(prompts) != n:
        raise DataError(f"{len(prompts)} prompts for {n} image embeddings")
    if prompt_embeds is not None:
        prompt_embeds = _check_prompt_embeds(pipe, prompt_embeds, n)
        if any(prompts):
            raise DataError("give either a text prompt or prompt embeddings, not both")

    if not 0.0 <= strength <= 1.0:
        raise DataError(f"strength must be in [0, 1], got {strength}")
    n_run = steps
    if init_images is not None:
        init_images = np.asarray(init_images)
        if init_images.ndim != 4 or init_images.dtype != np.uint8 or len(init_images) != n:
            raise DataError(
                f"init images must be uint8 (N={n}, H, W, 3), got {init_images.dtype} "
                f"{init_images.shape}"
            )
        n_run = int(strength * steps + 1e-6)
        if n_run == 0:  # nothing to denoise
            return resize_images(init_images, out_size, Image.BICUBIC)

    target = expected_embed_norm(pipe) if embed_norm is None else float(embed_norm)
    x = (x / norms[:, None] * target).astype(np.float32)
    device = pipe._execution_device
    dtype = pipe.unet.dtype
    from_init = init_images is not None and n_run < steps
    size = pixel_size(pipe)
    if from_init and init_images.shape[1:3] != (size, size):
        init_images = resize_images(init_images, size, Image.LANCZOS)

    saved_bar = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(disable=True)
    out = np.empty((n, out_size, out_size, 3), dtype=np.uint8)
    try:
        starts = range(0, n, batch_size)
        for s in tqdm(starts, desc="sd_unclip batches", disable=not progress):
            rows = range(s, min(s + batch_size, n))
            row_ids = [first_row + i for i in rows]
            latents = None
            if from_init:
                init = init_images[s : rows.stop]
                latents = _noised_init(pipe, init, steps, n_run, seed, row_ids)
            with _last_timesteps(pipe.scheduler, n_run):
                text = {"prompt": prompts[s : rows.stop]}
                if prompt_embeds is not None:
                    emb = torch.from_numpy(prompt_embeds[s : rows.stop])
                    text = {"prompt_embeds": emb.to(device, dtype)}
                imgs = pipe(
                    **text,
                    image_embeds=torch.from_numpy(x[s : rows.stop]).to(device, dtype),
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    noise_level=noise_level,
                    generator=[row_generator(seed, i) for i in row_ids],
                    latents=latents,
                    output_type="np",
                ).images
            imgs = (np.clip(imgs, 0.0, 1.0) * 255.0).round().astype(np.uint8)
            if imgs.shape[1] != out_size or imgs.shape[2] != out_size:
                imgs = resize_images(imgs, out_size, Image.BICUBIC)
            out[s : rows.stop] = imgs
    finally:
        pipe._progress_bar_config = saved_bar
    return out


def _check_prompt_embeds(
    pipe: StableUnCLIPImg2ImgPipeline, prompt_embeds: np.ndarray, n: int
) -> np.ndarray:
    """Token states (N, L, H) as float32, with H the text encoder's width and no NaN."""
    x = np.asarray(prompt_embeds)
    width = int(pipe.text_encoder.config.hidden_size)
    if x.ndim != 3 or x.shape[0] != n or x.shape[2] != width:
        raise DataError(
            f"prompt embeddings must be (N={n}, tokens, {width}) for this unCLIP pipeline's "
            f"text encoder, got shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise DataError("prompt embeddings contain non-finite (NaN or inf) values")
    return x.astype(np.float32)


@torch.no_grad()
def encode_text_tokens(
    pipe: StableUnCLIPImg2ImgPipeline,
    texts: Sequence[str],
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """The token states (N, L, H) float32 the pipeline conditions on for ``texts``: what its
    own prompt encoding makes (tokenizer padded to its maximum length, text encoder, SD 2's
    layer choice); the targets a mapper predicts for caption conditioning."""
    texts = [str(t) for t in texts]
    if not texts:
        raise DataError("no texts to encode")
    device = pipe._execution_device
    out = []
    starts = range(0, len(texts), batch_size)
    for a in tqdm(starts, desc="caption token states", disable=not progress):
        emb, _ = pipe.encode_prompt(texts[a : a + batch_size], device, 1, False)
        out.append(emb.float().cpu().numpy())
    return np.concatenate(out)


#: offset of the seed of the init-image noise (kept apart from the pipeline's own noise)
INIT_NOISE_SEED = 1_000_003


@contextlib.contextmanager
def _last_timesteps(scheduler, n_run: int):
    """While active, ``scheduler.set_timesteps(steps)`` keeps only the last ``n_run`` steps
    (img2img: the pipeline then denoises from the noised init over those steps only)."""
    original = scheduler.set_timesteps

    def truncated(num_inference_steps: int, *args, **kwargs):
        original(num_inference_steps, *args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[num_inference_steps - n_run :]

    scheduler.set_timesteps = truncated
    try:
        yield
    finally:
        del scheduler.set_timesteps  # back to the class method


@torch.no_grad()
def _noised_init(
    pipe: StableUnCLIPImg2ImgPipeline,
    init: np.ndarray,
    steps: int,
    n_run: int,
    seed: int,
    rows: list[int],
) -> torch.Tensor:
    """VAE latents of the init images noised to the first of the last ``n_run`` of ``steps``."""
    device = pipe._execution_device
    z0 = images_to_latents(pipe, init)
    noise = torch.stack(
        [
            torch.randn(z0.shape[1:], generator=row_generator(seed + INIT_NOISE_SEED, i))
            for i in rows
        ]
    ).to(device)
    pipe.scheduler.set_timesteps(steps, device=device)
    t_start = pipe.scheduler.timesteps[steps - n_run : steps - n_run + 1]
    latents = pipe.scheduler.add_noise(z0, noise, t_start.repeat(len(rows)))
    return latents.to(pipe.unet.dtype)
