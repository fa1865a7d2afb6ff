"""Rule microstim: Mind Reader's microstimulation (3.3) of one subject's fitted mapper: set an
ROI's z-scored voxels (boost / silence), decode, measure the shift toward every category's
class embedding, and generate images from the stimulated embeddings with the tiny generator."""

from fmridecode.devices import resolve_device
from fmridecode.generators.tiny_diffusion import load_generator
from fmridecode.io import load_indexed
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align
from fmridecode.metrics.encoding import roi_columns
from fmridecode.metrics.microstim import (
    expand_rois,
    generate_conditions,
    manipulation_values,
    microstim_grid,
    microstim_rows,
    microstim_shifts,
    shift_figure,
)
from fmridecode.metrics.table import write_metrics
from fmridecode.roi import roi_names
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w, out = smk.params, smk.wildcards, smk.output
model = RidgeCV.load(smk.input.model)
voxels, vindex = load_indexed(smk.input.voxels)
test = (vindex["split"] == "test").to_numpy()
X, ids = voxels[test], list(vindex.loc[test, "stim_id"])
class_emb, class_index = load_indexed(smk.input.classes)
rois = expand_rois(p.rois, roi_names(p.bids_dir, w.subject))
columns = roi_columns(p.bids_dir, w.subject, p.fit_roi, rois)
values = manipulation_values(p.manipulations, p.boost_value)
shifts, base_pred, stimulated = microstim_shifts(
    model.predict, X, columns, values, class_emb, class_index["category"]
)
base = {"dataset": p.dataset, "subject": w.subject, "mapper": p.mapper}
n_voxels = {roi: int(sel.sum()) for roi, sel in columns.items()}
rows = microstim_rows(shifts, base, rois, p.manipulations, n_voxels, len(ids))
write_metrics(rows, out.table)
for row in rows:
    if row["metric"] == "microstim_top_shift":
        log.info(
            "%s %s (%d voxels): top %s %.3f %s", row["roi"], row["manipulation"], row["n"],
            row.get("category"), row["value"], row["status"],
        )  # fmt: skip
title = f"microstimulation, sub-{w.subject}, {p.mapper} on {p.fit_roi} (boost = {p.boost_value})"
shift_figure(shifts, out.shifts, title)

# images from the stimulated embeddings: the generate rule's loader and sampler; the same
# seeded noise for a test image in every column, so columns differ by the embedding only
pipe = load_generator(smk.input.generator, resolve_device(p.device))
n = min(p.images, len(ids))
stim_images, stim_index = load_indexed(smk.input.images)
stimuli = align(stim_images, list(stim_index["stim_id"]), ids[:n], "stimulus images")
conditions = {"baseline": base_pred[:n]}
conditions |= {f"{roi} {m}": emb[:n] for (roi, m), emb in stimulated.items()}
settings = {"steps": p.steps, "guidance": p.guidance, "seed": p.seed, "out_size": p.out_size}
generated = generate_conditions(pipe, conditions, **settings)
microstim_grid(stimuli, generated, ids[:n], out.grid, title)
log.info("%d conditions x %d test images generated", len(generated), n)
