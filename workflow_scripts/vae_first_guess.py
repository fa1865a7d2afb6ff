"""Rule vae_first_guess: predicted VAE latents decoded by the pipeline's own VAE (the first
guess of versatile_diffusion: vd_lowlevel; of sd_unclip with first_guess vae: unclip_lowlevel)."""

from fmridecode.generators.tiny_diffusion import save_reconstructions
from fmridecode.generators.vae_latents import decode_latents
from fmridecode.io import load_indexed
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
if p.family == "versatile_diffusion":
    from fmridecode.generators.versatile import load_versatile as load
else:
    from fmridecode.generators.unclip import load_unclip as load
pred, index = load_indexed(smk.input.pred)
images, stim_index = load_indexed(smk.input.images)
pipe = load(p.model, dtype=p.dtype)
recons = decode_latents(pipe, pred, p.out_size)
out = smk.output
save_reconstructions(recons, index, images, stim_index, out.recons, out.pngs, out.grid)
log.info("%d first guesses decoded from %s latents %s", len(recons), p.family, pred.shape[1:])
