"""Rule retrieval_examples: seeded fMRI queries of test images and the top-k test images
retrieved by their decoded CLIP image embedding, drawn as a figure."""

from pathlib import Path

import numpy as np

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import atomic_path, load_indexed
from fmridecode.mappers.targets import align
from fmridecode.metrics.retrieval import top_k
from fmridecode.report.figures import retrieval_examples_figure
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
pred, pred_index = load_indexed(smk.input.pred)
emb, emb_index = load_pooled(smk.input.image)
images, images_index = load_indexed(smk.input.images)
ids = list(pred_index["stim_id"])
uniq = list(dict.fromkeys(ids))  # the candidate pool: every test image once
candidates = align(emb, list(emb_index["stim_id"]), uniq, "image embeddings")
pictures = align(images, list(images_index["stim_id"]), uniq, "stimulus images")
rows = np.sort(np.random.default_rng(p.seed).permutation(len(ids))[: p.n])
k = min(p.k, len(uniq))  # a test set smaller than k shows all of it
best = top_k(pred[rows], candidates, k)
truth = np.array([uniq.index(ids[r]) for r in rows])
hits = best == truth[:, None]
title = f"sub-{w.subject}, {w.mapper}: fMRI -> top-{k} of {len(uniq)} test images"
png = retrieval_examples_figure(pictures[truth], pictures[best], hits, title)
with atomic_path(smk.output[0]) as tmp:
    Path(tmp).write_bytes(png)
log.info("%d queries, %d with the seen image in the top %d", len(rows), hits.any(1).sum(), k)
