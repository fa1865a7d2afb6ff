"""Config validation against ``config.schema.yaml`` with errors that name the key path.

Snakemake's own ``validate`` reports the schema internals; users need ``glm.maxpolydeg: 'x'
is not of type 'integer', 'null'``. Cross-key rules that JSON schema cannot express live here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key path."""


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        # the missing key is in the message, not in the path
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        parts.append(missing)
    elif error.validator == "additionalProperties":
        return ".".join(parts) or "<top level>"
    return ".".join(parts) or "<top level>"


def validate_config(config: Mapping[str, Any], schema_path: str | os.PathLike) -> None:
    """Raise ConfigError listing every schema violation as ``key.path: problem``."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{_key_path(e)}: {e.message}" for e in errors]
    if not problems:
        problems = _cross_checks(config)
    if problems:
        raise ConfigError(
            f"invalid configuration ({len(problems)} problem(s), see {os.fspath(schema_path)}):\n  "
            + "\n  ".join(problems)
        )


def _cross_checks(config: Mapping[str, Any]) -> list[str]:
    """Rules between keys that the schema cannot state."""
    problems = []
    if config["fit"]["roi"] not in config["roi"]["sets"]:
        problems.append(
            f"fit.roi: {config['fit']['roi']!r} is not one of roi.sets {config['roi']['sets']}"
        )
    glm = config["glm"]
    if glm["use_type"] not in glm["types"]:
        problems.append(f"glm.use_type: {glm['use_type']!r} is not one of glm.types {glm['types']}")
    if glm["use_type"] == "C" and not glm["wantglmdenoise"]:
        problems.append("glm.use_type: C needs glm.wantglmdenoise: true")
    if "D" in glm["types"] and not glm["wantfracridge"]:
        problems.append("glm.types: D needs glm.wantfracridge: true")
    if "C" in glm["types"] and not glm["wantglmdenoise"]:
        problems.append("glm.types: C needs glm.wantglmdenoise: true")
    source = config["source"]
    kind = source["kind"]
    if kind == "nsd" and not source["nsd"]["root"]:
        problems.append("source.nsd.root: kind nsd needs the folder of the NSD release")
    if kind == "bids":
        for key in ("root", "task"):
            if not source["bids"][key]:
                problems.append(f"source.bids.{key}: kind bids needs it")
        if not source["bids"]["images"]:
            problems.append("source.bids.images: kind bids needs the folders of the stimuli")
    if kind != "synthetic":
        undefined = [r for r in config["roi"]["sets"] if r not in config["roi"]["definitions"]]
        if undefined:
            problems.append(
                f"roi.sets: {undefined} have no entry in roi.definitions (real datasets name "
                "their ROI files there)"
            )
    fit, gen = config["fit"], config["generate"]
    for key, names in (("fit.fusion.mappers", fit["fusion"]["mappers"]),
                       ("generate.mappers", gen["mappers"])):  # fmt: skip
        if key == "fit.fusion.mappers" and "fusion" not in fit["mappers"]:
            continue
        missing = [m for m in names if m not in fit["mappers"]]
        if missing:
            problems.append(f"{key}: {missing} not in fit.mappers {fit['mappers']}")
    # what each generator needs besides the CLIP image embedding, and who predicts it
    lowres = "tiny_two_stage" in gen["generators"] or (
        "sd_unclip" in gen["generators"]
        and gen["sd_unclip"]["strength"] < 1
        and gen["sd_unclip"]["first_guess"] == "lowres"
    )
    tokens = [g for g in ("sd_unclip", "versatile_diffusion") if g in gen["generators"]]
    if lowres and any(m not in ("ridge", "gru") for m in gen["mappers"]):
        problems.append(
            "generate.mappers: the low-level first guess (tiny_two_stage, sd_unclip from lowres) "
            "is predicted by ridge and gru only; use those with it"
        )
    if tokens and any(m != "ridge" for m in gen["mappers"]):
        problems.append(
            f"generate.mappers: {tokens} condition on the pipelines' own token targets, which "
            "ridge predicts; use generate.mappers: [ridge] with them"
        )
    for name in ("sd_unclip", "versatile_diffusion"):
        if name in gen["generators"] and not gen[name]["model"]:
            problems.append(
                f"generate.{name}.model: generator {name} is selected but no model is set "
                "(a local pipeline directory or a model id in the local Hugging Face cache)"
            )
    return problems


def sort_keys(value: Any) -> Any:
    """``value`` with every nested mapping's keys in sorted order (lists keep their order).

    Snakemake detects a changed ``params`` value by comparing its text, so a dict param
    would otherwise "change" when a user merely reorders keys in a config file.
    """
    if isinstance(value, Mapping):
        return {str(k): sort_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


def canonicalise(config: dict[str, Any]) -> None:
    """Sort the keys of every section of ``config`` in place (see ``sort_keys``)."""
    for key in list(config):
        config[key] = sort_keys(config[key])
