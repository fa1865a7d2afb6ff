"""Rule generate: reconstruct test images from predicted image embeddings."""

from fmridecode.generators.tiny_diffusion import (
    load_generator,
    reconstruct,
    save_grid,
    save_pngs,
)
from fmridecode.io import load_indexed, save_indexed
from fmridecode.mappers.targets import align
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
pred, pred_index = load_indexed(smk.input.pred)
images, index = load_indexed(smk.input.images)
ids = list(pred_index["stim_id"])
pipe = load_generator(smk.input.model)
recons = reconstruct(
    pipe, pred, steps=p.steps, guidance=p.guidance, seed=p.seed, out_size=p.out_size
)
save_indexed(smk.output.recons, recons, pred_index[["stim_id"]])
save_pngs(recons, ids, smk.output.pngs)
save_grid(align(images, list(index["stim_id"]), ids, "stimuli"), recons, smk.output.grid, ids=ids)
log.info("%d reconstructions", len(ids))
