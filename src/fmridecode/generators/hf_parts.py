"""Parts shared by the diffusers generators of real models (``unclip``, ``versatile``).

Small random components for the offline pipelines the tests assemble (a CLIP tokenizer that
needs no download, CLIP text/vision configs, a small VAE), the dtype policy, and per-image
random generators so samples do not depend on batching.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig

from fmridecode.io import DataError


def byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE stands in for the bytes 0..255 (GPT-2's)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_tokenizer(max_length: int) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the 256 byte characters (alone and word-final).

    No merges: words are spelled byte by byte, enough for a random text encoder. Written as the
    ``vocab.json`` + ``merges.txt`` a real CLIP tokenizer has and loaded from them (no download).
    """
    chars = byte_chars()
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    with tempfile.TemporaryDirectory(prefix="tiny_clip_tok.") as tmp:
        tmp = Path(tmp)
        vocab = {t: i for i, t in enumerate(tokens)}
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def tiny_text_config(tokenizer: CLIPTokenizer, dim: int, max_length: int) -> CLIPTextConfig:
    """A 2-layer CLIP text encoder of width ``dim`` over ``tokenizer``'s vocabulary."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=dim,
        intermediate_size=2 * dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        projection_dim=dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_vision_config(
    dim: int, projection_dim: int, image_size: int = 32, patch_size: int = 8
) -> CLIPVisionConfig:
    """A 2-layer CLIP vision encoder of width ``dim`` ((image_size / patch_size)^2 + 1 tokens)."""
    return CLIPVisionConfig(
        hidden_size=dim,
        intermediate_size=2 * dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=projection_dim,
    )


def tiny_vae(channels: tuple[int, ...], image_size: int) -> AutoencoderKL:
    """A small KL autoencoder (4 latent channels) downsampling by 2 per extra block."""
    n = len(channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=channels,
        latent_channels=4,
        layers_per_block=1,
        sample_size=image_size,
    ).eval()


def resolve_pipeline(
    path_or_id: str | os.PathLike, accepted: Sequence[str], generator: str
) -> tuple[str, dict | None]:
    """Where to load a pipeline from, offline: ``(source, model_index or None)``.

    A path that exists must be a diffusers pipeline folder whose ``model_index.json`` names one
    of the ``accepted`` classes; a path-like name that does not exist is an error; anything
    else is taken as a hub id ('name' or 'owner/name') to find in the local cache (no index).
    """
    name = str(path_or_id)
    path = Path(name).expanduser()
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise DataError(f"{path}: not a diffusers pipeline directory (no model_index.json)")
        try:
            config = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{index}: unreadable ({e})") from e
        cls = config.get("_class_name")
        if cls not in accepted:
            raise DataError(f"{index}: pipeline is {cls!r}, {generator} needs {accepted[0]}")
        return str(path), config
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise DataError(f"{name}: no such pipeline directory")
    return name, None


def load_error(name: str, pipeline_class: str, local: bool, e: Exception) -> DataError:
    """The error of a pipeline that could not be loaded, saying where it was looked for."""
    where = "local pipeline directory" if local else "model id"
    return DataError(
        f"{name}: cannot load the {pipeline_class} ({where}); it must be a local pipeline "
        f"directory or a model id already in the local Hugging Face cache "
        f"(nothing is downloaded): {type(e).__name__}: {e}"
    )
