"""The trainable mappers of the seed papers as training plans: which networks, which phases.

Each mapper name maps to one or more ``ModelPlan``: a network from ``mappers.nets``, the
targets its output predicts, and the training phases with their losses (``mappers.losses``)
as the papers train them, scaled by config:

- ``brainclip_linear`` / ``brainclip_vae`` (BrainCLIP): one network into the CLIP space,
  trained with InfoNCE against the image (weight ``alpha``) and caption (``beta``)
  embeddings; supervision V (beta 0), T (alpha 0) or VT. Its output is the prediction of both
  targets. The VAE first trains its decoder (with an embedding encoder) on unpaired CLIP image
  embeddings (cosine reconstruction + KL), then freezes it and trains the fMRI encoder into
  its latent (MSE to the embedding encoder's mean) and through it (InfoNCE).
- ``mindreader_cnn`` (Mind Reader): one network per modality (image, text); MSE + cosine,
  then fine-tuning with the contrastive term added; the text model sees a random caption of
  each image per epoch.
- ``brain2word_ae`` (Brain2Word / Brain2CLIP): one autoencoder per target; variation
  ``pretrain_regress`` (autoencoder, then the regression head alone), ``pretrain_joint``
  (autoencoder, then everything on embedding + reconstruction) or ``joint`` (that from
  scratch); cosine-proximity losses.
- ``gru`` (the two-stage method's mapper; ``kind`` gru, cnn or transformer): one network per
  target, MSE + cosine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import DataError, run_key
from fmridecode.mappers import TRAINABLE, losses, nets
from fmridecode.mappers.targets import align
from fmridecode.mappers.training import (
    CAPTION_CHOICES,
    Batch,
    MapperData,
    Phase,
    epoch_seed,
    predict,
    train_phases,
    validation_split,
)

#: seeds the initial weights of plan i as "phase" INIT_PHASE + i (apart from training phases)
INIT_PHASE = 1_000_000
#: BrainCLIP's supervision settings -> (image weight, caption weight) multipliers
SUPERVISION = {"V": (1.0, 0.0), "T": (0.0, 1.0), "VT": (1.0, 1.0)}


@dataclass(frozen=True)
class ModelPlan:
    """One network to train: its name, the targets it predicts, how to build and train it."""

    name: str
    predicts: tuple[str, ...]
    build: Callable[[], torch.nn.Module]
    phases: list[Phase]


def _all(model: torch.nn.Module):
    return model.parameters()


def _arch(hp: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: hp[k] for k in keys if k in hp}


def _brainclip_loss(hp: dict[str, Any]) -> Callable[[torch.Tensor, Batch], torch.Tensor]:
    a, b = SUPERVISION[hp["supervision"]]
    alpha, beta, temp = a * hp["alpha"], b * hp["beta"], hp["temperature"]

    def loss(pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        return losses.brainclip_loss(pred, batch["image"], batch["text"], alpha, beta, temp)

    return loss


def _brainclip_linear(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    clip = _brainclip_loss(hp)

    def infonce(model: torch.nn.Module, batch: Batch):
        loss = clip(model(batch["x"]), batch)
        return loss, {}

    phase = Phase("infonce", infonce, _all, hp["epochs"], hp["lr"], hp["weight_decay"])
    return [
        ModelPlan(
            "shared",
            ("image", "text"),
            lambda: nets.build("brainclip_linear", n_vox, dims["image"], **_arch(hp, ("dropout",))),
            [phase],
        )
    ]


def _brainclip_vae(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    clip = _brainclip_loss(hp)
    kl_w, latent_w = hp["kl_weight"], hp["latent_weight"]

    def decoder_loss(model: torch.nn.Module, batch: Batch):
        recon, mu, logvar = model.vae(batch["emb"])
        rec, kl = losses.cosine_loss(recon, batch["emb"]), losses.kl_normal(mu, logvar)
        return rec + kl_w * kl, {"reconstruction": rec.item(), "kl": kl.item()}

    def encoder_loss(model: torch.nn.Module, batch: Batch):
        z = model.fmri_latent(batch["x"])
        with torch.no_grad():  # the frozen embedding encoder's mean: where z should land
            mu = model.embed_latent(batch["image"])
        lat = losses.mse_loss(z, mu)
        nce = clip(model.decoder(z), batch)
        return nce + latent_w * lat, {"infonce": nce.item(), "latent_mse": lat.item()}

    arch = _arch(hp, ("latent", "hidden", "dropout"))
    return [
        ModelPlan(
            "shared",
            ("image", "text"),
            lambda: nets.build("brainclip_vae", n_vox, dims["image"], **arch),
            [
                Phase(
                    "decoder",
                    decoder_loss,
                    lambda m: m.vae_parameters(),
                    hp["decoder_epochs"],
                    hp["lr"],
                    hp["weight_decay"],
                    data="unpaired",
                ),
                Phase(
                    "encoder",
                    encoder_loss,
                    lambda m: m.fmri_parameters(),
                    hp["epochs"],
                    hp["lr"],
                    hp["weight_decay"],
                    prepare=lambda m: m.freeze_vae(),  # no dropout or sampling in the VAE
                ),
            ],
        )
    ]


def _regression_loss(target: str, hp: dict[str, Any], contrastive: bool):
    mse_w, cos_w = hp.get("mse_weight", 1.0), hp.get("cosine_weight", 1.0)
    con_w, temp = hp.get("contrastive_weight", 0.0), hp.get("temperature", 0.05)

    def loss(model: torch.nn.Module, batch: Batch):
        pred, y = model(batch["x"]), batch[target]
        mse, cos = losses.mse_loss(pred, y), losses.cosine_loss(pred, y)
        total = mse_w * mse + cos_w * cos
        parts = {"mse": mse.item(), "cosine": cos.item()}
        if contrastive:
            nce = losses.info_nce(pred, y, temp)
            total = total + con_w * nce
            parts["contrastive"] = nce.item()
        return total, parts

    return loss


def _per_target(
    name: str, n_vox: int, dims: dict[str, int], arch: dict[str, Any],
    phases: Callable[[str], list[Phase]],
) -> list[ModelPlan]:  # fmt: skip
    """One network ``name`` per target (image, text), each trained by ``phases(target)``."""
    return [
        ModelPlan(
            target,
            (target,),
            lambda d=dims[target]: nets.build(name, n_vox, d, **arch),
            phases(target),
        )
        for target in ("image", "text")
    ]


def _mindreader_cnn(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    def phases(target: str) -> list[Phase]:
        return [
            Phase(
                "mse_cosine", _regression_loss(target, hp, False), _all,
                hp["epochs"], hp["lr"], hp["weight_decay"],
            ),
            Phase(
                "finetune", _regression_loss(target, hp, True), _all,
                hp["finetune_epochs"], hp["finetune_lr"], hp["weight_decay"],
            ),
        ]  # fmt: skip

    arch = _arch(hp, ("channels", "kernel", "stride", "hidden", "dropout"))
    return _per_target("mindreader_cnn", n_vox, dims, arch, phases)


def _brain2word_ae(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    arch = _arch(hp, ("hidden", "dropout", "negative_slope"))
    if "hidden" in arch:
        arch["hidden"] = tuple(arch["hidden"])
    rw = hp["recon_weight"]

    def ae_loss(model: torch.nn.Module, batch: Batch):
        rec = losses.cosine_loss(model.reconstruct(batch["x"]), batch["x"])
        return rec, {"reconstruction": rec.item()}

    def head_loss(target: str):
        def loss(model: torch.nn.Module, batch: Batch):
            emb = losses.cosine_loss(model(batch["x"]), batch[target])
            return emb, {"embedding": emb.item()}

        return loss

    def joint_loss(target: str):
        def loss(model: torch.nn.Module, batch: Batch):
            pred, recon = model.both(batch["x"])
            emb = losses.cosine_loss(pred, batch[target])
            rec = losses.cosine_loss(recon, batch["x"])
            return emb + rw * rec, {"embedding": emb.item(), "reconstruction": rec.item()}

        return loss

    lr, wd, variation = hp["lr"], hp["weight_decay"], hp["variation"]
    if variation not in ("pretrain_regress", "pretrain_joint", "joint"):
        raise ValueError(f"brain2word_ae: unknown variation {variation!r}")

    def phases(target: str) -> list[Phase]:
        pretrain = Phase(
            "autoencoder", ae_loss, lambda m: m.autoencoder_parameters(),
            hp["pretrain_epochs"], lr, wd,
        )  # fmt: skip
        joint = Phase("joint", joint_loss(target), _all, hp["epochs"], lr, wd)
        if variation == "pretrain_regress":
            regression = Phase(
                "regression", head_loss(target), lambda m: m.head_parameters(),
                hp["epochs"], lr, wd,
            )  # fmt: skip
            return [pretrain, regression]
        return [pretrain, joint] if variation == "pretrain_joint" else [joint]

    return _per_target("brain2word_ae", n_vox, dims, arch, phases)


def _gru(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    def phases(target: str) -> list[Phase]:
        return [
            Phase(
                "mse_cosine", _regression_loss(target, hp, False), _all,
                hp["epochs"], hp["lr"], hp["weight_decay"],
            )
        ]  # fmt: skip

    arch = _arch(hp, ("kind", "chunk", "hidden", "layers", "dropout", "heads"))
    return _per_target("gru", n_vox, dims, arch, phases)


_PLANS = {
    "brainclip_linear": _brainclip_linear,
    "brainclip_vae": _brainclip_vae,
    "mindreader_cnn": _mindreader_cnn,
    "brain2word_ae": _brain2word_ae,
    "gru": _gru,
}


#: mappers that also predict the low-level target (the first stage of two-stage decoding)
LOWRES_MAPPERS = ("gru",)


def _gru_lowres(n_vox: int, dims: dict[str, int], hp: dict[str, Any]) -> list[ModelPlan]:
    """The two-stage method's first stage: the GRU maps voxels to the low-level target (here
    the flattened low-res image, ``mappers.targets.lowres_targets``) with MSE."""

    def mse(model: torch.nn.Module, batch: Batch):
        loss = losses.mse_loss(model(batch["x"]), batch["lowres"])
        return loss, {}

    arch = _arch(hp, ("kind", "chunk", "hidden", "layers", "dropout", "heads"))
    phase = Phase("mse", mse, _all, hp["epochs"], hp["lr"], hp["weight_decay"])
    build = lambda: nets.build("gru", n_vox, dims["lowres"], **arch)  # noqa: E731
    return [ModelPlan("lowres", ("lowres",), build, [phase])]


def plan(
    mapper: str, n_voxels: int, dims: dict[str, int], hp: dict[str, Any], targets: str = "clip"
) -> list[ModelPlan]:
    """The networks and phases of ``mapper`` for ``n_voxels`` inputs and target ``dims``
    (``{"image": d, "text": d, "lowres": q}``), with hyperparameters ``hp`` (config
    ``fit.<mapper>``). ``targets``: ``clip`` (image and text embeddings) or ``lowres`` (the
    low-level first guess; mappers in ``LOWRES_MAPPERS``)."""
    if mapper not in _PLANS:
        raise ValueError(f"unknown trainable mapper {mapper!r}; known: {', '.join(TRAINABLE)}")
    if targets == "lowres":
        if mapper not in LOWRES_MAPPERS:
            raise ValueError(
                f"{mapper} does not predict the low-level target; use {LOWRES_MAPPERS}"
            )
        return _gru_lowres(n_voxels, dims, hp)
    if targets != "clip":
        raise ValueError(f"targets must be 'clip' or 'lowres', got {targets!r}")
    return _PLANS[mapper](n_voxels, dims, hp)


@dataclass
class FitResult:
    """A trained mapper's outputs: predictions per split and target, its weights, its curve."""

    predictions: dict[str, dict[str, np.ndarray]]  # split ("test", "val") -> target -> rows
    states: dict[str, dict[str, Any]]  # plan name -> state_dict
    curve: pd.DataFrame
    stops: dict[str, dict[str, str]]
    resumed: dict[str, str | None]


