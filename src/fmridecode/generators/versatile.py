"""The ``versatile_diffusion`` generator: Brain-Diffuser's second stage (Ozcelik & VanRullen 2023).

Versatile Diffusion (VD) dual-guided img2img, with the conditioning *injected*: token-level
CLIP-vision embeddings (257 x 768 for the real model) and CLIP-text embeddings (77 x 768)
predicted from fMRI replace what the pipeline would compute from a real image and prompt. The
sampling starts from an init image (the low-level first guess) noised to ``strength`` (0.75:
the last 37 of 50 DDIM steps) and uses classifier-free guidance. Brain-Diffuser mixes the two
conditions 0.6 image / 0.4 text.

How ``diffusers.VersatileDiffusionDualGuidedPipeline`` (deprecated, still shipped in 0.42)
conditions its ``image_unet``: every cross-attention block is a ``DualTransformer2DModel``
holding two transformers, ``transformers[0]`` from VD's image-generation UNet (trained on the
CLIP-*vision* context) and ``transformers[1]`` from its text UNet (trained on the CLIP-*text*
context). The UNet gets one context, ``cat([text_tokens, image_tokens], dim=1)``; each block
slices it by ``condition_lengths`` and sends the text slice to ``transformers[1]`` and the
image slice to ``transformers[0]`` (``set_transformer_params(mix_ratio, ("text", "image"))``),
then mixes the two residuals as ``mix_ratio * text + (1 - mix_ratio) * image``. So the
pipeline's ``text_to_image_strength`` (= ``mix_ratio``) is the *text* weight:
``image_weight = 1 - mix_ratio``. The unconditional branch of guidance is the same mix of the
empty prompt and a blank grey image, encoded exactly as the pipeline does.

Normalisation of the tokens (what a mapper must predict): the pipeline's ``_encode_image_prompt``
takes *all* tokens of the last vision layer through ``post_layernorm`` and ``visual_projection``
(which CLIP itself applies only to the class token) and divides them by the norm of token 0, so
the class token (= the usual CLIP image embedding) has unit norm and the patch tokens keep their
scale relative to it. ``_encode_text_prompt`` takes all tokens of the last text layer (already
final-layer-normed) through ``text_projection`` and divides them by the norm of the pooled
embedding (the projected end-of-text token, ``text_embeds``), so that token is unit-norm. VD was
trained on exactly this (its own ``clip_encode_vision`` / ``clip_encode_text`` normalise the same
way) and Brain-Diffuser regresses fMRI onto these normalised tokens. ``encode_condition_tokens``
returns them through the pipeline's own methods; ``reconstruct_versatile`` injects its inputs as
they are (no renormalisation), so predictions must be in that space. Rescaling shrunken ridge
predictions (Brain-Diffuser matches them to the training targets' mean and std per feature) is
the mapper's job, not this module's.

``build_tiny_versatile`` assembles the same pipeline from small random components, laid out
like the real checkpoint (a plain ``image_unet`` plus a ``text_unet`` whose transformers the
pipeline merges in on load), so save / load / encode / reconstruct are tested without weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    UNet2DConditionModel,
    VersatileDiffusionDualGuidedPipeline,
)
from diffusers.models import DualTransformer2DModel
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (
    UNetFlatConditionModel,
)
from PIL import Image
from tqdm.auto import tqdm
from transformers import (
    CLIPImageProcessor,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
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
from fmridecode.generators.pipeline import to_uint8
from fmridecode.generators.seeding import row_generator
from fmridecode.generators.vae_latents import check_images, images_to_latents
from fmridecode.images import resize_images
from fmridecode.io import DataError, atomic_dir

PIPELINE_CLASS = "VersatileDiffusionDualGuidedPipeline"
# model_index.json classes a local folder may have: the dual-guided pipeline saved by us, or the
# universal checkpoint (shi-labs/versatile-diffusion), whose components it loads by name.
ACCEPTED_CLASSES = (PIPELINE_CLASS, "VersatileDiffusionPipeline")

# Tiny components: token width (= UNet cross-attention width), text length, image patching.
TINY_DIM = 32
TINY_TEXT_TOKENS = 16
TINY_IMAGE_SIZE = 32
TINY_PATCH = 8  # -> (32 / 8)^2 + 1 = 17 image tokens

# The unconditional image of the pipeline's guidance: a blank grey 512 x 512 float image.
UNCOND_IMAGE = np.zeros((512, 512, 3)) + 0.5
ENCODE_BATCH = 32  # images / prompts per encoder call in encode_condition_tokens


# ---------------------------------------------------------------- building a tiny pipeline


def build_tiny_versatile(out_dir: str | os.PathLike, sample_size: int = 32, seed: int = 0) -> Path:
    """Save a VersatileDiffusionDualGuidedPipeline of small random components; return ``out_dir``.

    Same layout as the real checkpoint: ``image_unet`` (UNet2DConditionModel with plain
    Transformer2DModel cross-attention on 32-wide tokens) and ``text_unet`` (VD's
    UNetFlatConditionModel with transformers at the same places); on load the pipeline merges
    them into DualTransformer2DModel blocks, as it does for the real weights. 17 image tokens
    (32 px, 8 px patches) and 16 text tokens. ``sample_size`` is the latent size; the VAE
    downsamples by 2, so images are ``2 * sample_size`` pixels. Same arguments -> same
    weights. The folder appears whole or not at all.
    """
    if sample_size < 8 or sample_size % 4:
        raise DataError(f"{out_dir}: sample_size must be a multiple of 4, >= 8, got {sample_size}")
    tokenizer = tiny_tokenizer(TINY_TEXT_TOKENS)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(
        tiny_text_config(tokenizer, TINY_DIM, TINY_TEXT_TOKENS)
    ).eval()
    torch.manual_seed(seed + 1)
    image_encoder = CLIPVisionModelWithProjection(
        tiny_vision_config(TINY_DIM, TINY_DIM, TINY_IMAGE_SIZE, TINY_PATCH)
    ).eval()
    image_feature_extractor = CLIPImageProcessor(
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}, size=TINY_IMAGE_SIZE
    )
    channels = (32, 64)
    torch.manual_seed(seed + 2)
    image_unet = UNet2DConditionModel(  # the real one: SD 1.x layout, 320..1280, 8 heads
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_DIM,
        attention_head_dim=2,
    ).eval()
    torch.manual_seed(seed + 3)
    text_unet = UNetFlatConditionModel(  # the real one generates 768-d text latents
        in_channels=(8, 1, 1),
        out_channels=(8, 1, 1),
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockFlat", "DownBlockFlat"),
        up_block_types=("UpBlockFlat", "CrossAttnUpBlockFlat"),
        cross_attention_dim=TINY_DIM,
        attention_head_dim=2,
    ).eval()
    torch.manual_seed(seed + 4)
    vae = tiny_vae(channels, 2 * sample_size)
    # Latents scaled to unit variance, as SD's 0.18215 does for its VAE (the default would
    # leave this random VAE's latents tiny next to the diffusion noise).
    with torch.no_grad():
        x = torch.rand((4, 3, 2 * sample_size, 2 * sample_size)) * 2 - 1
        latent_std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / latent_std)
    # As the diffusers conversion script writes VD's DDIM scheduler (SD 1.x betas).
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    # Built without text_unet, then given it: the constructor would otherwise merge the
    # transformers now and save an already-dual image_unet; the real checkpoint is unmerged.
    pipe = VersatileDiffusionDualGuidedPipeline(
        tokenizer=tokenizer,
        image_feature_extractor=image_feature_extractor,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        image_unet=image_unet,
        text_unet=None,
        vae=vae,
        scheduler=scheduler,
    )
    pipe.register_modules(text_unet=text_unet)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        pipe.save_pretrained(tmp)
    return out_dir


# ---------------------------------------------------------------- loading and shapes


def _load_components(source: str, tdtype: torch.dtype, with_text_unet: bool) -> dict:
    """The pipeline's components, each loaded from its subfolder of ``source`` (offline).

    Why not ``VersatileDiffusionDualGuidedPipeline.from_pretrained``: in diffusers 0.42 the
    pipeline lives under ``pipelines/deprecated/``, so ``model_index.json`` cannot name
    ``UNetFlatConditionModel`` in a way the loader resolves (the real checkpoint's
    ``versatile_diffusion`` library no longer exists as ``diffusers.pipelines.versatile_diffusion``,
    and ``save_pretrained`` writes ``diffusers``, which has no such class), even when the text
    UNet is passed in. Loading the parts by hand and calling the constructor is what
    ``from_pretrained`` would do, including merging the text transformers into the image UNet.
    """
    kw = dict(local_files_only=True)
    dkw = dict(kw, dtype=tdtype, low_cpu_mem_usage=False)  # diffusers models (no accelerate)
    scheduler_config = DDIMScheduler.load_config(source, subfolder="scheduler", **kw)
    if scheduler_config.get("_class_name") == "DDIMScheduler":
        scheduler = DDIMScheduler.from_config(scheduler_config)
    else:  # the real checkpoint ships PNDM; Brain-Diffuser samples with DDIM (same betas)
        scheduler = DDIMScheduler.from_config(
            scheduler_config, clip_sample=False, set_alpha_to_one=False
        )
    return dict(
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kw),
        image_feature_extractor=CLIPImageProcessor.from_pretrained(
            source, subfolder="image_feature_extractor", **kw
        ),
        text_encoder=CLIPTextModelWithProjection.from_pretrained(
            source, subfolder="text_encoder", dtype=tdtype, **kw
        ),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(
            source, subfolder="image_encoder", dtype=tdtype, **kw
        ),
        image_unet=UNet2DConditionModel.from_pretrained(source, subfolder="image_unet", **dkw),
        text_unet=(
            UNetFlatConditionModel.from_pretrained(source, subfolder="text_unet", **dkw)
            if with_text_unet
            else None
        ),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", **dkw),
        scheduler=scheduler,
    )


def load_versatile(
    path_or_id: str | os.PathLike, device: str | None = None, dtype: str = "auto"
) -> VersatileDiffusionDualGuidedPipeline:
    """Load the dual-guided pipeline from a local folder or the local HF cache, offline.

    ``path_or_id``: a folder (``build_tiny_versatile``'s, or a copy of
    ``shi-labs/versatile-diffusion``) or a model id already in the local Hugging Face cache;
    nothing is downloaded. ``device`` None: CUDA when available, else CPU. ``dtype`` 'auto':
    float16 on CUDA, float32 on CPU. On construction the pipeline merges the text UNet's
    transformers into the image UNet (DualTransformer2DModel blocks); the rest of the text UNet
    is then dropped (memory). The scheduler is DDIM (a PNDM one, as the real checkpoint has, is
    replaced by DDIM on the same betas: Brain-Diffuser samples with DDIM, eta 0).
    """
    device = resolve_device(device)
    tdtype = torch_dtype(dtype, device)
    name = str(path_or_id)
    source, config = resolve_pipeline(name, ACCEPTED_CLASSES, "versatile_diffusion")
    # a hub id ('owner/name') is looked up in the local cache only; the real one has a text UNet
    with_text_unet = config is None or (config.get("text_unet") or [None])[0] is not None
    try:
        pipe = VersatileDiffusionDualGuidedPipeline(
            **_load_components(source, tdtype, with_text_unet)
        )
    except Exception as e:  # diffusers/transformers/hub raise several types for broken folders
        raise load_error(name, PIPELINE_CLASS, config is not None, e) from e
    if not _dual_blocks(pipe):
        raise DataError(
            f"{name}: the image UNet has no DualTransformer2DModel blocks (no text_unet to merge "
            f"in?), so the text and image conditions cannot be mixed"
        )
    pipe.remove_unused_weights()
    pipe = pipe.to(device)
    for part in (pipe.image_unet, pipe.vae, pipe.text_encoder, pipe.image_encoder):
        part.eval()
    return pipe


class _DualTransformer(DualTransformer2DModel):
    """DualTransformer2DModel that accepts the ``encoder_attention_mask`` the UNet passes.

    In diffusers 0.42 the cross-attention blocks of UNet2DConditionModel call every attention
    module with ``encoder_attention_mask=...``, which ``DualTransformer2DModel.forward`` does
    not take: the stock pipeline fails with a TypeError on its first UNet call. No mask is
    used here (the pipeline never makes one), so it is checked to be None and dropped.
    """

    def forward(self, hidden_states, encoder_hidden_states, *args, **kwargs):
        mask = kwargs.pop("encoder_attention_mask", None)
        if mask is not None:
            raise ValueError("DualTransformer2DModel does not support encoder_attention_mask")
        return super().forward(hidden_states, encoder_hidden_states, *args, **kwargs)


def _dual_blocks(pipe: VersatileDiffusionDualGuidedPipeline) -> list[DualTransformer2DModel]:
    """The image UNet's dual (image + text) cross-attention blocks, made callable by the UNet."""
    blocks = [m for m in pipe.image_unet.modules() if isinstance(m, DualTransformer2DModel)]
    for block in blocks:
        block.__class__ = _DualTransformer  # same state; only ``forward`` differs
    return blocks


