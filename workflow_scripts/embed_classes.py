"""Rule embed_classes: prompt-ensemble embeddings of every category (zero-shot classifiers)."""

import numpy as np

from fmridecode.embeddings.cache import load_pooled
from fmridecode.embeddings.model import load_model
from fmridecode.embeddings.prompts import TEMPLATES, class_embeddings
from fmridecode.embeddings.tokens import class_embeddings_with_context, load_context
from fmridecode.io import load_indexed, read_parquet, save_indexed, write_json
from fmridecode.metrics.decoding import load_truth
from fmridecode.metrics.zero_shot import embedding_zero_shot
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
categories = read_parquet(smk.input.categories)
model, _, tokenizer = load_model(p.model, p.pretrained)
names = list(categories["category"])
if not names:  # a dataset without category labels (NSD, BOLD5000): zero-shot rows unavailable
    width = load_indexed(smk.input.image, mmap=True)[0].shape[1]
    emb = np.zeros((0, width), dtype=np.float32)
    log.warning(
        "no category labels in %s: zero-shot metrics will be unavailable", smk.input.categories
    )
elif smk.input.context:  # learned context vectors (CoOp) instead of the prompt templates
    context = load_context(smk.input.context[0])
    emb = class_embeddings_with_context(model, tokenizer, names, context)
    log.info(
        "class prompts: %d learned context vectors from %s", len(context), smk.input.context[0]
    )
else:
    emb = class_embeddings(model, tokenizer, names)
index = categories[["category", "zero_shot"]].reset_index(drop=True)
save_indexed(smk.output.classes, emb, index)
held = list(index.loc[index["zero_shot"], "category"])
log.info("%d classes (%d templates unless context); held out: %s", len(index), len(TEMPLATES), held)

# the CLIP space's own zero-shot accuracy: the true embeddings of the test images showing a
# held-out category, classified among all categories (the ceiling of decoded embeddings)
truth = load_truth(smk.input.image, smk.input.caption, smk.output.classes, smk.input.labels)
_, image_index = load_pooled(smk.input.image)
test = list(image_index.loc[image_index["split"] == "test", "stim_id"])
quality = embedding_zero_shot(truth.targets, truth.labels, emb, names, set(held), test)
write_json(quality, smk.output.quality)
log.info("CLIP zero-shot on the test images' true embeddings: %s", quality)
