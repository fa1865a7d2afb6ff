"""Shared helpers: config validation, the output prefix, subjects/sessions, library inputs."""

from pathlib import Path

from fmridecode.config import canonicalise, validate_config
from fmridecode.datasets.nsd import BETA_SCALE
from fmridecode.datasets.sources import nsd_layout, subjects_and_sessions
from fmridecode.mappers import TRAINABLE

validate_config(config, Path(workflow.basedir) / "config.schema.yaml")
canonicalise(config)  # key order in a config file must not look like a params change

#: every output lives under <results>/<dataset>/
OUT = f"{config['results']}/{config['dataset']}"

#: synthetic | nsd | bids (source.kind)
KIND = config["source"]["kind"]
#: the simulated dataset: the only one with ground truth (GLM recovery, simulated noise
#: ceilings) and the anat label images the analyses read
SYNTHETIC = KIND == "synthetic"
#: NSD's released betas go straight to the roi stage; everything else goes through glm
NSD_BETAS = KIND == "nsd" and config["source"]["nsd"]["entry"] == "betas"
SUBJECTS, SESSIONS = subjects_and_sessions(config)
LIB = Path(workflow.basedir) / "src" / "fmridecode"
#: the mappers trained by rule fit (ridge, fusion and truth have rules of their own)
TRAINABLE_MAPPERS = list(TRAINABLE)
#: GLM types with single-trial betas written by rule glm (A has only maps)
GLM_BETA_TYPES = [t for t in config["glm"]["types"] if t != "A"]


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    session="[A-Za-z0-9]+",
    roi="[A-Za-z0-9-]+",
    mapper="[a-z0-9_]+",
    generator="[a-z0-9_]+",
    target="image|text",


def lib(*modules):
    """Library files a rule's script imports: declared as inputs so code changes invalidate."""
    return [str(LIB / m) for m in ("io.py", "workflow.py", *modules)]


def sessions_of(subject):
    return SESSIONS[subject]


def stim(name):
    return f"{OUT}/stimuli/{name}"


def glm_betas(subject, glm_type=None):
    """One subject's betas of ``glm_type`` (default: glm.use_type), one file per session."""
    t = glm_type or config["glm"]["use_type"]
    return expand(
        f"{OUT}/glm/sub-{subject}/ses-{{session}}/betas_type-{t}.nii.gz",
        session=sessions_of(subject),
    )


def glm_type_inputs(w):
    """Every written GLM type's betas (``betas_B`` ...) and the trial tables of one subject."""
    out = {f"betas_{t}": glm_betas(w.subject, t) for t in GLM_BETA_TYPES}
    return out | {"trials": glm_inputs(w)["trials"]}


def glm_inputs(w):
    """Betas (glm.use_type) and trial tables of every session of one subject."""
    return {
        "betas": glm_betas(w.subject),
        "trials": expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/trials.parquet",
            session=sessions_of(w.subject),
        ),
    }


def session_betas(w):
    """What the roi stage reads for one subject: every session's single-trial betas (the
    glm stage's, or NSD's released files) and their trial tables."""
    if not NSD_BETAS:
        return glm_inputs(w)
    layout = nsd_layout(config["source"]["nsd"])
    return {
        "betas": [str(layout.betas_file(w.subject, s)) for s in sessions_of(w.subject)],
        "trials": [f"{OUT}/nsd/sub-{w.subject}/trials.parquet"],
    }


def glm_sources(w):
    """A subject-session's BOLD runs, events and brain mask (synthetic: its BIDS folder)."""
    from fmridecode.datasets.sources import session_brain_mask, session_runs

    if KIND == "synthetic":
        return {
            "bids": f"{OUT}/bids/sub-{w.subject}",
            "sidecar": f"{OUT}/bids/task-images_bold.json",
        }
    runs = session_runs(config, w.subject, w.session, f"{OUT}/bids")
    mask = session_brain_mask(config, w.subject, w.session, f"{OUT}/bids")
    return {
        "bold": [str(r.bold_path) for r in runs],
        "events": [str(r.events_path) for r in runs],
        "brain_mask": [str(mask)] if mask else [],
    }


def gpus(device: str) -> int:
    """GPUs a job asks its scheduler for (resource ``gpu``, which the SLURM profile turns into
    ``--gpus``): one when its stage's device is ``cuda``; none for ``cpu`` or ``auto`` (auto
    uses a GPU only where the job happens to land on one)."""
    return 1 if str(device).startswith("cuda") else 0


#: the source keys that say where a session's runs, events and brain mask are: the glm
#: rule's params, so that only they (not captions, images, splits) rerun the GLM
RUN_KEYS = {
    "synthetic": [],
    "nsd": ["root", "space", "betas", "format"],
    "bids": [
        "root",
        "events_root",
        "task",
        "bold",
        "events",
        "brain_mask",
        "stim_column",
        "trial_type_column",
        "trial_types",
    ],
}


def glm_source():
    """``source`` reduced to what locates one session's runs (see RUN_KEYS)."""
    keys = RUN_KEYS[KIND]
    out = {"kind": KIND}
    if keys:
        out[KIND] = {k: config["source"][KIND][k] for k in keys}
    return out


