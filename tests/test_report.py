"""The report: headline table picks the right rows; HTML and markdown are written."""

import pandas as pd
import pytest

from fmridecode.report.html import headline_table, recon_table, render_report


def metrics_frame() -> pd.DataFrame:
    rows = []
    for s, r1 in (("01", 0.5), ("02", 0.25)):
        base = {"dataset": "d", "subject": s, "status": "ok"}
        rows += [
            {
                **base,
                "mapper": "ridge",
                "metric": "recall_at_k",
                "target": "image",
                "k": 1,
                "direction": "forward",
                "value": r1,
                "chance": 0.01,
            },
            {
                **base,
                "mapper": "ridge",
                "metric": "recall_at_k",
                "target": "image",
                "k": 1,
                "direction": "backward",
                "value": 0.99,
                "chance": 0.01,
            },
            {
                **base,
                "mapper": "ridge",
                "metric": "two_way_identification",
                "target": "image",
                "value": 0.9,
                "chance": 0.5,
            },
            {
                **base,
                "mapper": "ridge",
                "generator": "tiny",
                "metric": "two_way_identification",
                "target": "image",
                "feature": "clip",
                "value": 0.7,
                "chance": 0.5,
            },
            {
                **base,
                "mapper": "ridge",
                "generator": "tiny",
                "metric": "two_way_identification",
                "target": "image",
                "feature": "alexnet2",
                "value": float("nan"),
                "chance": 0.5,
                "status": "unavailable: no alexnet weights",
            },
            {**base, "mapper": "ridge", "generator": "tiny", "metric": "pixcorr", "value": 0.3},
            {**base, "mapper": "ridge", "generator": "lowlevel", "metric": "pixcorr", "value": 0.5},
            {**base, "mapper": "none", "metric": "glm_recovery_r", "glm_type": "B", "value": 0.6},
            {
                **base,
                "mapper": "none",
                "metric": "category_auc",
                "feature": "fmri",
                "category": "mean",
                "value": 0.7,
                "chance": 0.5,
            },
            {
                **base,
                "mapper": "ridge",
                "metric": "zero_shot_top1",
                "target": "image",
                "value": 0.25,
                "chance": 0.04,
            },
            {**base, "mapper": "none", "metric": "glm_recovery_r", "glm_type": "D", "value": 0.65},
        ]
    return pd.DataFrame(rows)


def test_headline_table_picks_forward_and_separates_recon():
    head = headline_table(metrics_frame()).set_index("subject")
    assert head.loc["01", "R@1 image"] == 0.5  # forward, not backward
    assert head.loc["02", "R@1 image"] == 0.25
    assert head.loc["01", "2-way image emb."] == 0.9  # the prediction, not the recon
    assert head.loc["01", "GLM recovery r (B)"] == 0.6  # one column per GLM type
    assert head.loc["01", "GLM recovery r (D)"] == 0.65
    assert "PixCorr" not in head.columns  # reconstructions have their own table
    assert head.loc["01", "category AUC (fmri)"] == 0.7
    assert head.loc["02", "zero-shot top-1 image"] == 0.25


def test_recon_table_keeps_generators_apart():
    recon = recon_table(metrics_frame()).set_index(["subject", "generator"])
    assert recon.loc[("01", "tiny"), "CLIP 2-way"] == 0.7  # one column per feature
    assert recon.loc[("01", "tiny"), "PixCorr"] == 0.3
    assert recon.loc[("01", "lowlevel"), "PixCorr"] == 0.5
    assert pd.isna(recon.loc[("02", "lowlevel"), "CLIP 2-way"])  # not measured: empty, not 0
    assert "AlexNet(2)" not in recon.columns  # unavailable everywhere: listed apart


