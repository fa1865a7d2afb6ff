"""Rule generate_unclip: Stable Diffusion 2.1 unCLIP from the predicted CLIP image embeddings,
with a text prompt or, by config (text: predicted), with caption token states predicted from fMRI.

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
from fmridecode.generators.unclip import load_unclip, reconstruct_unclip
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, s = smk.params, smk.params.settings
pred, pred_index = load_indexed(smk.input.pred)
images, index = load_indexed(smk.input.images)
init = None
if s["strength"] < 1:  # two-stage: img2img from the decoded first guess (low-res or VAE)
    first, first_index = load_indexed(smk.input.first_guess[0])
    init = align(first, list(first_index["stim_id"]), list(pred_index["stim_id"]), "first guess")
prompt_embeds = None
if s["text"] == "predicted":  # caption token states predicted from fMRI, in place of a prompt
    tokens, tokens_index = load_indexed(smk.input.caption[0])
    ids = list(pred_index["stim_id"])
    prompt_embeds = align(tokens, list(tokens_index["stim_id"]), ids, "caption token states")
pipe = load_unclip(s["model"], dtype=s["dtype"])
log.info("sd_unclip from %s on %s (%s)", s["model"], pipe.device, pipe.unet.dtype)
embed = clip_embedder(p.best_of, p.clip_model, p.clip_pretrained)
cache = partial_dir(smk.output.recons)


def make(k: int, a: int, b: int):
    """Rows a:b of the k-th sample (k = 0: the single-sample result)."""
    return reconstruct_unclip(
        pipe,
        pred[a:b],
        steps=s["steps"],
        guidance=s["guidance"],
        seed=sample_seed(p.seed, k),
        out_size=p.out_size,
        noise_level=s["noise_level"],
        prompt="" if prompt_embeds is not None else s["prompt"],
        prompt_embeds=None if prompt_embeds is None else prompt_embeds[a:b],
        batch_size=s["batch_size"],
        first_row=a,
        progress=False,
        init_images=None if init is None else init[a:b],
        strength=s["strength"],
    )


key = (pred, 0 if init is None else init, 0 if prompt_embeds is None else prompt_embeds)
key += (dict(s), p.seed, p.out_size)
recons = best_of_resumable(
    make, len(pred), s["batch_size"], cache, key, p.best_of, embed, pred, log
)
out = smk.output
save_reconstructions(recons, pred_index, images, index, out.recons, out.pngs, out.grid)
clear(cache)
log.info("%d reconstructions", len(recons))
