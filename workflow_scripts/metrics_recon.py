"""Rule metrics_recon: PixCorr, SSIM and 2-way identification of every generator's recons."""

from fmridecode.embeddings.cache import embed_images
from fmridecode.embeddings.model import load_model
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.metrics.recon import recon_rows
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
images, index = load_indexed(smk.input.images)
emb, emb_index = load_indexed(smk.input.image)
model, preprocess, _ = load_model(p.model, p.pretrained)
rows = []
for generator, path in zip(p.generators, smk.input.recons, strict=True):
    recons, rindex = load_indexed(path)
    ids = list(rindex["stim_id"])
    stimuli = align(images, list(index["stim_id"]), ids, "stimuli")
    true_emb = align(emb, list(emb_index["stim_id"]), ids, "image embeddings")
    base = {"dataset": p.dataset, "subject": w.subject, "mapper": w.mapper, "generator": generator}
    rec_emb = embed_images(model, preprocess, recons)
    rows += recon_rows(recons, stimuli, rec_emb, true_emb, p.image_size, base)
    log.info("%s: %s", generator, [(r["metric"], round(r["value"], 4)) for r in rows[-3:]])
write_metrics(rows, smk.output[0])
