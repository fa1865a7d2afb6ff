"""Rule metrics_recon: PixCorr, SSIM and 2-way identification of reconstructions."""

from fmridecode.embeddings.cache import embed_images
from fmridecode.embeddings.model import load_model
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.metrics.identification import two_way_identification
from fmridecode.metrics.image import pixcorr, resize, ssim
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
recons, rindex = load_indexed(smk.input.recons)
images, index = load_indexed(smk.input.images)
ids = list(rindex["stim_id"])
stimuli = align(images, list(index["stim_id"]), ids, "stimuli")
emb, emb_index = load_indexed(smk.input.image)
true_emb = align(emb, list(emb_index["stim_id"]), ids, "image embeddings")
model, preprocess, _ = load_model(p.model, p.pretrained)
recon_emb = embed_images(model, preprocess, recons)
a, b = resize(recons, p.image_size), resize(stimuli, p.image_size)
n = len(ids)
base = {
    "dataset": p.dataset,
    "subject": w.subject,
    "mapper": w.mapper,
    "generator": w.generator,
    "target": "image",
    "n": n,
}
rows = [
    {**base, "metric": "pixcorr", "value": pixcorr(a, b)},
    {**base, "metric": "ssim", "value": ssim(a, b)},
    {
        **base,
        "metric": "two_way_identification",
        "feature": "embedding",
        "value": two_way_identification(recon_emb, true_emb),
        "chance": 0.5,
    },
]
write_metrics(rows, smk.output[0])
log.info("%s", [(r["metric"], round(r["value"], 4)) for r in rows])
