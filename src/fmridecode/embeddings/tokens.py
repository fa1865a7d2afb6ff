"""Raw (unnormalised) CLIP embeddings and token-level hidden states, for any open_clip model.

``cache.py`` writes unit-norm pooled embeddings. Some consumers need more: Brain-Diffuser-style
targets clamp outlier dimensions of the *raw* embedding before normalising, and Versatile
Diffusion / Stable Diffusion condition on per-token states (257 x 768 image tokens and 77 x 768
text tokens for ViT-L/14). This module returns both, batched:

- ``encode_images``: a DataLoader applies the model's PIL preprocess per image (optionally in
  worker processes) while the model runs; images are decoded once (they arrive as uint8).
- ``encode_texts``: one explicit text forward that keeps the final-layer-normed states of all
  context positions (``CLIP.encode_text`` drops them) and can replace the embeddings of
  positions 1..n_ctx with learned context vectors (CoOp-style prompt learning).

Pooled outputs equal ``model.encode_image`` / ``model.encode_text`` (tests check this).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from open_clip.transformer import TextTransformer, VisionTransformer, text_global_pool
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fmridecode.devices import torch_dtype
from fmridecode.embeddings.cache import check_images
from fmridecode.io import DataError

CONTEXT_PLACEHOLDER = "X"  # CoOp's placeholder word: one BPE token per context vector


class _Images(Dataset):
    """(N, H, W, 3) uint8 images -> the model's preprocess (PIL in, tensor out), one by one."""

    def __init__(self, images: np.ndarray, preprocess: Any):
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(Image.fromarray(self.images[i]))


@contextmanager
def _eval(model: torch.nn.Module, compute: str = "float32") -> Iterator[None]:
    """Eval mode and inference mode inside, under autocast when ``compute`` (as
    ``devices.torch_dtype`` reads it on the model's device: auto = float16 on CUDA) is a half
    type; the model's train/eval state restored after."""
    device = _device_of(model)
    dtype = torch_dtype(compute, str(device))
    half = dtype in (torch.float16, torch.bfloat16)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=half):
            yield
    finally:
        model.train(was_training)