def roi_files(w):
    """The label images of a configured ROI (real datasets), so that a new file reruns it."""
    if KIND == "synthetic":
        return {"bids": f"{OUT}/bids/sub-{w.subject}"}
    root = config["source"][KIND]["root"]
    files = config["roi"]["definitions"][w.roi]["files"]
    return {
        "roi_files": [
            str(Path(root) / f.replace("{subject}", w.subject)) for f in files
        ]
    }


def clip_checkpoint():
    """The CLIP weights file: our small model's checkpoint when the workflow trains it, the
    user's checkpoint when ``embed.pretrained`` is a local file (an input, so that new
    weights at the same path re-embed), nothing for an open_clip tag."""
    pretrained = config["embed"]["pretrained"]
    if not pretrained:
        return [f"{OUT}/models/clip/checkpoint.pt"]
    return [pretrained] if Path(pretrained).is_file() else []


def clip_weights(wildcards, input):
    """What the CLIP loader gets as ``pretrained``: the user's tag/path, or our checkpoint."""
    return config["embed"]["pretrained"] or input.checkpoint[0]


#: the caption cache every consumer of text targets reads: the captions screening kept
CAPTIONS = f"{OUT}/embed/caption_kept.npy"
CAPTIONS_INDEX = f"{OUT}/embed/caption_kept.index.parquet"


#: embeddings of augmented views of the training images (embed.augment.views > 0)
VIEWS = f"{OUT}/embed/image_views.npy"


def views_input():
    """The augmented views' cache when ``embed.augment.views`` asks for some."""
    return [VIEWS] if config["embed"]["augment"]["views"] > 0 else []


def token_caches():
    """Token-level CLIP caches asked for in ``embed.tokens`` (not used by the default DAG)."""
    return [f"{OUT}/embed/{what}_tokens.npy" for what in config["embed"]["tokens"]]


def parent_of(name):
    """Param function: the folder of the named input (e.g. the BIDS root of a subject dir)."""
    return lambda wildcards, input: str(Path(input[name]).parent)


def recon_path(generator, name):
    """A reconstruction output of one subject and mapper (``generator`` may be a wildcard)."""
    return f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{generator}/{name}"


#: the configured generators of the tiny family (one generate job makes them all)
TINY_GENERATORS = [g for g in config["generate"]["generators"] if g.startswith("tiny")]


def first_guess_input():
    """The decoded low-res first guess, when a two-stage generator is configured."""
    if "tiny_two_stage" not in TINY_GENERATORS:
        return []
    return [
        recon_path("lowlevel", "recons.npy"),
        recon_path("lowlevel", "recons.index.parquet"),
    ]


def tiny_settings():
    """Per tiny generator: where sampling starts and the img2img strength and CLIP-gradient
    guidance scale (strength 1: from pure noise; scale 0: no gradient guidance)."""
    gen = config["generate"]
    out = {}
    for g in TINY_GENERATORS:
        start, strength, scale = "noise", 1.0, 0.0
        if g == "tiny_two_stage":
            start, strength = "first_guess", gen["two_stage"]["strength"]
        if g == "tiny_guided":
            scale = gen["guided"]["scale"]
            if gen["guided"]["prior"] == "bank":
                start, strength = "bank", gen["guided"]["strength"]
        out[g] = {"start": start, "strength": strength, "guide_scale": scale}
    return out


def unclip_two_stage():
    """Whether sd_unclip runs img2img from a first guess (strength below 1)."""
    gen = config["generate"]
    return "sd_unclip" in gen["generators"] and gen["sd_unclip"]["strength"] < 1


#: the real pipelines' first guesses decoded from predicted VAE latents, and their file prefix
LOWLEVEL_OF = {"vd_lowlevel": "versatile_diffusion", "unclip_lowlevel": "sd_unclip"}
PREFIX = {"versatile_diffusion": "vd", "sd_unclip": "unclip"}


def pred_path(name, index=False):
    """A mapper's prediction of one subject (``name``: image, vd_text, unclip_latent, ...)."""
    ext = "index.parquet" if index else "npy"
    return f"{OUT}/fit/sub-{{subject}}/{{mapper}}/pred_{name}.{ext}"


def unclip_first_guess():
    """sd_unclip's first guess when two-stage: the low-res one (lowlevel) or its own VAE's
    (unclip_lowlevel), by generate.sd_unclip.first_guess."""
    if not unclip_two_stage():
        return []
    name = {"lowres": "lowlevel", "vae": "unclip_lowlevel"}
    guess = name[config["generate"]["sd_unclip"]["first_guess"]]
    return [recon_path(guess, "recons.npy"), recon_path(guess, "recons.index.parquet")]


def unclip_caption():
    """The predicted caption token states, when sd_unclip conditions on them."""
    if config["generate"]["sd_unclip"]["text"] != "predicted":
        return []
    return [pred_path("unclip_text"), pred_path("unclip_text", True)]


