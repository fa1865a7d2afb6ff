"""Rule prepare_stimuli: a real dataset's stimulus set in the workflow's files."""

from pathlib import Path

from fmridecode.datasets.sources import (
    bids_stimulus_index,
    nsd_image_loader,
    nsd_layout,
    nsd_stimulus_index,
)
from fmridecode.datasets.stimuli import (
    categories_from_ids,
    coco_captions,
    coco_categories,
    coco_ids,
    image_file_loader,
    write_images,
    write_tables,
)
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
source, sessions = smk.params.source, smk.params.sessions
config = {"source": source}
if source["kind"] == "nsd":
    cfg = source["nsd"]
    index = nsd_stimulus_index(config, sessions)
    load = nsd_image_loader(nsd_layout(cfg).stimuli)
    coco_of = dict(zip(index["stim_id"], index["coco_id"], strict=True))
    caption_files = [Path(cfg["root"]) / f for f in cfg["captions"]]
    instance_files = [Path(cfg["root"]) / f for f in cfg["instances"]]
else:
    cfg = source["bids"]
    index = bids_stimulus_index(config, sessions)
    root = Path(cfg["root"])  # relative image / caption paths are relative to the root
    load = image_file_loader([root / d for d in cfg["images"]], cfg["image_template"])
    coco_of = coco_ids(index["stim_id"], cfg["coco_id_pattern"])
    caption_files = [root / f for f in cfg["captions"]]
    instance_files = []
log.info("%d stimuli: %s", len(index), index["split"].value_counts().to_dict())
write_images(smk.output.images, index, load, source["image_size"])
captions = coco_captions(caption_files, coco_of) if caption_files else coco_captions([], {})
if instance_files:  # NSD: COCO's object categories (Mind Reader's category decoding)
    labels, categories = coco_categories(instance_files, coco_of, index)
else:  # GOD: the synset in the image name; datasets without labels: empty tables
    pattern = source["bids"]["category_pattern"] if source["kind"] == "bids" else None
    labels, categories = categories_from_ids(index, pattern)
write_tables(captions, labels, categories, smk.output)
log.info(
    "%d captions of %d images, %d categories (%d zero-shot)",
    len(captions),
    captions["stim_id"].nunique(),
    len(categories),
    int(categories["zero_shot"].sum()),
)