@contextmanager
def _attr(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``obj.name = value`` inside the block (e.g. a tower's ``output_tokens``)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _finite(x: torch.Tensor, what: str, start: int) -> np.ndarray:
    """float32 numpy copy of ``x``; DataError naming the rows if anything is not finite."""
    x = x.detach().float().cpu()
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if bad.any():
        rows = (torch.nonzero(bad).flatten() + start).tolist()
        raise DataError(
            f"model produced non-finite {what} for rows {rows[:5]}"
            f"{' ...' if len(rows) > 5 else ''} (broken weights or input?)"
        )
    return x.numpy()


class _Collector:
    """Fills preallocated (N, ...) float32 arrays batch by batch (no concatenate copy)."""

    def __init__(self, n: int):
        self.n, self.arrays = n, {}

    def put(self, name: str, batch: torch.Tensor, what: str, start: int) -> None:
        values = _finite(batch, what, start)
        if name not in self.arrays:
            self.arrays[name] = np.empty((self.n, *values.shape[1:]), np.float32)
        self.arrays[name][start : start + len(values)] = values

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


# ---------------------------------------------------------------------------------- images


def _vit_forward(visual: VisionTransformer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled projected embedding and tokens of an open_clip ViT, via its ``output_tokens``.

    With the standard CLIP pooling (class token, no attentional pooler, ``ln_post`` before
    pooling) the class token is prepended to the patch tokens: its ``ln_post`` output is read
    by a forward hook on ``ln_post`` (the tower does not return it). Otherwise the tokens are
    exactly what ``output_tokens`` returns.
    """
    with_cls = (
        visual.pool_type == "tok"
        and getattr(visual, "attn_pool", None) is None
        and not getattr(visual, "final_ln_after_pool", False)
    )
    seen: list[torch.Tensor] = []
    hook = None
    if with_cls:
        hook = visual.ln_post.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with _attr(visual, "output_tokens", True):
            pooled, tokens = visual(x)
    finally:
        if hook is not None:
            hook.remove()
    if with_cls:
        if len(seen) != 1 or seen[0].shape[1] != tokens.shape[1] + 1:
            raise RuntimeError("VisionTransformer: ln_post did not see class token + patches")
        tokens = seen[0]  # (B, 1 + patches, width): ln_post(x); tokens[:, 1:] are the patches
    return pooled, tokens


def _resnet_forward(visual: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled embedding and the final feature map (before attention pooling) as tokens."""
    out = visual.forward_intermediates(x, indices=[4])  # stem, layer1..layer4: take layer4
    fmap = out["image_intermediates"][-1]  # (B, C, H', W')
    return out["image_features"], fmap.flatten(2).transpose(1, 2)


def _image_forward(model: torch.nn.Module) -> Any:
    """The function ``batch -> (pooled, tokens)`` for this model's image tower."""
    from open_clip.modified_resnet import ModifiedResNet

    visual = model.visual
    if isinstance(visual, VisionTransformer):
        return lambda x: _vit_forward(visual, x)
    if isinstance(visual, ModifiedResNet):
        return lambda x: _resnet_forward(visual, x)
    raise DataError(
        f"token-level image states are not supported for image tower {type(visual).__name__} "
        "(supported: open_clip VisionTransformer, ModifiedResNet)"
    )


def encode_images(
    model: torch.nn.Module,
    preprocess: Any,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    workers: int = 0,
    tokens: bool = False,
    compute: str = "float32",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw pooled image embeddings (N, D) float32 and, if ``tokens``, states (N, T, W).

    ``pooled`` is ``model.encode_image`` of the preprocessed images, *not* L2-normalised.
    ``workers`` DataLoader processes run ``preprocess`` (0 = in this process). ``compute``
    (``embed.dtype.compute``: auto, float32, float16, bfloat16) float16 / bfloat16 runs the
    model under ``torch.autocast`` on its device (auto: float16 on CUDA, float32 on the CPU);
    outputs are float32 either way. Token states:

    - open_clip ``VisionTransformer`` (ViT-B/32, ViT-L/14, ...): ``ln_post`` of the last
      block's output, W = the tower's width, unprojected; T = 1 class token + patches
      (50 for ViT-B/32 at 224 px, 257 for ViT-L/14), row 0 being the class token, whose
      projection ``tokens[:, 0] @ model.visual.proj`` is ``pooled``. Versatile Diffusion's
      257 x 768 image context for ViT-L/14 is ``tokens @ model.visual.proj`` (1024 -> 768).
      Towers with average or attentional pooling give exactly their ``output_tokens`` (patches
      only, or the pooler's queries).
    - ``ModifiedResNet`` (our small model, CLIP's RN50...): the final feature map before
      attention pooling, flattened row-major to T = H' x W' (image_size / 32 squared: 4 for
      our 64 px model, 49 for RN50), W = its channels (32 x width; 512 for our default).
    - any other tower: DataError naming its type (only if ``tokens``).
    """
    images = check_images(images)
    if len(images) == 0:
        raise DataError("encode_images: no images")
    device = _device_of(model)
    forward = _image_forward(model) if tokens else None
    loader = DataLoader(
        _Images(images, preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    out = _Collector(len(images))
    start = 0
    with _eval(model, compute), tqdm(total=len(images), unit="img", disable=not progress) as bar:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            if forward is None:
                pooled = model.encode_image(batch)
            else:
                pooled, toks = forward(batch)
                out.put("tokens", toks, "image token states", start)
            out.put("pooled", pooled, "image embeddings", start)
            start += len(batch)
            bar.update(len(batch))
    return out.get("pooled"), out.get("tokens")


# ----------------------------------------------------------------------------------- texts


def _project(x: torch.Tensor, projection: Any) -> torch.Tensor:
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _inject(x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Token embeddings (B, L, W) with positions 1..n_ctx replaced by the context vectors."""
    if context is None or len(context) == 0:
        return x
    ctx = context.to(x.dtype).unsqueeze(0).expand(len(x), -1, -1)
    return torch.cat([x[:, :1], ctx, x[:, 1 + len(context) :]], dim=1)


def _clip_text_forward(
    model: torch.nn.Module, text: torch.Tensor, context: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``CLIP.encode_text`` written out, keeping the ln_final states of all positions."""
    cast_dtype = model.transformer.get_cast_dtype()
    x = _inject(model.token_embedding(text).to(cast_dtype), context)
    x = x + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)  # (B, L, width)
    pooled = text_global_pool(
        x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
    )
    return _project(pooled, model.text_projection), x


def _custom_text_forward(
    tower: TextTransformer, text: torch.Tensor, context: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``TextTransformer`` tower (CustomTextCLIP) via its ``output_tokens``; the context is
    put in by a forward hook on its token embedding."""

    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return _inject(output, context)

    handle = tower.token_embedding.register_forward_hook(hook)
    try:
        with _attr(tower, "output_tokens", True):
            pooled, tokens = tower(text)
    finally:
        handle.remove()
    return pooled, tokens


def _text_forward(model: torch.nn.Module) -> tuple[Any, int, int]:
    """``(forward(text, context) -> (pooled, tokens), context_length, embedding width)``."""
    text_tower = getattr(model, "text", None)
    if text_tower is None and hasattr(model, "token_embedding") and hasattr(model, "ln_final"):
        width = model.token_embedding.weight.shape[1]
        return (lambda t, c: _clip_text_forward(model, t, c)), int(model.context_length), width
    if isinstance(text_tower, TextTransformer):
        width = text_tower.token_embedding.weight.shape[1]
        forward = lambda t, c: _custom_text_forward(text_tower, t, c)  # noqa: E731
        return forward, int(text_tower.context_length), width
    what = type(text_tower).__name__ if text_tower is not None else type(model).__name__
    raise DataError(
        f"text encoding is not supported for {what} (supported: open_clip CLIP, "
        "CustomTextCLIP with a TextTransformer text tower)"
    )


def _check_context(context: Any, width: int, context_length: int) -> np.ndarray | None:
    """Context as float32 (n_ctx, W), or None for no/zero-length context."""
    if context is None:
        return None
    context = np.asarray(context)
    if context.ndim != 2 or not np.issubdtype(context.dtype, np.number):
        raise DataError(f"context: expected a numeric (n_ctx, W) array, got {context.shape}")
    if len(context) == 0:
        return None
    if context.shape[1] != width:
        raise DataError(
            f"context width {context.shape[1]} does not match the token embedding width {width}"
        )
    if not np.isfinite(context).all():
        raise DataError("context: contains non-finite values")
    if len(context) > context_length - 2:
        raise DataError(
            f"context: {len(context)} vectors do not fit the context length {context_length} "
            "with start and end tokens"
        )
    return context.astype(np.float32)


def _tokenize(tokenizer: Any, texts: list[str], n_ctx: int) -> torch.Tensor:
    """Token ids of ``"X " * n_ctx + text``; checks the placeholders sit at 1..n_ctx."""
    prefix = f"{CONTEXT_PLACEHOLDER} " * n_ctx
    ids = tokenizer([prefix + t for t in texts])
    if n_ctx:
        x_id = tokenizer([CONTEXT_PLACEHOLDER])[0, 1]
        if not bool((ids[:, 1 : 1 + n_ctx] == x_id).all()):
            raise DataError(
                f"tokenizer does not map {CONTEXT_PLACEHOLDER!r} to one token per context vector"
            )
    return ids


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    tokens: bool = False,
    context: np.ndarray | None = None,
    compute: str = "float32",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw pooled text embeddings (M, D) float32 and, if ``tokens``, states (M, L, W);
    ``compute`` as in ``encode_images``.

    ``pooled`` equals ``model.encode_text`` (not L2-normalised): the final-layer-normed state
    at the pooled position (open_clip's ``text_global_pool``: the EOT token for CLIP) times
    ``text_projection``. Token states are the final-layer-normed states of all L context
    positions (77 for real CLIP, the model's ``context_length`` for ours; W = text width,
    unprojected; padding positions included, as SD / Versatile Diffusion use them).
    Supports open_clip ``CLIP`` and ``CustomTextCLIP`` whose ``model.text`` is a
    ``TextTransformer`` (with a CoCa-style appended class token its tokens are the
    un-normed sequence, as that tower returns them); for any other text tower only the
    plain pooled path (no ``tokens``, no ``context``) works, the rest raises DataError.

    ``context`` (n_ctx, W): learned context vectors (CoOp). Each text is tokenized as
    ``"X " * n_ctx + text`` and the token embeddings of positions 1..n_ctx are replaced by the
    context before the positional embedding is added: ``[SOT] ctx_1..ctx_n text [EOT]``.
    None or zero rows: the plain path.
    """
    texts = [str(t) for t in texts]
    if not texts:
        raise DataError("encode_texts: no texts")
    plain = context is None and not tokens  # model.encode_text does it (any text tower)
    forward, context_length, width = (None, None, None) if plain else _text_forward(model)
    ctx_np = None if plain else _check_context(context, width, context_length)
    device = _device_of(model)
    ctx = None if ctx_np is None else torch.from_numpy(ctx_np).to(device)
    n_ctx = 0 if ctx_np is None else len(ctx_np)
    out = _Collector(len(texts))
    with _eval(model, compute), tqdm(total=len(texts), unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            ids = _tokenize(tokenizer, texts[start : start + batch_size], n_ctx).to(device)
            if context_length is not None and ids.shape[1] != context_length:
                raise DataError(
                    f"tokenizer gives {ids.shape[1]} positions but the model's context length "
                    f"is {context_length}"
                )
            if forward is None or (ctx is None and not tokens):
                pooled, toks = model.encode_text(ids), None
            else:
                pooled, toks = forward(ids, ctx)
            out.put("pooled", pooled, "text embeddings", start)
            if tokens:
                out.put("tokens", toks, "text token states", start)
            bar.update(len(ids))
    return out.get("pooled"), out.get("tokens")


# -------------------------------------------------------------------------- learned context


def load_context(path: str | os.PathLike) -> np.ndarray:
    """Learned context vectors (n_ctx, W) float32 from a ``.npy`` file; errors name the file."""
    try:
        context = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as a .npy array ({e})") from e
    if context.ndim != 2:
        raise DataError(f"{path}: context must be 2-D (n_ctx, W), got shape {context.shape}")
    if not np.issubdtype(context.dtype, np.number):
        raise DataError(f"{path}: context must be numeric, got dtype {context.dtype}")
    if not np.isfinite(context).all():
        raise DataError(f"{path}: context contains non-finite values")
    return context.astype(np.float32)


def class_embeddings_with_context(
    model: torch.nn.Module,
    tokenizer: Any,
    classes: Sequence[str],
    context: np.ndarray | None,
) -> np.ndarray:
    """(C, D) float32 unit-norm class embeddings of ``[SOT] ctx "<class>." [EOT]`` (CoOp)."""
    classes = [str(c) for c in classes]
    if not classes:
        raise DataError("class_embeddings_with_context: need at least one class")
    pooled, _ = encode_texts(model, tokenizer, [f"{c}." for c in classes], context=context)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError("class_embeddings_with_context: a class embedding is all zeros")
    return (pooled / norms).astype(np.float32)
