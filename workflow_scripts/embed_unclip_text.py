"""Rule embed_unclip_text: SD unCLIP's caption token states, the targets of caption conditioning.

Each shown image's captions are encoded by the pipeline's own tokenizer and text encoder and
averaged per image (as Brain-Diffuser averages its caption targets).
"""

import pandas as pd

from fmridecode.generators.unclip import encode_text_tokens, load_unclip
from fmridecode.io import read_parquet, save_indexed, write_json
from fmridecode.mappers.targets import mean_per_stimulus
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
index = read_parquet(smk.input.images_index)
index = index[index["split"].isin(["train", "test"])].reset_index(drop=True)
captions = read_parquet(smk.input.captions)
captions = captions[captions["stim_id"].isin(index["stim_id"])].reset_index(drop=True)
pipe = load_unclip(p.model, dtype=p.dtype)
log.info(
    "SD unCLIP text encoder from %s: %d captions of %d images", p.model, len(captions), len(index)
)
tokens = encode_text_tokens(pipe, list(captions["caption"]))
tokens, _ = mean_per_stimulus(tokens, captions, list(index["stim_id"]))
ids = pd.DataFrame({"stim_id": index["stim_id"], "split": index["split"]})
save_indexed(smk.output.text, tokens.reshape(len(ids), -1).astype("float32"), ids)
write_json({"text": list(tokens.shape[1:])}, smk.output.shapes)
log.info("caption token states %s", tokens.shape)