def load_image_views(paths: list[str] | tuple[str, ...]) -> tuple[np.ndarray, list[str]] | None:
    """The augmented views' cache (rule ``embed_views``) as ``subject_data`` takes it, or None
    when the rule was given none (``embed.augment.views: 0``)."""
    if not paths:
        return None
    emb, index = load_pooled(paths[0])
    return emb, list(index["stim_id"].astype(str))


def subject_data(
    X: np.ndarray,
    vindex: pd.DataFrame,
    image_emb: np.ndarray,
    image_index: pd.DataFrame,
    caption_emb: np.ndarray,
    caption_index: pd.DataFrame,
    validation: float,
    seed: int,
    caption: str = "random",
    extra_targets: dict[str, tuple[np.ndarray, list[str]]] | None = None,
    image_views: tuple[np.ndarray, list[str]] | None = None,
) -> tuple[MapperData, MapperData, dict[str, np.ndarray], dict[str, pd.DataFrame]]:
    """One subject's training and validation data (validation: a seeded ``validation``
    fraction of the training images) and the test/validation voxels with their ids.
    ``extra_targets``: more targets as ``name -> (rows, stimulus ids)`` (e.g. ``lowres``).

    ``caption``: the training rows' text target (``MapperData``: mean, random, best), or
    ``all``: every caption of an image is a training pair of its own (its voxels repeated).
    An image's captions are ordered most likely first when the index has the screening's
    ``rank`` (else by row). Validation rows always use the mean caption.

    ``image_views``: embeddings of augmented views, ``(rows (m, V, d), stimulus ids)``; the
    training rows get theirs (``MapperData.image_views``), validation rows never.

    Unpaired embeddings (BrainCLIP's VAE decoder): every cached image embedding that is
    neither a test nor a validation image of this subject.
    """
    split = vindex["split"].astype(str).to_numpy()
    ids = vindex["stim_id"].astype(str).to_numpy()
    val_ids = validation_split(ids[split == "train"], validation, seed)
    is_val = np.isin(ids, list(val_ids)) & (split == "train")
    rows = {"train": (split == "train") & ~is_val, "val": is_val, "test": split == "test"}
    if not rows["test"].any():
        raise DataError("mapper training: the voxel index has no test rows")
    if caption not in (*CAPTION_CHOICES, "all"):
        raise ValueError(f"caption must be one of {(*CAPTION_CHOICES, 'all')}, got {caption!r}")
    cap_index = caption_index.reset_index(drop=True)
    groups = cap_index.groupby("stim_id", sort=False).indices
    if "rank" in cap_index:  # most likely caption first
        rank = cap_index["rank"].to_numpy()
        groups = {s: r[np.argsort(rank[r], kind="stable")] for s, r in groups.items()}
    image_ids = image_index["stim_id"].astype(str).tolist()
    x32 = np.asarray(X, dtype=np.float32)

    def part(name: str, cap: str) -> MapperData:
        sel = rows[name]
        wanted = list(ids[sel])
        missing = [s for s in wanted if s not in groups]
        if missing:
            raise DataError(f"mapper training: {len(missing)} stimuli lack captions: {missing[:5]}")
        held = set(ids[rows["test"] | rows["val"]])
        unpaired_ids = [s for s in image_ids if s not in held]
        targets = {"image": align(image_emb, image_ids, wanted, "image embeddings")}
        for extra, (rows_, ids_) in (extra_targets or {}).items():
            targets[extra] = np.asarray(align(rows_, ids_, wanted, f"{extra} targets"), np.float32)
        return MapperData(
            x=x32[sel],
            targets=targets,
            captions=[np.asarray(caption_emb[groups[s]], dtype=np.float32) for s in wanted],
            caption=cap,
            unpaired=align(image_emb, image_ids, unpaired_ids if name == "train" else
                           sorted(set(ids[sel])), "image embeddings"),
            image_views=None if image_views is None or name != "train" else
            np.asarray(align(image_views[0], image_views[1], wanted, "augmented views"),
                       np.float32),
        )  # fmt: skip

    train, val = part("train", "best" if caption == "all" else caption), part("val", "mean")
    if caption == "all":  # one row per (image, caption): voxels and targets repeated
        reps = np.array([len(c) for c in train.captions])
        train = MapperData(
            x=np.repeat(train.x, reps, axis=0),
            targets={k: np.repeat(v, reps, axis=0) for k, v in train.targets.items()},
            captions=[c[i : i + 1] for c in train.captions for i in range(len(c))],
            caption="best",
            unpaired=train.unpaired,
            image_views=None if train.image_views is None else
            np.repeat(train.image_views, reps, axis=0),
        )  # fmt: skip
    eval_x = {k: x32[rows[k]] for k in ("val", "test")}
    eval_index = {
        k: vindex.loc[rows[k], ["stim_id"]].reset_index(drop=True) for k in ("val", "test")
    }
    return train, val, eval_x, eval_index


