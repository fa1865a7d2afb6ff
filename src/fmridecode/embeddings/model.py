"""One loader for every CLIP model the workflow uses, and our small default model.

Real pretrained models (``ViT-B-32`` + ``laion2b_s34b_b79k`` on a user's machine) and the
small dual encoder we train ourselves (``fmridecode-small``) go through the same
``open_clip.create_model_and_transforms(name, pretrained=...)`` call. For that, our model's
architecture is registered with open_clip as an ordinary model config (a JSON file added
with ``open_clip.add_model_config``), and our checkpoints are plain state-dict files that
open_clip's own checkpoint loader reads. The checkpoint also carries its config, so a
checkpoint trained with non-default widths loads without the caller repeating them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import open_clip
import torch

from fmridecode.io import DataError, atomic_path, file_sha256

SMALL_MODEL_NAME = "fmridecode-small"
CONFIG_KEY = "model_cfg"  # key of the architecture config inside our checkpoints
NAME_KEY = "model_name"

# Names registered by this module in this process (so a later re-registration with another
# config may replace them, while open_clip's built-in configs are never overwritten).
_REGISTERED: dict[str, dict[str, Any]] = {}


def small_model_config(
    embed_dim: int = 64,
    *,
    image_size: int = 64,
    vision_width: int = 16,
    vision_layers: tuple[int, int, int, int] = (1, 1, 1, 1),
    text_width: int = 128,
    text_layers: int = 3,
    text_heads: int = 4,
    context_length: int = 40,
) -> dict[str, Any]:
    """open_clip config of the small model: modified-ResNet image tower, small text transformer.

    ``image_size`` must be a multiple of 32 (the ResNet downsamples 32x before attention pooling).
    The text tower keeps open_clip's BPE vocabulary (49,408 tokens) so its stock tokenizer works.
    ``context_length`` 40 holds every detailed caption of the simulator (max 37 tokens with
    start/end; 12% exceed 32).
    """
    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
    if vision_width * 32 % 64:
        raise ValueError(f"vision_width*32 must be a multiple of 64, got {vision_width}")
    if text_width % text_heads:
        raise ValueError(f"text_width {text_width} is not divisible by text_heads {text_heads}")
    return {
        "embed_dim": int(embed_dim),
        "vision_cfg": {
            "image_size": int(image_size),
            "layers": [int(n) for n in vision_layers],
            "width": int(vision_width),
            "head_width": 64,
        },
        "text_cfg": {
            "context_length": int(context_length),
            "vocab_size": 49408,
            "width": int(text_width),
            "heads": int(text_heads),
            "layers": int(text_layers),
        },
    }


def _config_dir() -> Path:
    """Folder holding the JSON configs we hand to open_clip (per user, outside the repo)."""
    root = os.environ.get("FMRIDECODE_OPEN_CLIP_CONFIGS")
    if root:
        return Path(root)
    return Path(tempfile.gettempdir()) / f"fmridecode-open_clip-configs-{os.getuid()}"


def register_config(name: str, config: dict[str, Any]) -> str:
    """Register ``config`` under ``name`` with open_clip (idempotent); return ``name``.

    Refuses to replace one of open_clip's built-in configs (e.g. ``RN50``) with another one.
    """
    config = json.loads(json.dumps(config))  # plain JSON types, comparable with open_clip's copy
    current = open_clip.get_model_config(name)
    if current == config:
        _REGISTERED.setdefault(name, config)
        return name
    if current is not None and name not in _REGISTERED:
        raise ValueError(
            f"model name {name!r} is already an open_clip config with another architecture; "
            "pick another name"
        )
    text = json.dumps(config, indent=2, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = _config_dir() / digest / f"{name}.json"  # open_clip names a config by its file stem
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")
    open_clip.add_model_config(path)
    if open_clip.get_model_config(name) != config:
        raise RuntimeError(f"open_clip did not pick up the config written to {path}")
    _REGISTERED[name] = config
    return name


def register_small_model(name: str = SMALL_MODEL_NAME, embed_dim: int = 64, **kwargs: Any) -> str:
    """Register the small model (see ``small_model_config`` for ``kwargs``); return its name.

    Afterwards ``open_clip.create_model_and_transforms(name, pretrained=<our .pt>)`` works offline.
    """
    return register_config(name, small_model_config(embed_dim, **kwargs))


def save_checkpoint(model: torch.nn.Module, name: str, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a checkpoint open_clip's loader reads; atomic.

    Format: ``{"state_dict": ..., "model_cfg": <config>, "model_name": name}`` (open_clip
    takes the ``state_dict`` entry; ``load_model`` uses the config to register the name).
    """
    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(f"model name {name!r} is not registered with open_clip")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, CONFIG_KEY: config, NAME_KEY: name}, tmp)
    return path


