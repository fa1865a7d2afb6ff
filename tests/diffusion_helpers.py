"""Shared by the real-pipeline tests: what img2img should keep of an init image."""

import numpy as np
import torch


def zero_unet_and_round_trip(unet, vae, init: np.ndarray) -> np.ndarray:
    """Zero ``unet``'s output layer (DDIM with epsilon prediction then only rescales the noised
    init latent) and return the init images' VAE round trip, decode(encode(init)), as 0-255
    floats: with random tiny weights that is what a low img2img strength must keep."""
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    with torch.no_grad():
        x = torch.from_numpy(init).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        rt = vae.decode(vae.encode(x).latent_dist.mean).sample
    return ((rt.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
