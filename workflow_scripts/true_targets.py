"""Rule true_targets: the 'truth' mapper, whose test predictions are the true targets.

Reconstructions from them measure what the generators can do with perfect decoding: the
ceiling that predicted embeddings are compared against.
"""

from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import load_indexed, read_parquet, save_indexed
from fmridecode.mappers.targets import align, decoding_targets
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
vindex = read_parquet(smk.input.voxels_index)
image_emb, image_index = load_pooled(smk.input.image)
caption_emb, caption_index = load_pooled(smk.input.caption)
images, stim_index = load_indexed(smk.input.images)
targets = decoding_targets(
    image_emb, image_index, caption_emb, caption_index, images, stim_index, smk.params.lowres_size
)
test_index = vindex.loc[vindex["split"] == "test", ["stim_id"]].reset_index(drop=True)
for target, (rows, ids) in targets.items():
    true = align(rows, ids, list(test_index["stim_id"]), f"{target} targets").astype("float32")
    save_indexed(smk.output[f"pred_{target}"], true, test_index)
log.info("true targets of %d test images", len(test_index))
