"""One optimisation step with the checks every trainer in the workflow needs."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def checked_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    where: str,
    clip_params: Iterable[torch.nn.Parameter] | None = None,
    clip_norm: float = 1.0,
) -> None:
    """Backpropagate ``loss`` and step ``optimizer``; a non-finite loss stops training with
    ``where`` (which model, epoch, step, learning rate) in the message instead of silently
    filling the weights with NaN. ``clip_params``: clip their gradient norm to ``clip_norm``."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{where}: non-finite training loss; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, clip_norm)
    optimizer.step()
