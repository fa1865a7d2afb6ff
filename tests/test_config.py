"""Config validation: the embedded default passes; errors name the key path."""

from pathlib import Path

import pytest
import yaml

from fmridecode.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config.schema.yaml"


def default():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid():
    validate_config(default(), SCHEMA)


def test_every_schema_key_is_documented_in_readme():
    schema = yaml.safe_load(SCHEMA.read_text())
    readme = (REPO / "README.md").read_text()

    def walk(node, prefix):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{prefix}{key} has no description in the schema"
            if "properties" in sub:
                yield from walk(sub, f"{prefix}{key}.")
            else:
                yield prefix + key

    for key in walk(schema, ""):
        leaf = key.rsplit(".", 1)[-1]
        assert f"`{key}`" in readme or f"`.{leaf}`" in readme or f", `.{leaf}`" in readme, key


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["glm"].update(maxpolydeg="two"), "glm.maxpolydeg: 'two' is not of type"),
        (lambda c: c["embed"].pop("seed"), "embed.seed: 'seed' is a required property"),
        (lambda c: c.update(extra=1), "<top level>: Additional properties are not allowed"),
        (lambda c: c["simulate"].update(size="huge"), "simulate.size: 'huge' is not one of"),
        (
            lambda c: c["fit"].update(mappers=["ridge", "fusion"]),
            "fit.fusion.mappers: ['brainclip_linear', 'mindreader_cnn', 'brain2word_ae'] not in",
        ),
        (
            lambda c: c["generate"].update(mappers=["gru", "fusion"]),
            "generate.mappers: the low-level first guess",
        ),
        (
            lambda c: c["fit"]["brainclip_linear"].update(supervision="VTX"),
            "fit.brainclip_linear.supervision: 'VTX' is not one of",
        ),
    ],
)
def test_errors_name_the_key_path(edit, message):
    cfg = default()
    edit(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, SCHEMA)
    assert message in str(e.value)


def test_generators_may_use_any_mapper_their_inputs_allow():
    cfg = default()
    cfg["generate"]["mappers"] = ["ridge", "gru"]  # both predict the low-level first guess
    validate_config(cfg, SCHEMA)
    cfg["generate"].update(generators=["tiny", "tiny_guided"], mappers=["brainclip_vae"])
    validate_config(cfg, SCHEMA)  # from the CLIP embedding alone


def test_canonicalise_sorts_nested_keys_but_not_lists():
    from fmridecode.config import canonicalise

    a = {"fit": {"ridge": {"cv_folds": 5, "alphas": [10.0, 1.0]}, "roi": "x"}, "dataset": "d"}
    b = {"dataset": "d", "fit": {"roi": "x", "ridge": {"alphas": [10.0, 1.0], "cv_folds": 5}}}
    canonicalise(a)
    canonicalise(b)
    assert repr(a["fit"]) == repr(b["fit"])
    assert a["fit"]["ridge"]["alphas"] == [10.0, 1.0]
    assert list(a["fit"]) == ["ridge", "roi"]
