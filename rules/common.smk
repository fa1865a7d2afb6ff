"""Shared helpers: config validation, the output prefix, subjects/sessions, library inputs."""

from pathlib import Path

from fmridecode.config import validate_config
from fmridecode.datasets.synthetic import design_summary

validate_config(config, Path(workflow.basedir) / "config.schema.yaml")

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
