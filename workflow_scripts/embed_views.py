"""Rule embed_views: CLIP embeddings of augmented views of the non-test images."""

import numpy as np

from fmridecode.devices import resolve_device
from fmridecode.embeddings.augment import augment_images
from fmridecode.embeddings.cache import unit_rows
from fmridecode.embeddings.model import load_model
from fmridecode.embeddings.tokens import encode_images
from fmridecode.io import load_indexed, read_json, save_indexed
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, a = smk.params, smk.params.augment
images, index = load_indexed(smk.input.images)
keep = (index["split"].astype(str) != "test").to_numpy()
images, index = images[keep], index.loc[keep, ["stim_id"]].astype(str).reset_index(drop=True)
views = augment_images(images, a["views"], p.seed, a["crop"], a["jitter"])
model, preprocess, _ = load_model(p.model, p.pretrained, device=resolve_device(p.device))
flat = views.reshape(-1, *views.shape[2:])
raw, _ = encode_images(
    model, preprocess, flat, batch_size=p.batch_size, workers=p.workers, progress=True
)
threshold = read_json(smk.input.quality).get("clamp_threshold_image")
if threshold is not None:  # the image cache's clamp, so views live in the same space
    raw = np.clip(raw, -threshold, threshold)
emb = unit_rows(raw).reshape(len(images), a["views"], -1)
save_indexed(smk.output.views, emb, index)
log.info("%d images x %d views embedded (clamp threshold %s)", len(images), a["views"], threshold)
