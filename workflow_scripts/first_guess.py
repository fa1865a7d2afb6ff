"""Rule first_guess: decode the predicted low-res images (two-stage reconstruction, stage 1)."""

from PIL import Image

from fmridecode.images import resize_images, save_reconstructions
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import lowres_images
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
pred, pred_index = load_indexed(smk.input.pred)
images, index = load_indexed(smk.input.images)
ids = list(pred_index["stim_id"])
guess = resize_images(lowres_images(pred, p.lowres_size), p.out_size, Image.BICUBIC)
out = smk.output
save_reconstructions(guess, pred_index, images, index, out.recons, out.pngs, out.grid)
log.info("%d first guesses (%d px -> %d px)", len(ids), p.lowres_size, p.out_size)
