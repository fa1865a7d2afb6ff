"""Rule generate: the tiny generator family for one subject and mapper, in one job.

tiny: from noise; tiny_two_stage: img2img from the decoded low-res first guess; tiny_guided:
CLIP-gradient guidance towards the predicted embedding, from noise or from the non-test
stimulus closest to the prediction. Each: best of generate.best_of samples. Finished chunks
of generate.tiny.sample_batch images are kept in ``.partial/`` beside each generator's outputs
until they are written, so a killed run (rerun with --rerun-incomplete) resumes there.
"""

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import embed_images, load_pooled
from fmridecode.embeddings.model import load_model
from fmridecode.generators.guidance import clip_guide, nearest_in_bank
from fmridecode.generators.resume import best_of_resumable, clear, partial_dir, sample_seed
from fmridecode.generators.tiny_diffusion import load_generator, reconstruct, save_reconstructions
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, out = smk.params, smk.output
pred, pred_index = load_indexed(smk.input.pred)
images, index = load_indexed(smk.input.images)
ids = list(pred_index["stim_id"])
device = resolve_device(p.device)
pipe = load_generator(smk.input.model, device)
settings = dict(p.generators)
clip_model = preprocess = None
if p.best_of > 1 or any(s["guide_scale"] > 0 for s in settings.values()):
    clip_model, preprocess, _ = load_model(p.clip_model, p.clip_pretrained, device)


def start_images(start: str):
    """Where sampling starts: noise (None), the first guess, or the closest bank image."""
    if start == "first_guess":
        guess, guess_index = load_indexed(smk.input.first_guess[0])
        return align(guess, list(guess_index["stim_id"]), ids, "first guesses")
    if start == "bank":  # non-test stimuli only: retrieving a test image would copy the answer
        emb, emb_index = load_pooled(smk.input.image)
        bank_ids = list(emb_index.loc[emb_index["split"] != "test", "stim_id"])
        bank = align(images, list(index["stim_id"]), bank_ids, "bank images")
        bank_emb = align(emb, list(emb_index["stim_id"]), bank_ids, "bank embeddings")
        init, rows = nearest_in_bank(pred, bank_emb, bank)
        log.info("bank priors: %d distinct images for %d test images", len(set(rows)), len(ids))
        return init
    return None


for k, (name, s) in enumerate(settings.items()):
    init = start_images(s["start"])

    def make(j: int, a: int, b: int, init=init, s=s):
        """Rows a:b of the j-th sample of the test images (j = 0: the single-sample result)."""
        return reconstruct(
            pipe,
            pred[a:b],
            steps=p.steps,
            guidance=p.guidance,
            seed=sample_seed(p.seed, j),
            out_size=p.out_size,
            batch_size=p.sample_batch,
            init_images=None if init is None else init[a:b],
            strength=s["strength"],
            guide=clip_guide(clip_model, pred[a:b]) if s["guide_scale"] > 0 else None,
            guide_scale=s["guide_scale"],
            first_row=a,
        )

    cache = partial_dir(out.recons[k])
    key = (pred, init if init is not None else 0, s, p.steps, p.guidance, p.seed, p.out_size)
    recons = best_of_resumable(
        make, len(pred), p.sample_batch, cache, (name, *key), p.best_of,
        lambda imgs: embed_images(clip_model, preprocess, imgs), pred, log,
    )  # fmt: skip
    save_reconstructions(
        recons, pred_index, images, index, out.recons[k], out.pngs[k], out.grids[k]
    )
    clear(cache)
    log.info("%s: %d reconstructions on %s (%s)", name, len(ids), device, s)
