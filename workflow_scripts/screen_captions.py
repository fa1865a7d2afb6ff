"""Rule screen_captions: CLIP probabilities of each image's captions, the kept ones cached."""

from fmridecode.embeddings.cache import load_pooled, save_pooled
from fmridecode.embeddings.screening import kept_captions, screen_captions
from fmridecode.io import read_json, read_parquet, write_json, write_parquet
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
image, image_index = load_pooled(smk.input.image)
caption, caption_index = load_pooled(smk.input.caption)
scale = read_json(smk.input.model)["logit_scale"]
table = screen_captions(image, image_index, caption, caption_index, scale, smk.params.keep_ratio)
texts = read_parquet(smk.input.captions)[["stim_id", "caption_idx", "caption"]]
table = table.merge(texts.astype({"stim_id": str}), on=["stim_id", "caption_idx"], how="left")
write_parquet(table, smk.output.table)
kept, kept_index = kept_captions(caption, table)
save_pooled(smk.output.kept, kept, kept_index, smk.params.dtype)
by_kind = table.groupby("kind")["kept"].mean().round(3).to_dict()
summary = {
    "screening_logit_scale": round(float(scale), 3),
    "screening_keep_ratio": smk.params.keep_ratio,
    "captions_kept": int(len(kept)),
    "captions_total": int(len(table)),
    **{f"kept_share_{kind}": share for kind, share in by_kind.items()},
}
write_json(summary, smk.output.summary)
log.info(
    "screening (logit scale %.1f, keep_ratio %s): kept %d of %d captions; share kept by kind %s",
    scale, smk.params.keep_ratio, len(kept), len(table), by_kind,
)  # fmt: skip
