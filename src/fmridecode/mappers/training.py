"""Training loop shared by every trainable mapper: phases, early stopping, resumable checkpoints.

A mapper is trained in one or more *phases* (BrainCLIP's VAE: decoder on unpaired CLIP
embeddings, then the fMRI encoder; Mind Reader: MSE + cosine, then fine-tuning with the
contrastive term; Brain2Word: autoencoder, then regression). Each phase trains a subset of
the parameters with AdamW on its own loss and stops early when the validation loss has not
improved for ``patience`` epochs; the phase's best weights are restored at its end.

Determinism and resuming: the shuffling and the dropout of epoch ``e`` of phase ``k`` come
from generators seeded by ``(seed, k, e)``, not from a running RNG. After every epoch the
whole state (weights, optimiser, best weights, curve, counters) is written atomically to a
checkpoint; a killed job restarted with the same settings continues from the last finished
epoch and ends with exactly the weights of an uninterrupted run. The checkpoint carries a
key of the data and settings, so a changed config never resumes a stale run.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from fmridecode.io import DataError, atomic_path
from fmridecode.optim import checked_step

Batch = dict[str, torch.Tensor]
#: a phase's loss: (model, batch) -> (scalar loss, named parts for the curve)
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]

CHECKPOINT_FORMAT = "fmridecode.mapper-checkpoint.v1"


@dataclass(frozen=True)
class Phase:
    """One stage of training: which parameters learn, on which loss and data, for how long.

    ``data``: ``"paired"`` (fMRI rows with their targets) or ``"unpaired"`` (CLIP embeddings
    without fMRI, batch key ``emb``: BrainCLIP's VAE decoder pretraining).
    """

    name: str
    loss: LossFn
    parameters: Callable[[torch.nn.Module], Iterable[torch.nn.Parameter]]
    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.01
    data: str = "paired"
    #: called after ``model.train()`` at each epoch's start (e.g. keep frozen parts in eval mode)
    prepare: Callable[[torch.nn.Module], Any] | None = None


#: how a row's text target is made from its captions (``subject_data`` also takes "all")
CAPTION_CHOICES = ("mean", "random", "best")


@dataclass
class MapperData:
    """Training or validation rows of one subject: voxels, their targets and caption choices.

    ``x`` (n, p) float32 voxels; ``targets`` name -> (n, d) float32 (``image``, ``lowres``
    ...); ``captions`` one (k_i, d) array per row (the image's kept caption embeddings, most
    likely first): batch key ``text`` is a random caption per row and epoch when ``caption ==
    "random"`` (Mind Reader), the first (best) one for ``"best"``, else the L2-normalised mean
    of them (fixed). ``unpaired`` (m, d): embeddings without fMRI for ``unpaired`` phases.
    ``image_views`` (n, V, d): embeddings of augmented views of each row's image; with them,
    each epoch's ``image`` target is the image or one of its views, drawn per row (Mind
    Reader's augmentation); evaluation always uses the image itself.
    """

    x: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    captions: list[np.ndarray] | None = None
    caption: str = "mean"
    unpaired: np.ndarray | None = None
    image_views: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.x)
        if not np.isfinite(self.x).all():
            raise DataError("mapper training: voxels contain non-finite values")
        for name, t in self.targets.items():
            if len(t) != n:
                raise DataError(f"mapper training: target {name} has {len(t)} rows, voxels {n}")
        if self.captions is not None and len(self.captions) != n:
            raise DataError(f"mapper training: {len(self.captions)} caption sets for {n} rows")
        if self.image_views is not None and (
            self.image_views.ndim != 3 or len(self.image_views) != n or "image" not in self.targets
        ):
            raise DataError(f"mapper training: image views must be (n={n}, views, d)")
        if self.caption not in CAPTION_CHOICES:
            raise ValueError(f"caption must be one of {CAPTION_CHOICES}, got {self.caption!r}")

    def text(self, rng: np.random.Generator | None) -> np.ndarray | None:
        """One text target per row: a random caption (``rng`` given, caption random) or the
        normalised mean caption."""
        if self.captions is None:
            return None
        if self.caption == "random" and rng is not None:
            return np.stack([c[rng.integers(len(c))] for c in self.captions]).astype(np.float32)
        if self.caption == "best":
            return np.stack([c[0] for c in self.captions]).astype(np.float32)
        mean = np.stack([c.mean(axis=0) for c in self.captions])
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        return (mean / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def tensors(self, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """The paired arrays of one epoch (``x``, each target, ``text``)."""
        out = {"x": self.x, **self.targets}
        if self.image_views is not None and rng is not None:  # the image or one of its views
            pick = rng.integers(0, self.image_views.shape[1] + 1, len(self.x))
            views = self.image_views[np.arange(len(self.x)), np.maximum(pick - 1, 0)]
            out["image"] = np.where((pick > 0)[:, None], views, self.targets["image"])
        text = self.text(rng)
        if text is not None:
            out["text"] = text
        return out


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and dropout: a function of (seed, phase, epoch)."""
    return int(np.random.SeedSequence([seed, phase, epoch]).generate_state(1)[0])


def _batches(arrays: dict[str, np.ndarray], batch_size: int, order: np.ndarray, device: str):
    n_batches = max(1, math.ceil(len(order) / batch_size))
    for rows in np.array_split(order, n_batches):
        yield {k: torch.as_tensor(v[rows], device=device) for k, v in arrays.items()}


def _phase_arrays(phase: Phase, data: MapperData, rng: np.random.Generator | None):
    if phase.data == "unpaired":
        if data.unpaired is None:
            raise DataError(f"phase {phase.name}: needs unpaired embeddings, none given")
        return {"emb": data.unpaired}
    if phase.data != "paired":
        raise ValueError(f"phase {phase.name}: data must be 'paired' or 'unpaired'")
    return data.tensors(rng)


@torch.no_grad()
def evaluate(model: torch.nn.Module, phase: Phase, data: MapperData, batch_size: int, device: str):
    """Mean loss (and parts) of ``phase`` on ``data`` in eval mode, fixed text targets."""
    model.eval()
    arrays = _phase_arrays(phase, data, None)
    n = len(next(iter(arrays.values())))
    total, parts = 0.0, {}
    for batch in _batches(arrays, batch_size, np.arange(n), device):
        loss, p = phase.loss(model, batch)
        b = len(next(iter(batch.values())))
        total += float(loss) * b
        for k, v in p.items():
            parts[k] = parts.get(k, 0.0) + float(v) * b
    return total / n, {k: v / n for k, v in parts.items()}


@dataclass
class TrainResult:
    """What training did: the curve (one row per phase and epoch) and where it stopped."""

    curve: pd.DataFrame
    resumed_from: str | None
    stops: dict[str, str]


def train_phases(
    model: torch.nn.Module,
    phases: list[Phase],
    train: MapperData,
    val: MapperData,
    *,
    batch_size: int,
    patience: int,
    seed: int,
    checkpoint: str | Path,
    key: str,
    device: str = "cpu",
    desc: str = "mapper",
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` through ``phases`` on ``train``, early-stopped on ``val``.

    ``checkpoint``: where the state is saved after every epoch (resumed when it exists and
    its ``key`` matches; the caller removes it once its outputs are written). ``key``: a hash
    of everything the weights depend on. Returns the curve with columns ``phase, epoch,
    train_loss, val_loss, seconds, best`` plus ``train_<part>`` / ``val_<part>`` of the loss.
    """
    if batch_size < 2 or patience < 1:
        raise ValueError("batch_size must be >= 2 and patience >= 1")
    if len(val.x) == 0:
        raise DataError("mapper training: the validation split is empty")
    model.to(device)
    checkpoint = Path(checkpoint)
    state = _load_checkpoint(checkpoint, key)
    resumed = None
    if state is None:
        state = {"phase": 0, "epoch": 0, "curve": [], "stops": {}}
        state |= _fresh_phase_state(model, phases[0] if phases else None)
    else:
        model.load_state_dict(state["model"])
        resumed = f"phase {state['phase']}, epoch {state['epoch']}"
    while state["phase"] < len(phases):
        k = state["phase"]
        phase = phases[k]
        params = _only_trainable(model, phase)
        opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
        if state.get("optimizer") is not None:
            opt.load_state_dict(state["optimizer"])
        bar = tqdm(
            total=phase.epochs, initial=state["epoch"], desc=f"{desc} {phase.name}",
            file=sys.stderr, disable=not progress,
        )  # fmt: skip
        stop = "epochs"
        while state["epoch"] < phase.epochs:
            e = state["epoch"]
            t0 = time.perf_counter()
            s = epoch_seed(seed, k, e)
            rng = np.random.default_rng(s)
            torch.manual_seed(s)
            arrays = _phase_arrays(phase, train, rng)
            n = len(next(iter(arrays.values())))
            model.train()
            if phase.prepare is not None:
                phase.prepare(model)
            total, parts = 0.0, {}
            for batch in _batches(arrays, batch_size, rng.permutation(n), device):
                loss, p = phase.loss(model, batch)
                checked_step(loss, opt, f"{desc}, phase {phase.name}, epoch {e} (lr {phase.lr:g})")
                b = len(next(iter(batch.values())))
                total += loss.item() * b
                for name, v in p.items():
                    parts[name] = parts.get(name, 0.0) + float(v) * b
            val_loss, val_parts = evaluate(model, phase, val, batch_size, device)
            best = state["best_val"]
            improved = not math.isfinite(best) or val_loss < best - 1e-6 * abs(best)
            if improved:
                state["best_val"] = val_loss
                state["best_state"] = copy.deepcopy(model.state_dict())
                state["bad"] = 0
            else:
                state["bad"] += 1
            state["curve"].append(
                {"phase": phase.name, "epoch": e, "train_loss": total / n, "val_loss": val_loss,
                 "seconds": time.perf_counter() - t0, "best": improved}
                | {f"train_{m}": v / n for m, v in parts.items()}
                | {f"val_{m}": v for m, v in val_parts.items()}
            )  # fmt: skip
            state["epoch"] = e + 1
            bar.update(1)
            bar.set_postfix(train=f"{total / n:.4f}", val=f"{val_loss:.4f}")
            if state["bad"] >= patience:
                stop = f"early stop at epoch {e} (best {state['best_val']:.4f})"
                state["epoch"] = phase.epochs
            state["optimizer"] = opt.state_dict()
            state["stops"][phase.name] = stop
            _save_checkpoint(checkpoint, key, model, state)
        bar.close()
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        for p in model.parameters():
            p.requires_grad_(True)
        state["phase"] = k + 1
        state["epoch"] = 0
        state |= _fresh_phase_state(model, None)
        _save_checkpoint(checkpoint, key, model, state)
    model.eval()
    return TrainResult(pd.DataFrame(state["curve"]), resumed, dict(state["stops"]))


def _fresh_phase_state(model: torch.nn.Module, phase: Phase | None) -> dict[str, Any]:
    return {"best_val": math.inf, "best_state": None, "bad": 0, "optimizer": None}


def _only_trainable(model: torch.nn.Module, phase: Phase) -> list[torch.nn.Parameter]:
    """Freeze every parameter but the phase's; return the phase's (error when it has none)."""
    params = list(phase.parameters(model))
    if not params:
        raise ValueError(f"phase {phase.name}: no parameters to train")
    ids = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return params


def _save_checkpoint(path: Path, key: str, model: torch.nn.Module, state: dict[str, Any]) -> None:
    payload = {k: v for k, v in state.items() if k != "model"}
    payload |= {"format": CHECKPOINT_FORMAT, "key": key, "model": model.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The saved state when ``path`` exists and was written for ``key``, else None."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a corrupt checkpoint just means starting over
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("key") != key:
        return None
    return state


def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    """The model's outputs for ``x`` in eval mode, float32 numpy."""
    model.eval()
    out = []
    with torch.no_grad():
        for rows in np.array_split(np.arange(len(x)), max(1, math.ceil(len(x) / batch_size))):
            out.append(model(torch.as_tensor(x[rows], device=device)).float().cpu().numpy())
    pred = np.concatenate(out).astype(np.float32)
    if not np.isfinite(pred).all():
        raise FloatingPointError("mapper predictions contain non-finite values")
    return pred


def validation_split(ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The stimulus ids held out for validation: a seeded ``fraction`` of the distinct ids
    (at least one, never all), image-wise so repeats of an image stay on one side."""
    uniq = sorted(set(map(str, ids)))
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if len(uniq) < 2:
        raise DataError(f"cannot carve a validation split from {len(uniq)} training image(s)")
    n_val = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    pick = np.random.default_rng(seed).permutation(len(uniq))[:n_val]
    return {uniq[i] for i in pick}
