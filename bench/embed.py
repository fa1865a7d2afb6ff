"""Benchmark: CLIP embedding throughput of the naive, cached and token-level paths, one run.

    python bench/embed.py                                  # our small model, 512 images of 64 px
    python bench/embed.py --model ViT-B-32 --n 32 --size 224   # random-init ViT-B/32
    python bench/embed.py --device cuda

What is measured (images/s and texts/s, wall time of the whole call, best of ``--repeat``), on
seeded random uint8 images (``--n`` of ``--size`` px, resized by the model's own preprocess)
and seeded random captions (``--texts``, default ``--n``) from a small vocabulary, with the
model randomly initialised (seed 0; no weights are downloaded, and throughput does not
depend on the weights):

1. naive: one item at a time, ``model.encode_image(preprocess(img)[None])`` /
   ``model.encode_text(tokenizer([t]))``, under ``torch.inference_mode``;
2. cache: ``fmridecode.embeddings.cache.embed_images`` / ``embed_texts`` (batched,
   preprocess in the main process, unit-norm output);
3. tokens pooled: ``fmridecode.embeddings.tokens.encode_images`` with ``workers`` 0 and 2
   DataLoader processes (``--workers``), raw pooled output; ``encode_texts``;
4. token-level: the same with ``tokens=True`` (image tokens (N, T, W), text states (M, L, W));
   for texts also with a learned context of 4 vectors (CoOp hook);
5. half precision: the pooled paths under float16 autocast (``compute="float16"``, what
   ``embed.dtype.compute: auto`` picks on CUDA; also run on the CPU for comparison).

Agreement: every path's pooled output, L2-normalised, against the naive one (max abs
difference); the raw paths also unnormalised. Preprocessing is part of every image path's
time (it dominates for small models on a CPU). ``--threads`` sets torch's intra-op threads of
the main process (DataLoader workers use one each). The last line printed is a one-line summary.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

WORDS = (
    "a the red green blue small large square circle triangle cat dog photo of on in with "
    "grey background two three striped bright dark near far left right"
).split()


def captions(n: int, seed: int) -> list[str]:
    """Seeded random captions of 4-12 words."""
    rng = np.random.default_rng(seed + 1)
    return [" ".join(rng.choice(WORDS, size=rng.integers(4, 13))) for _ in range(n)]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn: Callable[[], Any], repeat: int, sync: Callable[[], None]) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``fn`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmridecode-small", help="open_clip model name")
    ap.add_argument("--n", type=int, default=512, help="images")
    ap.add_argument("--texts", type=int, help="texts (default: --n)")
    ap.add_argument("--size", type=int, default=64, help="image side in px before preprocess")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers")
    ap.add_argument("--repeat", type=int, default=2, help="runs per path (fastest kept)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import open_clip
    import torch

    from fmridecode.devices import resolve_device
    from fmridecode.embeddings.cache import embed_images, embed_texts
    from fmridecode.embeddings.model import create_untrained, image_norm
    from fmridecode.embeddings.tokens import encode_images, encode_texts

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(args.seed)
    model = create_untrained(args.model, device=device).eval()
    mean, std, image_size = image_norm(model)
    preprocess = open_clip.image_transform(image_size, is_train=False, mean=mean, std=std)
    tokenizer = open_clip.get_tokenizer(args.model)
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    texts = captions(args.texts or args.n, args.seed)
    width = model.token_embedding.weight.shape[1] if hasattr(model, "token_embedding") else None
    context = rng.normal(0, 0.02, (4, width)).astype(np.float32) if width else None
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    print(
        f"machine: {os.cpu_count()} CPU cores ({args.threads} torch threads), GPU {gpu}; "
        f"torch {torch.__version__}, open_clip {open_clip.__version__}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(
        f"model {args.model} (random init), {len(images)} images {args.size} px -> "
        f"{image_size} px, {len(texts)} texts, batch {args.batch_size}, {device}"
    )

    def naive_images() -> np.ndarray:
        from PIL import Image

        out = []
        with torch.inference_mode():
            for img in images:
                x = preprocess(Image.fromarray(img))[None].to(device)
                out.append(model.encode_image(x).float().cpu().numpy())
        return np.concatenate(out)

    def naive_texts() -> np.ndarray:
        with torch.inference_mode():
            out = [model.encode_text(tokenizer([t]).to(device)).float().cpu() for t in texts]
        return torch.cat(out).numpy()

    bs = args.batch_size
    image_paths: list[tuple[str, Callable[[], Any]]] = [
        ("naive loop (1 image per call)", naive_images),
        ("cache.embed_images", lambda: embed_images(model, preprocess, images, bs)),
    ]
    for w in args.workers:
        image_paths.append(
            (
                f"tokens.encode_images pooled, workers={w}",
                lambda w=w: encode_images(model, preprocess, images, batch_size=bs, workers=w)[0],
            )
        )
    for w in args.workers:
        image_paths.append(
            (
                f"tokens.encode_images tokens=True, workers={w}",
                lambda w=w: encode_images(
                    model, preprocess, images, batch_size=bs, workers=w, tokens=True
                ),
            )
        )
    half = "float16"
    image_paths.append(
        (
            "tokens.encode_images pooled, float16 autocast",
            lambda: encode_images(model, preprocess, images, batch_size=bs, compute=half)[0],
        )
    )
    text_paths: list[tuple[str, Callable[[], Any]]] = [
        ("naive loop (1 text per call)", naive_texts),
        ("cache.embed_texts", lambda: embed_texts(model, tokenizer, texts, bs)),
        (
            "tokens.encode_texts pooled",
            lambda: encode_texts(model, tokenizer, texts, batch_size=bs)[0],
        ),
        (
            "tokens.encode_texts tokens=True",
            lambda: encode_texts(model, tokenizer, texts, batch_size=bs, tokens=True),
        ),
        (
            "tokens.encode_texts pooled, float16 autocast",
            lambda: encode_texts(model, tokenizer, texts, batch_size=bs, compute=half)[0],
        ),
    ]
    if context is not None:
        text_paths.append(
            (
                "tokens.encode_texts pooled + 4 context vectors (CoOp)",
                lambda: encode_texts(model, tokenizer, texts, batch_size=bs, context=context),
            )
        )

    rows = []
    for kind, paths, n in (("images", image_paths, len(images)), ("texts", text_paths, len(texts))):
        ref = None
        base = None
        for name, fn in paths:
            wall, out = timed(fn, args.repeat, sync)
            shape = None
            if isinstance(out, tuple):
                out, toks = out
                shape = None if toks is None else "x".join(map(str, toks.shape[1:]))
            if ref is None:
                ref, base = out, wall
            with_ctx = "context" in name
            diff_unit = float(np.abs(unit(out) - unit(ref)).max())
            raw = not name.startswith("cache")
            diff_raw = float(np.abs(out - ref).max()) if raw and not with_ctx else None
            rows.append((kind, name, n, wall, n / wall, base / wall, shape, diff_unit, diff_raw))
            print(f"{kind}: {name}: {wall:.2f} s, {n / wall:.0f}/s", flush=True)

    print()
    head = (
        "| input | path | n | wall s | per s | vs naive | token shape "
        "| max abs diff vs naive (unit-norm) | ... raw |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for kind, name, n, wall, rate, speed, shape, du, dr in rows:
        dr_s = "-" if dr is None else f"{dr:.1e}"
        du_s = "(context: differs)" if "context" in name else f"{du:.1e}"
        print(
            f"| {kind} | {name} | {n} | {wall:.2f} | {rate:,.0f} | x{speed:.1f} "
            f"| {shape or '-'} | {du_s} | {dr_s} |"
        )
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")

    def best(kind: str, prefix: str) -> tuple[str, float, float]:
        cand = [r for r in rows if r[0] == kind and r[1].startswith(prefix)]
        cand = [r for r in cand if "context" not in r[1] and "float16" not in r[1]]
        r = max(cand, key=lambda r: r[4])
        return r[1], r[4], r[5]

    def where(name: str) -> str:
        return f", {name.split(', ')[-1]}" if "workers" in name else ""

    agree = max(r[7] for r in rows if "context" not in r[1] and "float16" not in r[1])
    parts = [
        f"embed bench: {args.model} random init, {len(images)} images {args.size}->{image_size}"
        f" px, {len(texts)} texts, {os.cpu_count()} cores ({args.threads} threads), {device}"
    ]
    for kind in ("images", "texts"):
        naive = next(r for r in rows if r[0] == kind)
        cache = next(r for r in rows if r[0] == kind and r[1].startswith("cache"))
        pooled = best(kind, f"tokens.encode_{kind} pooled")
        tok = best(kind, f"tokens.encode_{kind} tokens=True")
        fp16 = next(r for r in rows if r[0] == kind and "float16" in r[1])
        parts.append(
            f"{kind}/s naive {naive[4]:,.0f}, cache {cache[4]:,.0f} (x{cache[5]:.1f}), "
            f"pooled {pooled[1]:,.0f} (x{pooled[2]:.1f}{where(pooled[0])}), "
            f"token-level {tok[1]:,.0f} (x{tok[2]:.1f}), "
            f"float16 autocast {fp16[4]:,.0f} (x{fp16[5]:.1f}, within {fp16[7]:.1e})"
        )
    parts.append(f"float32 paths agree with naive to {agree:.1e} (unit-norm)")
    print(" | ".join(parts))


if __name__ == "__main__":
    main()