def fit_mapper(
    mapper: str,
    train: MapperData,
    val: MapperData,
    eval_x: dict[str, np.ndarray],
    hp: dict[str, Any],
    *,
    batch_size: int,
    patience: int,
    seed: int,
    device: str,
    partial: str | Path,
    progress: bool = True,
    targets: str = "clip",
) -> FitResult:
    """Train every network of ``mapper`` (seeded; resumable from checkpoints in ``partial``)
    and predict ``eval_x`` (split -> voxels) for each target (``targets``: see ``plan``)."""
    dims = {k: v.shape[1] for k, v in train.targets.items()}
    dims["text"] = train.captions[0].shape[1]
    preds: dict[str, dict[str, np.ndarray]] = {k: {} for k in eval_x}
    states, curves, stops, resumed = {}, [], {}, {}
    for i, p in enumerate(plan(mapper, train.x.shape[1], dims, hp, targets)):
        torch.manual_seed(epoch_seed(seed, INIT_PHASE + i, 0))  # the initial weights
        model = p.build()
        key = run_key(
            train.x, *train.targets.values(), val.x, mapper, p.name, hp, batch_size, patience, seed,
            *([] if train.image_views is None else [train.image_views]),
        )  # fmt: skip
        res = train_phases(
            model, p.phases, train, val, batch_size=batch_size, patience=patience,
            seed=seed + 1000 * i, checkpoint=Path(partial) / f"{p.name}.pt", key=key,
            device=device, desc=f"{mapper} {p.name}", progress=progress,
        )  # fmt: skip
        curves.append(res.curve.assign(model=p.name))
        stops[p.name], resumed[p.name] = res.stops, res.resumed_from
        states[p.name] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        for split, x in eval_x.items():
            out = predict(model, x, batch_size, device)
            for target in p.predicts:
                preds[split][target] = out
    return FitResult(preds, states, pd.concat(curves, ignore_index=True), stops, resumed)
