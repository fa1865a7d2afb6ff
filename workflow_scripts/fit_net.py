"""Rules fit and fit_lowres: train one of the seed papers' mappers (mappers.zoo) and predict
test and validation embeddings (fit) or the low-res first guess (fit_lowres); resumes from
its checkpoints when a killed job is rerun."""

from pathlib import Path

import torch

from fmridecode.devices import resolve_device
from fmridecode.embeddings.cache import load_pooled
from fmridecode.io import (
    atomic_path,
    clear,
    load_indexed,
    partial_dir,
    save_indexed,
    write_parquet,
)
from fmridecode.mappers.targets import lowres_targets
from fmridecode.mappers.zoo import fit_mapper, load_image_views, subject_data
from fmridecode.report.figures import training_curve_figure
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, t, mapper = smk.params, smk.params.training, smk.wildcards.mapper
X, vindex = load_indexed(smk.input.voxels)
image_emb, image_index = load_pooled(smk.input.image)
caption_emb, caption_index = load_pooled(smk.input.caption)
extra = {}
if p.targets == "lowres":  # the two-stage method's first stage: the low-res image
    images, stim_index = load_indexed(smk.input.images)
    extra["lowres"] = (lowres_targets(images, p.lowres_size), list(stim_index["stim_id"]))
train, val, eval_x, eval_index = subject_data(
    X, vindex, image_emb, image_index, caption_emb, caption_index, p.validation, p.seed,
    caption=t["caption"], extra_targets=extra, image_views=load_image_views(smk.input.views),
)  # fmt: skip
device = resolve_device(t["device"])
log.info(
    "%s: %d voxels, %d train / %d validation / %d test rows, device %s",
    mapper, X.shape[1], len(train.x), len(val.x), len(eval_x["test"]), device,
)  # fmt: skip
partial = partial_dir(smk.output.model) / p.targets
res = fit_mapper(
    mapper, train, val, eval_x, dict(p.hp), batch_size=t["batch_size"], patience=t["patience"],
    seed=p.seed, device=device, partial=partial, targets=p.targets,
)  # fmt: skip
for name, where in res.resumed.items():
    if where:
        log.info("%s resumed from its checkpoint at %s", name, where)
for split, kind in (("test", "pred"), ("val", "val")):
    for target, rows in res.predictions[split].items():
        if f"{kind}_{target}" in smk.output.keys():  # lowres: test predictions only
            save_indexed(smk.output[f"{kind}_{target}"], rows, eval_index[split])
with atomic_path(smk.output.model) as tmp:
    torch.save({"mapper": mapper, "hp": dict(p.hp), "states": res.states}, tmp)
write_parquet(res.curve, smk.output.curve)
with atomic_path(smk.output.figure) as tmp:
    Path(tmp).write_bytes(training_curve_figure(res.curve, f"sub-{smk.wildcards.subject} {mapper}"))
clear(partial)
if partial.parent.exists() and not any(partial.parent.iterdir()):
    partial.parent.rmdir()  # .partial/ itself, unless fit_lowres of this mapper is running
log.info("stops: %s", res.stops)