def token_shapes(
    pipe: VersatileDiffusionDualGuidedPipeline,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((n_image_tokens, dim), (n_text_tokens, dim)) the pipeline's UNet is conditioned on.

    From the encoders' configs: (image_size / patch_size)^2 patches + the class token, and the
    tokenizer's padded length; both projected to the UNet's cross-attention width. (257, 768)
    and (77, 768) for the real model (CLIP ViT-L/14).
    """
    vis = pipe.image_encoder.config
    n_image = (vis.image_size // vis.patch_size) ** 2 + 1
    n_text = int(pipe.tokenizer.model_max_length)
    d_image = int(pipe.image_encoder.config.projection_dim)
    d_text = int(pipe.text_encoder.config.projection_dim)
    d_unet = pipe.image_unet.config.cross_attention_dim
    if not d_image == d_text == d_unet:
        raise DataError(
            f"inconsistent Versatile Diffusion pipeline: image tokens {d_image}-d, text tokens "
            f"{d_text}-d, UNet cross-attention {d_unet}-d"
        )
    return (n_image, d_image), (n_text, d_text)


# ---------------------------------------------------------------- the true embeddings


@torch.no_grad()
def encode_condition_tokens(
    pipe: VersatileDiffusionDualGuidedPipeline,
    images: np.ndarray | None,
    prompts: list[str] | None,
    progress: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The true condition tokens of stimuli and captions, as the pipeline's encoders make them.

    ``images`` uint8 (N, H, W, 3) -> float32 (N, Ti, D) through ``_encode_image_prompt``;
    ``prompts`` (M strings) -> float32 (M, Tt, D) through ``_encode_text_prompt`` (both
    normalised as the module docstring describes). These are the regression targets a mapper
    predicts and what the 'true embedding' reconstruction feeds. A side given as None comes
    back as None. Prompts longer than the text encoder's context (77 tokens) are truncated,
    as the pipeline does (it logs what was cut).
    """
    if images is None and prompts is None:
        raise DataError("encode_condition_tokens: give images, prompts or both")
    device = pipe._execution_device
    image_tokens = text_tokens = None
    if images is not None:
        images = check_images(images, "stimulus images")
        parts = []
        starts = range(0, len(images), ENCODE_BATCH)
        for s in tqdm(starts, desc="image tokens", disable=not progress):
            batch = [Image.fromarray(im) for im in images[s : s + ENCODE_BATCH]]
            parts.append(pipe._encode_image_prompt(batch, device, 1, False).float().cpu())
        image_tokens = torch.cat(parts).numpy()
    if prompts is not None:
        if isinstance(prompts, str) or not len(prompts):
            raise DataError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        prompts = [str(p) for p in prompts]
        n_max = pipe.tokenizer.model_max_length
        lengths = [len(ids) for ids in pipe.tokenizer(prompts).input_ids]
        parts = []
        starts = range(0, len(prompts), ENCODE_BATCH)
        for s in tqdm(starts, desc="caption tokens", disable=not progress):
            batch = prompts[s : s + ENCODE_BATCH]
            # The pipeline tokenises once more without truncation (to warn about it), which
            # fails for a batch of over-long prompts of unequal lengths: those go one by one.
            long = max(lengths[s : s + ENCODE_BATCH]) > n_max
            for part in [[p] for p in batch] if long else [batch]:
                parts.append(pipe._encode_text_prompt(part, device, 1, False).float().cpu())
        text_tokens = torch.cat(parts).numpy()
    return image_tokens, text_tokens


@torch.no_grad()
def _unconditional_tokens(
    pipe: VersatileDiffusionDualGuidedPipeline,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, Tt, D) empty-prompt and (1, Ti, D) blank-image tokens: the pipeline's CFG negatives.

    Encoding '' and the grey image as the prompt gives exactly what ``_encode_*_prompt`` build
    as their negative branch (same tokenisation, same preprocessing, same normalisation).
    """
    device = pipe._execution_device
    text = pipe._encode_text_prompt([""], device, 1, False)
    image = pipe._encode_image_prompt([UNCOND_IMAGE], device, 1, False)
    return text, image


# ---------------------------------------------------------------- reconstruction


def _check_tokens(x: np.ndarray, expected: tuple[int, int], what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != tuple(expected) or not len(x):
        raise DataError(
            f"{what} must be (N, {expected[0]}, {expected[1]}) with N >= 1 for this pipeline, "
            f"got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError(f"{what} contain non-finite (NaN or inf) values")
    return x.astype(np.float32)


def _set_mix(pipe: VersatileDiffusionDualGuidedPipeline, image_weight: float) -> None:
    """Route text tokens to the text transformers and image tokens to the image ones; mix.

    The pipeline's ``set_transformer_params`` with ``mix_ratio`` = the text weight, then the
    condition lengths set from ``token_shapes`` (the pipeline hard-codes 257 image tokens).
    """
    (n_image, _), (n_text, _) = token_shapes(pipe)
    pipe.set_transformer_params(mix_ratio=1.0 - image_weight, condition_types=("text", "image"))
    for block in _dual_blocks(pipe):
        block.condition_lengths = [n_text, n_image]


@torch.no_grad()
def reconstruct_versatile(
    pipe: VersatileDiffusionDualGuidedPipeline,
    image_tokens: np.ndarray,
    text_tokens: np.ndarray | None,
    *,
    init_images: np.ndarray | None = None,
    strength: float = 0.75,
    image_weight: float = 0.6,
    steps: int = 50,
    guidance: float = 7.5,
    seed: int = 0,
    out_size: int = 64,
    batch_size: int = 4,
    progress: bool = True,
    first_row: int = 0,
) -> np.ndarray:
    """Dual-guided img2img from injected tokens: (N, Ti, D) [+ (N, Tt, D)] -> uint8 (N, S, S, 3).

    ``text_tokens`` None: image condition only (``image_weight`` is then 1; the text slot holds
    the empty prompt, weighted 0). Otherwise the two are mixed ``image_weight`` : 1 -
    ``image_weight`` inside every dual attention block (Brain-Diffuser: 0.6). The tokens go in
    as they are; they must be in the space ``encode_condition_tokens`` returns.

    ``init_images`` uint8 (N, H, W, 3), any size (resized, Lanczos, to the pipeline's
    resolution), are VAE-encoded (posterior mean), noised to the level of ``strength`` and
    denoised over the last ``int(strength * steps)`` DDIM steps (Brain-Diffuser's count: 37 of
    50 at 0.75). ``strength`` 1 or no init: from pure noise over all steps; 0 steps to run:
    the init images come back resized to ``out_size``. Guidance ``> 1``: classifier-free
    guidance against the empty prompt + blank image (the pipeline's negatives), same mix.

    The noise of row i comes from a generator seeded by (``seed``, ``first_row`` + i) and DDIM
    runs with eta 0, so the output does not depend on ``batch_size``, and rows ``a:b`` of a call
    equal a call on those rows with ``first_row=a`` (how runs resume); same seed -> same
    images. Images are made at the pipeline's resolution and resized (bicubic) to
    ``out_size``.
    """
    (n_image, d), text_shape = token_shapes(pipe)
    img = _check_tokens(image_tokens, (n_image, d), "image tokens")
    n = len(img)
    txt = None
    if text_tokens is not None:
        txt = _check_tokens(text_tokens, text_shape, "text tokens")
        if len(txt) != n:
            raise DataError(f"{len(txt)} rows of text tokens for {n} rows of image tokens")
    if not 0.0 <= strength <= 1.0:
        raise DataError(f"strength must be in [0, 1], got {strength}")
    if not 0.0 <= image_weight <= 1.0:
        raise DataError(f"image_weight must be in [0, 1], got {image_weight}")
    if steps < 1 or batch_size < 1 or out_size < 1:
        raise DataError(
            f"steps, batch_size and out_size must be >= 1 ({steps}, {batch_size}, {out_size})"
        )
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    if init_images is not None:
        init_images = check_images(init_images, "init images")
        if len(init_images) != n:
            raise DataError(f"{len(init_images)} init images for {n} rows of tokens")

    n_run = int(strength * steps + 1e-6) if init_images is not None else steps
    if n_run == 0:  # nothing to denoise
        if init_images.shape[1:3] == (out_size, out_size):
            return init_images.copy()
        return resize_images(init_images, out_size, Image.BICUBIC)

    device = pipe._execution_device
    dtype = pipe.image_unet.dtype
    scale = pipe.vae_scale_factor
    latent_size = pipe.image_unet.config.sample_size or 64  # VD: 64 latents, 512 px
    size = latent_size * scale
    channels = pipe.image_unet.config.in_channels
    pipe.scheduler.set_timesteps(steps, device=device)
    timesteps = pipe.scheduler.timesteps[steps - n_run :]
    from_init = init_images is not None and n_run < steps
    if from_init and init_images.shape[1:3] != (size, size):
        init_images = resize_images(init_images, size, Image.LANCZOS)
    guided = guidance > 1.0
    uncond_text, uncond_image = _unconditional_tokens(pipe)
    uncond = torch.cat([uncond_text, uncond_image], dim=1).to(device, dtype)
    _set_mix(pipe, 1.0 if txt is None else image_weight)
    extra = pipe.prepare_extra_step_kwargs(None, 0.0)

    out = np.empty((n, out_size, out_size, 3), dtype=np.uint8)
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc="versatile_diffusion batches", disable=not progress):
        rows = range(s, min(s + batch_size, n))
        b = len(rows)
        i_tok = torch.from_numpy(img[s : rows.stop]).to(device, dtype)
        t_tok = (
            uncond_text.to(device, dtype).expand(b, -1, -1)
            if txt is None
            else torch.from_numpy(txt[s : rows.stop]).to(device, dtype)
        )
        cond = torch.cat([t_tok, i_tok], dim=1)  # the pipeline's order: ("text", "image")
        context = torch.cat([uncond.expand(b, -1, -1), cond]) if guided else cond
        noise = torch.cat(
            [
                torch.randn(
                    (1, channels, latent_size, latent_size),
                    generator=row_generator(seed, first_row + i),
                    dtype=torch.float32,
                )
                for i in rows
            ]
        ).to(device)
        if from_init:
            z0 = images_to_latents(pipe, init_images[s : rows.stop])
            latents = pipe.scheduler.add_noise(z0, noise, timesteps[:1].repeat(b))
        else:
            latents = noise * pipe.scheduler.init_noise_sigma
        latents = latents.to(dtype)
        for t in timesteps:
            x_in = torch.cat([latents, latents]) if guided else latents
            x_in = pipe.scheduler.scale_model_input(x_in, t)
            eps = pipe.image_unet(x_in, t, encoder_hidden_states=context).sample
            if guided:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            latents = pipe.scheduler.step(eps, t, latents, **extra).prev_sample
        x = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        imgs = to_uint8(x)
        if imgs.shape[1:3] != (out_size, out_size):
            imgs = resize_images(imgs, out_size, Image.BICUBIC)
        out[s : rows.stop] = imgs
    return out
