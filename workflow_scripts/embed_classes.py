"""Rule embed_classes: prompt-ensemble embeddings of every category (zero-shot classifiers)."""

from fmridecode.embeddings.model import load_model
from fmridecode.embeddings.prompts import TEMPLATES, class_embeddings
from fmridecode.io import read_parquet, save_indexed
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
categories = read_parquet(smk.input.categories)
model, _, tokenizer = load_model(p.model, p.pretrained)
emb = class_embeddings(model, tokenizer, list(categories["category"]))
index = categories[["category", "zero_shot"]].reset_index(drop=True)
save_indexed(smk.output.classes, emb, index)
held = list(index.loc[index["zero_shot"], "category"])
log.info("%d classes x %d templates; held out: %s", len(index), len(TEMPLATES), held)
