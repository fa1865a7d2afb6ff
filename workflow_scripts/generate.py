"""Rule generate: reconstruct test images from predicted image embeddings."""

from fmridecode.generators.tiny_diffusion import load_generator, reconstruct, save_reconstructions
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
pred, pred_index = load_indexed(smk.input.pred)
images, index = load_indexed(smk.input.images)
ids = list(pred_index["stim_id"])
init = None
if smk.input.first_guess:  # two-stage: img2img from the decoded low-res first guess
    guess, guess_index = load_indexed(smk.input.first_guess[0])
    init = align(guess, list(guess_index["stim_id"]), ids, "first guesses")
pipe = load_generator(smk.input.model)
recons = reconstruct(
    pipe,
    pred,
    steps=p.steps,
    guidance=p.guidance,
    seed=p.seed,
    out_size=p.out_size,
    init_images=init,
    strength=p.strength,
)
out = smk.output
save_reconstructions(recons, pred_index, images, index, out.recons, out.pngs, out.grid)
log.info("%d reconstructions", len(ids))
