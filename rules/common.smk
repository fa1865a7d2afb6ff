"""Shared helpers: config validation, the output prefix, subjects/sessions, library inputs."""

from pathlib import Path

from fmridecode.config import canonicalise, validate_config
from fmridecode.datasets.synthetic import design_summary

validate_config(config, Path(workflow.basedir) / "config.schema.yaml")
canonicalise(config)  # key order in a config file must not look like a params change

#: every output lives under <results>/<dataset>/
OUT = f"{config['results']}/{config['dataset']}"

DESIGN = design_summary(config["simulate"]["size"])
SUBJECTS = DESIGN["subjects"]
SESSIONS = DESIGN["sessions"]
LIB = Path(workflow.basedir) / "src" / "fmridecode"


wildcard_constraints:
    subject="[0-9]+",
    session="[0-9]+",
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


def glm_inputs(w):
    """Betas and trial tables of every session of one subject."""
    return {
        "betas": expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/betas.nii.gz",
            session=sessions_of(w.subject),
        ),
        "trials": expand(
            f"{OUT}/glm/sub-{w.subject}/ses-{{session}}/trials.parquet",
            session=sessions_of(w.subject),
        ),
    }


def clip_checkpoint():
    """The small model's checkpoint when the workflow trains it, else nothing to build."""
    return [] if config["embed"]["pretrained"] else [f"{OUT}/models/clip/checkpoint.pt"]


def clip_weights(wildcards, input):
    """What the CLIP loader gets as ``pretrained``: the user's tag/path, or our checkpoint."""
    return config["embed"]["pretrained"] or input.checkpoint[0]


def parent_of(name):
    """Param function: the folder of the named input (e.g. the BIDS root of a subject dir)."""
    return lambda wildcards, input: str(Path(input[name]).parent)


def recon_path(generator, name):
    """A reconstruction output of one subject and mapper (``generator`` may be a wildcard)."""
    return f"{OUT}/generate/sub-{{subject}}/{{mapper}}/{generator}/{name}"


def first_guess_of(w):
    """Two-stage generators start from the decoded low-res first guess; others from noise."""
    if w.generator.endswith("_two_stage"):
        guess = f"{OUT}/generate/sub-{w.subject}/{w.mapper}/lowlevel/recons"
        return [f"{guess}.npy", f"{guess}.index.parquet"]
    return []


def strength_of(w):
    """img2img strength of a generator (1.0: sampling from pure noise)."""
    if w.generator.endswith("_two_stage"):
        return config["generate"]["two_stage"]["strength"]
    return 1.0


def scored_generators():
    """Generators in the metric table: the configured ones, plus lowlevel for two-stage."""
    gens = list(config["generate"]["generators"])
    if any(g.endswith("_two_stage") for g in gens):
        gens.append("lowlevel")
    return gens
