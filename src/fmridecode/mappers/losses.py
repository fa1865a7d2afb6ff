"""Losses of the network mappers (voxels -> embedding), pure torch.

Every loss takes float tensors of shape (B, d) (rows are samples) and returns a scalar tensor,
so the training loop can weight and add them freely:

- ``cosine_loss``: 1 - cosine similarity, mean over rows. Brain2Word (Affolter et al. 2020)
  trains its GloVe regression head with Keras' "cosine proximity"; Mind Reader (Lin et al.
  2022) combines a cosine term with MSE and a contrastive term.
- ``mse_loss``: mean squared error over all elements (Mind Reader's MSE term, Brain2Word's
  reconstruction term, the latent regression of BrainCLIP's VAE variant).
- ``info_nce``: CLIP's symmetric contrastive loss between predictions and targets (BrainCLIP,
  Liu et al. 2023; Mind Reader's contrastive term).
- ``kl_normal``: KL divergence of a diagonal Gaussian posterior to N(0, I) (the VAE of BrainCLIP).
- ``brainclip_loss``: BrainCLIP's weighted sum of InfoNCE to the CLIP image embedding and
  InfoNCE to the CLIP text embedding (supervision V, T or V&T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["brainclip_loss", "cosine_loss", "info_nce", "kl_normal", "mse_loss"]


def _pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``pred`` and ``target`` are 2D float tensors of one shape."""
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred and target must both be (B, d), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{name}: pred and target must be float tensors")


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``1 - cos(pred_i, target_i)``: 0 when aligned, 2 when opposite.

    Brain2Word (Affolter et al. 2020) fits its embedding head with Keras' "cosine proximity";
    Mind Reader (Lin et al. 2022) uses the same term next to MSE. Only directions matter, which
    suits CLIP embeddings (compared by cosine downstream). A zero row counts as cosine 0
    (``F.cosine_similarity`` clamps the norms at 1e-8).
    """
    _pair(pred, target, "cosine_loss")
    return (1.0 - F.cosine_similarity(pred, target, dim=1, eps=1e-8)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all B * d elements (``torch.nn.functional.mse_loss``).

    Mind Reader's (Lin et al. 2022) MSE term, Brain2Word's (Affolter et al. 2020) voxel
    reconstruction, and the latent regression of BrainCLIP's (Liu et al. 2023) VAE variant.
    """
    _pair(pred, target, "mse_loss")
    return F.mse_loss(pred, target, reduction="mean")


def info_nce(
    pred: torch.Tensor, target: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """CLIP-style symmetric InfoNCE between the rows of ``pred`` and of ``target``.

    Rows are L2-normalised, ``logits = pred_n @ target_n.T / temperature`` (B, B), and the loss
    is the mean of the cross-entropy over rows (each prediction must pick its own target among
    the batch) and over columns (each target must pick its own prediction), the diagonal being
    the labels (CLIP, Radford et al. 2021; BrainCLIP, Liu et al. 2023; Mind Reader's
    contrastive term, Lin et al. 2022). A uniform logit matrix gives log(B); a perfect
    diagonal at a low temperature gives ~0.

    Duplicate targets in a batch (the same image shown twice) are *not* merged: each row's only
    positive is its own column, so a duplicate counts as a negative. Batches drawn over unique
    stimuli (or averaged repeats) avoid that.

    ``temperature`` is a positive float or a scalar tensor (e.g. a learned one: pass
    ``log_t.exp()``). ``B`` must be at least 1; with ``B == 1`` the loss is 0.
    """
    _pair(pred, target, "info_nce")
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise ValueError("info_nce: temperature must be a scalar")
        if not bool(temperature.detach() > 0):
            raise ValueError(f"info_nce: temperature must be > 0, got {temperature.item()}")
    elif not temperature > 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    logits = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T / temperature
    labels = torch.arange(pred.shape[0], device=pred.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over latent dims, mean over rows.

    Closed form per dimension: ``0.5 * (mu^2 + exp(logvar) - 1 - logvar)`` (Kingma & Welling
    2014), the regulariser of the VAE that BrainCLIP (Liu et al. 2023) pretrains on CLIP image
    embeddings.
    """
    _pair(mu, logvar, "kl_normal")
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(dim=1).mean()


def brainclip_loss(
    pred: torch.Tensor,
    image: torch.Tensor,
    text: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float | torch.Tensor,
) -> torch.Tensor:
    """BrainCLIP's (Liu et al. 2023) objective: ``alpha * info_nce(pred, image) +
    beta * info_nce(pred, text)``.

    ``image`` and ``text`` are the CLIP image and text embeddings of the seen stimuli (B, d).
    A weight of exactly 0 skips its term (not computed, so ``text`` may be any tensor of the
    right shape when ``beta == 0``): supervision V is ``beta = 0``, T is ``alpha = 0``, V&T
    uses both. Both weights 0, or a negative weight, raise ValueError.
    """
    if alpha < 0 or beta < 0 or (alpha == 0 and beta == 0):
        raise ValueError(
            f"brainclip_loss: alpha and beta must be >= 0 and not both 0, got {alpha}, {beta}"
        )
    terms = []
    if alpha != 0:
        terms.append(alpha * info_nce(pred, image, temperature))
    if beta != 0:
        terms.append(beta * info_nce(pred, text, temperature))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
