"""Rule metrics_recon: every reconstruction metric of every scored generator's recons.

PixCorr, SSIM, CLIP 2-way / random 2-way / n-way identification, and the feature-network
metrics (AlexNet(2), AlexNet(5), Inception-v3 2-way; EffNet-B1 and SwAV distances) where their
weights are present; otherwise those rows are written as unavailable with the reason.
"""

from fmridecode.embeddings.cache import embed_images, load_pooled
from fmridecode.embeddings.model import load_model
from fmridecode.io import load_indexed
from fmridecode.mappers.targets import align
from fmridecode.metrics.networks import NETWORKS, features, load_network
from fmridecode.metrics.recon import network_row, recon_rows
from fmridecode.metrics.table import write_metrics
from fmridecode.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
images, index = load_indexed(smk.input.images)
emb, emb_index = load_pooled(smk.input.image)
model, preprocess, _ = load_model(p.model, p.pretrained)
networks = {}  # name -> (feature extractor or None, why not)
for name in NETWORKS:
    weights, why = p.networks[name]  # resolved at parse time (metrics.weights.find_weights)
    networks[name] = (load_network(name, weights) if weights else None, why)
    log.info("%s: %s", name, weights or why)
rows = []
for generator, path in zip(p.generators, smk.input.recons, strict=True):
    recons, rindex = load_indexed(path)
    ids = list(rindex["stim_id"])
    stimuli = align(images, list(index["stim_id"]), ids, "stimuli")
    true_emb = align(emb, list(emb_index["stim_id"]), ids, "image embeddings")
    base = {"dataset": p.dataset, "subject": w.subject, "mapper": w.mapper, "generator": generator}
    rec_emb = embed_images(model, preprocess, recons)
    rows += recon_rows(
        recons, stimuli, rec_emb, true_emb, p.image_size, base,
        n_way=p.n_way, repeats=p.repeats, seed=p.seed,
    )  # fmt: skip
    for name, (extractor, why) in networks.items():
        if extractor is None:
            rows += [network_row(f, None, None, base, why) for f in NETWORKS[name].nodes]
            continue
        rec_feats, true_feats = (
            features(extractor, recons, name),
            features(extractor, stimuli, name),
        )
        rows += [network_row(f, rec_feats[f], true_feats[f], base) for f in NETWORKS[name].nodes]
    log.info(
        "%s: %s",
        generator,
        [(r["metric"], r.get("feature"), round(r["value"], 4)) for r in rows[-9:]],
    )
write_metrics(rows, smk.output[0])
