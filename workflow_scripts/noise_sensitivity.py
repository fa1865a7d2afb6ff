"""Rule noise_sensitivity: two-stage reconstruction from a first guess with Gaussian noise added.

Regenerates the noise-sensitivity table of the two-stage paper (section 3.4): for each noise
SD (0-255 scale, clipped; 0 = the plain first guess) the noisy first guess (generator
``lowlevel``) and the second stage run from it (``tiny_two_stage``) are scored like any
reconstruction, with the amplitude in column ``noise_amplitude``.
"""

from fmridecode.embeddings.cache import embed_images, load_pooled
from fmridecode.embeddings.model import load_model
from fmridecode.generators.tiny_diffusion import load_generator, reconstruct
from fmridecode.images import add_noise
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.metrics.recon import recon_rows
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
pred, pred_index = load_indexed(smk.input.pred)
ids = list(pred_index["stim_id"])
guess, guess_index = load_indexed(smk.input.first_guess)
guess = align(guess, list(guess_index["stim_id"]), ids, "first guesses")
images, index = load_indexed(smk.input.images)
stimuli = align(images, list(index["stim_id"]), ids, "stimuli")
emb, emb_index = load_pooled(smk.input.image)
true_emb = align(emb, list(emb_index["stim_id"]), ids, "image embeddings")
pipe = load_generator(smk.input.model, p.device)
model, preprocess, _ = load_model(p.clip_model, p.clip_pretrained)
rows = []
for amp in [0.0, *sorted(float(a) for a in p.amplitudes)]:
    noisy = add_noise(guess, amp, p.seed)
    recons = reconstruct(
        pipe,
        pred,
        steps=p.steps,
        guidance=p.guidance,
        seed=p.seed,
        out_size=p.out_size,
        init_images=noisy,
        strength=p.strength,
    )
    for generator, imgs in (("lowlevel", noisy), ("tiny_two_stage", recons)):
        base = {
            "dataset": p.dataset,
            "subject": w.subject,
            "mapper": w.mapper,
            "generator": generator,
            "noise_amplitude": amp,
        }
        emb_rec = embed_images(model, preprocess, imgs)
        rows += recon_rows(imgs, stimuli, emb_rec, true_emb, p.image_size, base, n_way=())
    log.info("noise %g: %s", amp, [(r["metric"], round(r["value"], 3)) for r in rows[-4:]])
write_metrics(rows, smk.output[0])