def scored_generators():
    """Generators in the metric table: the configured ones, plus the first guesses scored on
    their own (lowlevel: the low-res one; vd_lowlevel, unclip_lowlevel: the pipelines' VAEs').
    """
    gens = list(config["generate"]["generators"])
    guess = config["generate"]["sd_unclip"]["first_guess"]
    if "tiny_two_stage" in gens or (unclip_two_stage() and guess == "lowres"):
        gens.append("lowlevel")
    if unclip_two_stage() and guess == "vae":
        gens.append("unclip_lowlevel")
    if "versatile_diffusion" in gens:
        gens.append("vd_lowlevel")
    return gens


def recon_outputs(pattern):
    """``pattern`` (with {subject}, {mapper}, {generator}) for every scored reconstruction:
    each subject x configured mapper x generator, plus mapper truth (the ceiling) for the
    first subject only: the test images are shared, so the ceiling is the same for all.
    """
    gens = scored_generators()
    out = expand(
        pattern, subject=SUBJECTS, mapper=config["generate"]["mappers"], generator=gens
    )
    if config["generate"]["truth"]:
        out += expand(pattern, subject=SUBJECTS[:1], mapper=["truth"], generator=gens)
    return out


def noise_tables():
    """Per-subject noise-sensitivity tables, when the analysis is on (needs tiny_two_stage)."""
    gen = config["generate"]
    if (
        not gen["noise_sensitivity"]["amplitudes"]
        or "tiny_two_stage" not in gen["generators"]
    ):
        return []
    return expand(
        f"{OUT}/metrics/noise_sensitivity/sub-{{subject}}/{{mapper}}.parquet",
        subject=SUBJECTS,
        mapper=config["generate"]["mappers"],
    )


def noise_table():
    """The concatenated noise-sensitivity table, or nothing when the analysis is off."""
    return [f"{OUT}/noise_sensitivity.parquet"] if noise_tables() else []


def local_model(generator):
    """A generator's model folder as an input when it is a local path (a hub id is not a file)."""
    model = config["generate"][generator]["model"]
    return [model] if model and Path(model).exists() else []


def network_weights():
    """Each metric network's weights resolved now (configured file, else torch hub's cached
    checkpoint): {name: [path or None, why not]}; the files are the rule's inputs, so a
    weight file that appears or changes reruns the metrics."""
    from fmridecode.metrics.weights import find_weights

    found = {n: find_weights(n, w) for n, w in config["metrics"]["networks"].items()}
    return {n: [str(path) if path else None, why] for n, (path, why) in found.items()}


def recon_tables():
    """The reconstruction metric tables: one per subject x mapper, plus truth once."""
    out = expand(
        f"{OUT}/metrics/recon/sub-{{subject}}/{{mapper}}.parquet",
        subject=SUBJECTS,
        mapper=config["generate"]["mappers"],
    )
    if config["generate"]["truth"]:
        out.append(f"{OUT}/metrics/recon/sub-{SUBJECTS[0]}/truth.parquet")
    return out


def fusion_inputs(w):
    """Each fused mapper's test and validation predictions: ``<mapper>__<kind>_<target>``
    (.npy) and the same with ``_index`` (its index table)."""
    out = {}
    for m in config["fit"]["fusion"]["mappers"]:
        for kind in ("pred", "val"):
            for target in ("image", "text"):
                path = f"{OUT}/fit/sub-{w.subject}/{m}/{kind}_{target}"
                out[f"{m}__{kind}_{target}"] = f"{path}.npy"
                out[f"{m}__{kind}_{target}_index"] = f"{path}.index.parquet"
    return out


def decoding_settings():
    """The metrics config that every decoding score depends on (metrics.decoding)."""
    m = config["metrics"]
    keys = (
        "ks",
        "pool",
        "pool_repeats",
        "n_way",
        "repeats",
        "seed",
        "zero_shot_classes",
    )
    return {k: m[k] for k in keys}


def analysis_tables():
    """The analyses' metric tables (encoding direction, microstimulation) when enabled."""
    if not SYNTHETIC:  # they read the simulated dataset's anat ROI labels
        return []
    on = [n for n in ("encoding", "microstim") if config["metrics"][n]["enabled"]]
    return [f"{OUT}/metrics/{n}/sub-{s}.parquet" for n in on for s in SUBJECTS]


def analysis_figures():
    """The analyses' figures for the HTML report (the enabled analyses, every subject)."""
    names = {
        "encoding": ["encoding/r_vs_noise_ceiling.png"],
        "microstim": ["microstim/shifts.png", "microstim/grid.png"],
    }
    on = [n for n in names if config["metrics"][n]["enabled"] and SYNTHETIC]
    return [
        f"{OUT}/analyses/sub-{s}/{f}" for n in on for s in SUBJECTS for f in names[n]
    ]


def retrieval_figures():
    """Retrieval examples of the headline mapper (generate.mappers[0]) per subject."""
    if not config["metrics"]["retrieval_examples"]:
        return []
    mapper = config["generate"]["mappers"][0]
    return [f"{OUT}/report/retrieval/sub-{s}_{mapper}.png" for s in SUBJECTS]