def _checkpoint_config(path: Path) -> dict[str, Any] | None:
    """The architecture config stored in one of our checkpoints (None if it has none)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"{path}: cannot read as a torch checkpoint ({e})") from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get(CONFIG_KEY), dict):
        return ckpt[CONFIG_KEY]
    return None


def resolve_pretrained(name: str, pretrained: str | os.PathLike | None) -> str | None:
    """Check ``pretrained`` (a known open_clip tag for ``name``, or a checkpoint file) and
    make sure ``name`` is registered; returns the value to pass to open_clip.

    Raises DataError naming the file when a checkpoint path does not exist.
    """
    if pretrained is None or str(pretrained) == "":
        if open_clip.get_model_config(name) is None:
            if name == SMALL_MODEL_NAME:
                register_small_model(name)
            else:
                raise DataError(f"unknown open_clip model {name!r} (no config registered)")
        return None
    pretrained = str(pretrained)
    is_builtin = open_clip.get_model_config(name) is not None and name not in _REGISTERED
    if is_builtin and pretrained in open_clip.list_pretrained_tags_by_model(name):
        return pretrained  # a tag: open_clip downloads or finds it in its cache
    path = Path(pretrained)
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(name) if is_builtin else []
        hint = f" and not a pretrained tag of {name} ({', '.join(tags)})" if tags else ""
        raise DataError(f"{path}: checkpoint file not found{hint}")
    if not is_builtin:
        config = _checkpoint_config(path)
        if config is not None:
            register_config(name, config)
        elif open_clip.get_model_config(name) is None:
            if name != SMALL_MODEL_NAME:
                raise DataError(
                    f"{path}: checkpoint has no model config and {name!r} is not registered"
                )
            register_small_model(name)
    return str(path)


def load_model(
    name: str, pretrained: str | os.PathLike | None, device: str = "cpu"
) -> tuple[torch.nn.Module, Any, Any]:
    """Load any open_clip model in eval mode: ``(model, preprocess, tokenizer)``.

    ``pretrained`` is an open_clip tag (e.g. ``laion2b_s34b_b79k`` for ``ViT-B-32``), a local
    checkpoint path (ours or open_clip's), or None for random weights. ``preprocess`` is the
    model's own inference transform (PIL image -> tensor; 224 px for real models).
    """
    pretrained = resolve_pretrained(name, pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device
        )
    except RuntimeError as e:
        where = pretrained if pretrained else name
        raise DataError(f"{where}: cannot load open_clip model {name!r} ({e})") from e
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer


def create_untrained(name: str = SMALL_MODEL_NAME, device: str = "cpu") -> torch.nn.Module:
    """A randomly initialised model of a registered architecture (train mode); seed torch first."""
    if open_clip.get_model_config(name) is None:
        if name != SMALL_MODEL_NAME:
            raise ValueError(f"model name {name!r} is not registered with open_clip")
        register_small_model(name)
    model = open_clip.create_model(name, pretrained=None, device=device)
    model.train()
    return model


def image_norm(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, image_size) of the model's input normalisation, from its preprocess config."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return mean, std, int(size)


def model_identity(
    name: str, pretrained: str | os.PathLike | None, model: torch.nn.Module, preprocess: Any
) -> dict[str, Any]:
    """What the embedding caches depend on: the model name, its weights (tag, or local file
    and its SHA-256), the preprocessing and open_clip's version, plus the model's logit scale
    (caption screening's softmax temperature). Written beside the caches (``model.json``)."""
    mean, std, size = image_norm(model)
    pretrained = None if pretrained in (None, "") else str(pretrained)
    local = pretrained is not None and Path(pretrained).is_file()
    scale = getattr(model, "logit_scale", None)
    return {
        "model": name,
        "pretrained": pretrained,
        "weights_sha256": file_sha256(pretrained) if local else None,
        "open_clip": open_clip.__version__,
        "image_size": size,
        "image_mean": list(mean),
        "image_std": list(std),
        "preprocess": repr(preprocess),
        "logit_scale": float(scale.exp().item()) if scale is not None else 100.0,
    }
