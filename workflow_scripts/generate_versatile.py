"""Rule generate_versatile: Versatile Diffusion dual-guided img2img from predicted tokens.

Finished chunks of images are kept in ``.partial/`` beside the outputs until the job ends, so
a killed run (rerun with --rerun-incomplete) resumes where it stopped.
"""

from fmridecode.generators.resume import (
    best_of_resumable,
    clear,
    clip_embedder,
    partial_dir,
    sample_seed,
)
from fmridecode.generators.tiny_diffusion import save_reconstructions
from fmridecode.generators.versatile import load_versatile, reconstruct_versatile
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, s = smk.params, smk.params.settings
image_tokens, index = load_indexed(smk.input.pred_image)
text_tokens, text_index = load_indexed(smk.input.pred_text)
ids = list(index["stim_id"])
text_tokens = align(text_tokens, list(text_index["stim_id"]), ids, "text tokens")
first, first_index = load_indexed(smk.input.first_guess)
init = align(first, list(first_index["stim_id"]), ids, "first guess")
images, stim_index = load_indexed(smk.input.images)
pipe = load_versatile(s["model"], dtype=s["dtype"])
log.info("versatile_diffusion from %s on %s, %d test images", s["model"], pipe.device, len(ids))
cache = partial_dir(smk.output.recons)


def make(k: int, a: int, b: int):
    """Rows a:b of the k-th sample (k = 0: the single-sample result)."""
    return reconstruct_versatile(
        pipe,
        image_tokens[a:b],
        text_tokens[a:b],
        init_images=init[a:b],
        strength=s["strength"],
        image_weight=s["image_weight"],
        steps=s["steps"],
        guidance=s["guidance"],
        seed=sample_seed(p.seed, k),
        out_size=p.out_size,
        batch_size=s["batch_size"],
        first_row=a,
        progress=False,
    )


key = (image_tokens, text_tokens, init, dict(s), p.seed, p.out_size)
# MindEye's best-of-N: keep the sample closest to the predicted CLIP embedding
pred_clip, clip_index = load_indexed(smk.input.pred_clip)
pred_clip = align(pred_clip, list(clip_index["stim_id"]), ids, "predicted CLIP embeddings")
embed = clip_embedder(p.best_of, p.clip_model, p.clip_pretrained)
recons = best_of_resumable(
    make, len(ids), s["batch_size"], cache, key, p.best_of, embed, pred_clip, log
)
out = smk.output
save_reconstructions(recons, index, images, stim_index, out.recons, out.pngs, out.grid)
clear(cache)
log.info("%d reconstructions", len(recons))
