"""The low-level first guess of the real pipelines: stimuli <-> their VAE's latents.

Brain-Diffuser's first stage predicts a latent of an autoencoder from fMRI and decodes it into
a blurry first guess that the second stage refines by img2img. Here the autoencoder is the
generator's own VAE (Versatile Diffusion's, SD unCLIP's): ``encode_latents`` makes the
training targets from the stimuli, ``decode_latents`` turns predicted latents into images, and
``images_to_latents`` is the img2img encoding of the first guess. Latents are the VAE
posterior mean times ``vae.config.scaling_factor``, as the UNet sees them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fmridecode.generators.pipeline import to_uint8
from fmridecode.images import resize_images
from fmridecode.io import DataError

BATCH = 32  # images per VAE call


def pixel_size(pipe) -> int:
    """Side in pixels of the images ``pipe`` generates (its UNet's latent size x VAE factor)."""
    unet = getattr(pipe, "image_unet", None) or pipe.unet
    return int(unet.config.sample_size or 64) * int(pipe.vae_scale_factor)


def latent_shape(pipe) -> tuple[int, int, int]:
    """(C, h, w) of one image's latent."""
    side = pixel_size(pipe) // int(pipe.vae_scale_factor)
    return int(pipe.vae.config.latent_channels), side, side


def check_images(images: np.ndarray, what: str) -> np.ndarray:
    """uint8 (N, H, W, 3) with N >= 1, else a DataError naming ``what``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise DataError(f"{what} must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


@torch.no_grad()
def images_to_latents(pipe, images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3), resized (Lanczos) to the pipeline's resolution -> float32 latents
    (N, C, h, w) on the pipeline's device."""
    size = pixel_size(pipe)
    if images.shape[1:3] != (size, size):
        images = resize_images(images, size, Image.LANCZOS)
    device, vae = pipe._execution_device, pipe.vae
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    z = vae.encode(x.to(device, vae.dtype)).latent_dist.mean.float()
    return z * vae.config.scaling_factor


def encode_latents(pipe, images: np.ndarray, progress: bool = True) -> np.ndarray:
    """Stimuli -> latents (N, C, h, w) float32 on the CPU: the first stage's targets."""
    images = check_images(images, "stimulus images")
    starts = tqdm(range(0, len(images), BATCH), desc="VAE latents", disable=not progress)
    return torch.cat([images_to_latents(pipe, images[s : s + BATCH]).cpu() for s in starts]).numpy()


@torch.no_grad()
def decode_latents(pipe, latents: np.ndarray, out_size: int) -> np.ndarray:
    """Predicted latents (N, C, h, w) -> uint8 (N, out_size, out_size, 3): the first guess."""
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 4 or latents.shape[1:] != latent_shape(pipe):
        raise DataError(f"latents must be (N, *{latent_shape(pipe)}), got {latents.shape}")
    if not np.isfinite(latents).all():
        raise DataError("latents contain non-finite values")
    device, vae = pipe._execution_device, pipe.vae
    out = []
    for s in range(0, len(latents), BATCH):
        z = torch.from_numpy(latents[s : s + BATCH]).to(device, vae.dtype)
        imgs = to_uint8(vae.decode(z / vae.config.scaling_factor).sample)
        if imgs.shape[1:3] != (out_size, out_size):
            imgs = resize_images(imgs, out_size, Image.BICUBIC)
        out.append(imgs)
    return np.concatenate(out)
