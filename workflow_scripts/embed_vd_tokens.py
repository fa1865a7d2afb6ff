"""Rule embed_vd_tokens: Versatile Diffusion's token embeddings of shown images and captions."""

import numpy as np
import pandas as pd

from fmridecode.generators.versatile import (
    encode_condition_tokens,
    encode_latents,
    load_versatile,
)
from fmridecode.io import load_indexed, read_parquet, save_indexed, write_json
from fmridecode.mappers.targets import mean_per_stimulus
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
images, index = load_indexed(smk.input.images)
shown = index["split"].isin(["train", "test"]).to_numpy()
images, index = images[shown], index.loc[shown].reset_index(drop=True)
captions = read_parquet(smk.input.captions)
captions = captions[captions["stim_id"].isin(index["stim_id"])].reset_index(drop=True)
pipe = load_versatile(p.model, dtype=p.dtype)
log.info("Versatile Diffusion from %s: %d images, %d captions", p.model, len(images), len(captions))
image_tokens, _ = encode_condition_tokens(pipe, images, None)
_, caption_tokens = encode_condition_tokens(pipe, None, list(captions["caption"]))
text_tokens, _ = mean_per_stimulus(caption_tokens, captions, list(index["stim_id"]))
ids = pd.DataFrame({"stim_id": index["stim_id"], "split": index["split"]})
save_indexed(smk.output.image, image_tokens.reshape(len(ids), -1).astype(np.float32), ids)
save_indexed(smk.output.text, text_tokens.reshape(len(ids), -1).astype(np.float32), ids)
latents = encode_latents(pipe, images)
save_indexed(smk.output.latent, latents.reshape(len(ids), -1), ids)
shapes = {k: list(v.shape[1:]) for k, v in (("image", image_tokens), ("text", text_tokens))}
write_json({**shapes, "latent": list(latents.shape[1:])}, smk.output.shapes)
log.info("tokens: image %s, text %s", image_tokens.shape, text_tokens.shape)
