"""Rule embed_views: CLIP embeddings of augmented views of the non-test images."""

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import embed_views, save_pooled
from fmridecode.embeddings.model import load_model
from fmridecode.io import load_indexed, read_json
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, a = smk.params, smk.params.augment
images, index = load_indexed(smk.input.images)
keep = (index["split"].astype(str) != "test").to_numpy()
model, preprocess, _ = load_model(p.model, p.pretrained, device=resolve_device(p.device))
threshold = read_json(smk.input.quality).get("clamp_threshold_image")
emb = embed_views(
    model, preprocess, images[keep], a["views"], p.seed, crop=a["crop"], jitter=a["jitter"],
    threshold=threshold, batch_size=p.batch_size, workers=p.workers, compute=p.compute,
    progress=True,
)  # fmt: skip
views_index = index.loc[keep, ["stim_id"]].astype(str).reset_index(drop=True)
save_pooled(smk.output.views, emb, views_index, p.dtype)
log.info("%d images x %d views embedded (clamp threshold %s)", len(emb), a["views"], threshold)