def test_render_writes_html_and_markdown(tmp_path):
    from PIL import Image

    grid = tmp_path / "generate/sub-01/ridge/tiny/grid.png"
    grid.parent.mkdir(parents=True)
    Image.new("RGB", (20, 10), (255, 0, 0)).save(grid)
    render_report(metrics_frame(), [grid], tmp_path / "r.html", tmp_path / "r.md", title="T")
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64") == 3  # two figures + one grid
    assert "sub-01/ridge/tiny" in html
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# T") and "R@1 image" in md and "0.250" in md
    assert "## Unavailable metrics" in md and "no alexnet weights" in md


def test_noise_sensitivity_table_and_section(tmp_path):
    from fmridecode.report.html import noise_summary

    rows = []
    for s in ("01", "02"):
        for amp, pix in ((0.0, 0.4), (8.0, 0.3), (256.0, 0.1)):
            for gen, shift in (("lowlevel", 0.0), ("tiny_two_stage", 0.05)):
                base = {"dataset": "d", "subject": s, "mapper": "ridge", "generator": gen}
                rows.append(
                    {**base, "metric": "pixcorr", "value": pix + shift, "noise_amplitude": amp}
                )
    noise = pd.DataFrame(rows)
    table = noise_summary(noise).set_index(["generator", "noise_amplitude"])
    assert table.loc[("tiny_two_stage", 8.0), "PixCorr"] == pytest.approx(0.35)
    assert table.loc[("lowlevel", 256.0), "PixCorr"] == pytest.approx(0.1)
    render_report(
        metrics_frame(), [], tmp_path / "r.html", tmp_path / "r.md", title="T", noise=noise
    )
    md = (tmp_path / "r.md").read_text()
    assert "Noise sensitivity" in md and "0.350" in md
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64") == 3  # two metric figures + the noise figure


def _decoding(subject: str, mapper: str, r1: float, **extra) -> list[dict]:
    base = {"dataset": "d", "subject": subject, "mapper": mapper, "status": "ok", **extra}
    return [
        {**base, "metric": "recall_at_k", "target": "image", "k": 1, "direction": "forward",
         "pool": "all", "value": r1, "chance": 0.01},
        {**base, "metric": "recall_at_k", "target": "text", "k": 1, "direction": "forward",
         "pool": "all", "value": r1 / 2, "chance": 0.01},
        {**base, "metric": "two_way_identification", "target": "image", "feature": "embedding",
         "value": 0.9, "chance": 0.5},
    ]  # fmt: skip


def test_mapper_table_ranks_mappers_and_keeps_ablation_rows_apart():
    from fmridecode.report.html import for_mapper, mapper_table, supervision_table

    rows = []
    for s, shift in (("01", 0.0), ("02", 0.1)):
        rows += _decoding(s, "ridge", 0.3 + shift) + _decoding(s, "gru", 0.5 + shift)
        for sup, r1 in (("V", 0.2), ("T", 0.1), ("VT", 0.4)):
            rows += _decoding(s, "brainclip_linear", r1 + shift, supervision=sup)
    rows += [{"dataset": "d", "subject": "01", "mapper": "none", "metric": "glm_recovery_r",
              "glm_type": "B", "value": 0.6, "status": "ok"}]  # fmt: skip
    m = pd.DataFrame(rows)
    table = mapper_table(m)
    # ablation variants are not mappers of the run; ranked by R@1 image, chance row last
    assert list(table["mapper"]) == ["gru", "ridge", "chance"]
    assert list(table["rank"]) == ["1", "2", ""]
    assert table.loc[0, "R@1 image"] == pytest.approx(0.55)
    assert table.loc[2, "R@1 image"] == pytest.approx(0.01)
    ablation = supervision_table(m)
    assert list(ablation["supervision"]) == ["V", "T", "VT"]
    assert list(ablation["R@1 image"].round(3)) == [0.25, 0.15, 0.45]
    # the headline of one mapper keeps the mapper-free rows (GLM) and drops the others
    head = for_mapper(m, "ridge")
    assert set(head["mapper"]) == {"ridge", "none"}
