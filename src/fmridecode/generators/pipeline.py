"""The tiny generator as a diffusers pipeline: a small UNet conditioned on CLIP image embeddings.

The conditioning path is ``embedding -> EmbeddingProjection (MLP) -> UNet class embedding``:
the UNet is built with ``class_embed_type="identity"``, so the projected vector (of the
time-embedding width) is added to the timestep embedding in every ResNet block. The
projection also holds a learned *null* embedding, used for condition dropout during training
and as the unconditional branch of classifier-free guidance at sampling time.

All three parts (``unet``, ``scheduler``, ``projection``) are registered pipeline modules,
so ``save_pretrained(dir)`` / ``EmbeddingDiffusionPipeline.from_pretrained(dir)`` round-trip
a local folder without any network access.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, ModelMixin, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn


class EmbeddingProjection(ModelMixin, ConfigMixin):
    """MLP from a (CLIP) embedding to the UNet's time-embedding width, plus a learned null.

    With ``normalize=True`` inputs are L2-normalised first: CLIP embeddings are unit-norm,
    while embeddings predicted from fMRI (ridge regression) are shrunk towards the mean;
    normalising puts both on the sphere the generator was trained on.
    """

    @register_to_config
    def __init__(self, embed_dim: int, out_dim: int, hidden_dim: int = 256, normalize: bool = True):
        super().__init__()
        self.null = nn.Parameter(torch.zeros(embed_dim))
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, embeds: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Project ``embeds`` (B, D); rows where ``drop`` (B,) is True get the null embedding."""
        x = embeds.to(self.null.dtype)
        if self.config.normalize:
            x = F.normalize(x, dim=-1, eps=1e-8)
        if drop is not None:
            x = torch.where(drop[:, None], self.null.expand_as(x), x)
        return self.mlp(x)

    def unconditional(self, batch: int) -> torch.Tensor:
        """The projected null embedding, repeated ``batch`` times."""
        return self.mlp(self.null.expand(batch, -1))


def build_unet(
    image_size: int,
    cond_dim: int,
    channels: tuple[int, ...] = (16, 32, 64, 64),
    layers_per_block: int = 1,
) -> UNet2DModel:
    """A small attention-free UNet2DModel; its class embedding takes a ``cond_dim`` vector."""
    n = len(channels)
    return UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        layers_per_block=layers_per_block,
        add_attention=False,
        norm_num_groups=8,
        time_embedding_dim=cond_dim,
        class_embed_type="identity",
    )


