"""Conda env files parse, and their pins agree with pyproject.toml (the tested versions)."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for d in deps:
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^;\s]+)", d)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.-]+)\s*==?\s*([^\s#]+)$", item.strip())
            if m:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_env_files_parse_and_agree_with_pyproject():
    reference = pyproject_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs, "no env files"
    for path in envs:
        pins = env_pins(path)
        assert pins.get("python") == "3.11", path
        for name, version in pins.items():
            if name == "python":
                continue
            assert name in reference, f"{path.name}: {name} is not a pinned project dependency"
            assert version == reference[name], (
                f"{path.name}: {name}={version}, pyproject {reference[name]}"
            )


def test_every_rule_family_has_an_env():
    assert {p.stem for p in (REPO / "envs").glob("*.yaml")} >= {"data", "torch"}
