"""Rule vd_first_guess: predicted VAE latents decoded by the VD pipeline's VAE (vd_lowlevel)."""

from fmridecode.generators.tiny_diffusion import save_reconstructions
from fmridecode.generators.versatile import decode_latents, load_versatile
from fmridecode.io import load_indexed, read_json
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
shape = read_json(smk.input.shapes)["latent"]
pred, index = load_indexed(smk.input.pred)
images, stim_index = load_indexed(smk.input.images)
pipe = load_versatile(p.model, dtype=p.dtype)
recons = decode_latents(pipe, pred.reshape(len(pred), *shape), p.out_size)
out = smk.output
save_reconstructions(recons, index, images, stim_index, out.recons, out.pngs, out.grid)
log.info("%d first guesses decoded from latents %s", len(recons), shape)