def build_scheduler(
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "v_prediction",
    num_train_timesteps: int = 1000,
) -> DDIMScheduler:
    """The DDIM sampler saved with the pipeline; training uses a DDPMScheduler with its config.

    The cosine schedule (Nichol & Dhariwal 2021) spends more of the 1000 steps at medium noise,
    where the colour and layout of small (16-32 px) images are decided; with the linear
    schedule most steps are near-pure noise at these sizes. ``v_prediction`` (the default)
    rather than ``epsilon``: with epsilon the loss barely rewards using the condition at high
    noise (where colour and layout are decided) and the trained model largely ignored it.
    """
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=True,
        timestep_spacing="trailing",
    )


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, size, size, 3) -> float (N, 3, size, size) in [-1, 1]; checks the shape."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"init images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}"
        )
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class EmbeddingDiffusionPipeline(DiffusionPipeline):
    """DDIM sampling with classifier-free guidance, conditioned on embeddings (N, D)."""

    model_cpu_offload_seq = "projection->unet"

    def __init__(
        self, unet: UNet2DModel, scheduler: DDIMScheduler, projection: EmbeddingProjection
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, projection=projection)

    @torch.no_grad()
    def __call__(
        self,
        embeds: torch.Tensor | np.ndarray,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        generator: torch.Generator | list[torch.Generator] | int | None = None,
        batch_size: int = 64,
        init_images: np.ndarray | None = None,
        strength: float = 1.0,
        guide: Callable[[torch.Tensor, slice], torch.Tensor] | None = None,
        guide_scale: float = 0.0,
    ) -> np.ndarray:
        """Sample one image per embedding row; returns uint8 (N, H, W, 3).

        All initial noise is drawn up front from ``generator`` (a seed is accepted too), or one
        image's noise from each generator of a list (one per row, as diffusers pipelines take
        them: what makes rows independent of how they are split into calls), so the result
        depends on the seed but not on ``batch_size``. DDIM with eta=0 is deterministic after
        that. ``guidance_scale == 1`` skips the unconditional pass.

        img2img (the second stage of two-stage reconstruction): ``init_images`` (N, S, S, 3)
        uint8 at the model's resolution are noised to the level of ``strength`` (0: returned
        as they are, 1: pure noise as without them) and denoised over the last
        ``round(strength * num_inference_steps)`` DDIM steps.

        Guidance by a differentiable loss (BrainCLIP-style CLIP guidance): ``guide(x0, rows)``
        returns one loss per image of the batch (``rows``: their positions in ``embeds``) for
        the current clean-image estimate ``x0`` (B, 3, H, W) in [-1, 1]. At every step the
        estimate is moved against the loss gradient, by ``guide_scale`` times the noise level
        sqrt(1 - alpha_t) (per-image gradient scaled to unit RMS), and the model output is
        replaced by the one consistent with the moved estimate, so DDIM continues from it.
        """
        embeds = torch.as_tensor(np.asarray(embeds) if not torch.is_tensor(embeds) else embeds)
        if embeds.ndim != 2 or embeds.shape[1] != self.projection.config.embed_dim:
            raise ValueError(
                f"embeds must be (N, {self.projection.config.embed_dim}), got {tuple(embeds.shape)}"
            )
        if not torch.isfinite(embeds).all():
            raise ValueError("embeds contain non-finite values")
        if num_inference_steps < 1 or batch_size < 1:
            raise ValueError("num_inference_steps and batch_size must be >= 1")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if isinstance(generator, int):
            generator = torch.Generator("cpu").manual_seed(generator)
        device = self.unet.device
        size = self.unet.config.sample_size
        n = embeds.shape[0]
        if isinstance(generator, list):
            if len(generator) != n:
                raise ValueError(f"{len(generator)} generators for {n} embeddings")
            noise = torch.stack(
                [torch.randn((3, size, size), generator=g, dtype=torch.float32) for g in generator]
            )
        else:
            noise = torch.randn((n, 3, size, size), generator=generator, dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if init_images is not None:
            x0 = from_uint8(init_images, size)
            if len(x0) != n:
                raise ValueError(f"{len(x0)} init_images for {n} embeddings")
            n_steps = round(strength * num_inference_steps)
            timesteps = timesteps[num_inference_steps - n_steps :]
            if n_steps == 0:
                return to_uint8(x0)
            t0 = timesteps[:1].repeat(n).cpu()
            noise = self.scheduler.add_noise(x0, noise, t0)
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        starts = range(0, n, batch_size)
        guided = guidance_scale != 1.0
        with self.progress_bar(total=len(starts)) as bar:
            bar.set_description("sampling batches")
            for s in starts:
                e = embeds[s : s + batch_size].to(device)
                b = e.shape[0]
                cond = self.projection(e)
                if guided:
                    cond = torch.cat([self.projection.unconditional(b), cond])
                x = noise[s : s + b].to(device, self.unet.dtype)
                for t in timesteps:
                    x_in = torch.cat([x, x]) if guided else x
                    eps = self.unet(x_in, t, class_labels=cond).sample
                    if guided:
                        eps_u, eps_c = eps.chunk(2)
                        eps = eps_u + guidance_scale * (eps_c - eps_u)
                    if guide is not None and guide_scale > 0:
                        eps = self._guided_output(eps, x, t, guide, guide_scale, slice(s, s + b))
                    x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
                out[s : s + b] = to_uint8(x)
                bar.update()
        return out

    def _guided_output(
        self,
        out: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        guide: Callable[[torch.Tensor, slice], torch.Tensor],
        scale: float,
        rows: slice,
    ) -> torch.Tensor:
        """The model output after moving its clean-image estimate down the guide's gradient."""
        a = self.scheduler.alphas_cumprod[int(t)].to(x.device, x.dtype)
        sa, sb = a.sqrt(), (1 - a).sqrt()
        v_pred = self.scheduler.config.prediction_type == "v_prediction"
        x0 = sa * x - sb * out if v_pred else (x - sb * out) / sa
        with torch.enable_grad():
            est = x0.detach().clamp(-1, 1).requires_grad_(True)
            (grad,) = torch.autograd.grad(guide(est, rows).sum(), est)
        rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        shift = scale * sb * grad / rms  # x0' = x0 - shift
        # the output that, with the same x_t, yields x0': v' = v + shift / sb (v-prediction);
        # eps' = eps + sa * shift / sb (epsilon)
        return out + shift / sb if v_pred else out + sa * shift / sb
