"""The run's report: a headline table, figures and reconstruction grids in one HTML file.

Self-contained (images embedded as base64) so it can be mailed or attached to a paper's
supplement; a markdown summary with the same headline table sits beside it.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fmridecode.io import atomic_path
from fmridecode.metrics.table import METRICS
from fmridecode.report.figures import (
    mapper_figure,
    noise_figure,
    overview_figure,
    recall_figure,
)


def main_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of the run's own mappers: without the ablation's retrained variants (rows
    with a ``supervision``), which have tables of their own."""
    if "supervision" not in metrics:
        return metrics
    return metrics[metrics["supervision"].isna()]


def for_mapper(metrics: pd.DataFrame, mapper: str | None) -> pd.DataFrame:
    """The rows of one mapper plus those of no mapper (GLM, noise ceiling, fMRI / CLIP
    category decoding); every row when ``mapper`` is None."""
    metrics = main_rows(metrics)
    if mapper is None:
        return metrics
    return metrics[metrics["mapper"].isin([mapper, "none"])]


def supervision_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """BrainCLIP's supervision ablation: one row per mapper and supervision (V, T, VT), the
    mapper-ranking columns, mean over subjects."""
    if "supervision" not in metrics or metrics["supervision"].isna().all():
        return pd.DataFrame()
    rows = metrics[metrics["supervision"].notna()]
    out = []
    for (mapper, sup), g in rows.groupby(["mapper", "supervision"]):
        table = mapper_table(g.drop(columns="supervision"))
        row = table[table["mapper"] == mapper].drop(columns="rank").iloc[0].to_dict()
        out.append({"mapper": mapper, "supervision": sup} | {
            k: v for k, v in row.items() if k != "mapper"})  # fmt: skip
    order = {"V": 0, "T": 1, "VT": 2}
    df = pd.DataFrame(out)
    df["_order"] = df["supervision"].map(order)
    return df.sort_values(["mapper", "_order"]).drop(columns="_order").reset_index(drop=True)


#: the mapper ranking's columns: label -> (metric, target, extra conditions)
MAPPER_COLUMNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "R@1 image": ("recall_at_k", "image", {"k": 1, "direction": "forward", "pool": "all"}),
    "R@1 text": ("recall_at_k", "text", {"k": 1, "direction": "forward", "pool": "all"}),
    "mean recall image": ("mean_recall", "image", {"direction": "forward", "pool": "all"}),
    "mean recall text": ("mean_recall", "text", {"direction": "forward", "pool": "all"}),
    "R@1 image bwd": ("recall_at_k", "image", {"k": 1, "direction": "backward", "pool": "all"}),
    "2-way image": ("two_way_identification", "image", {"feature": "embedding"}),
    "zero-shot top-1": ("zero_shot_top1", "image", {}),
    "cosine image": ("prediction_cosine", "image", {}),
    "R2 image": ("prediction_r2", "image", {}),
}


def mapper_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every mapper's decoding metrics, mean over subjects, ranked by fMRI->image R@1 (then
    text R@1); chance levels in a last row."""
    rows = main_rows(metrics)
    rows = rows[rows["mapper"].notna() & ~rows["mapper"].isin(["none", "truth"])]
    if "generator" in rows:
        rows = rows[rows["generator"].isna()]
    out, chance = [], {"mapper": "chance"}
    for mapper, g in rows.groupby("mapper"):
        row: dict[str, Any] = {"mapper": mapper}
        for label, (metric, target, cond) in MAPPER_COLUMNS.items():
            sel = g[(g["metric"] == metric) & (g["target"] == target)]
            for k, v in cond.items():
                sel = sel[sel[k] == v] if k in sel else sel.iloc[0:0]
            if len(sel) and sel["value"].notna().any():
                row[label] = sel["value"].mean()
                if "chance" in sel and sel["chance"].notna().any():
                    chance[label] = sel["chance"].mean()
        out.append(row)
    if not out:
        return pd.DataFrame()
    table = pd.DataFrame(out)
    keys = [c for c in ("R@1 image", "R@1 text") if c in table]
    table = table.sort_values(keys, ascending=False) if keys else table
    table.insert(0, "rank", range(1, len(table) + 1))
    out = pd.concat([table, pd.DataFrame([chance])], ignore_index=True)
    out["rank"] = [str(int(r)) if pd.notna(r) else "" for r in out["rank"]]  # chance: none
    return out


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: retrieval, 2-way identification of the embeddings, GLM figures
    (give it ``for_mapper(metrics, m)``: decoding rows of several mappers would be averaged)."""

    def pick(**cond: Any) -> pd.DataFrame:
        rows = metrics
        for k, v in cond.items():
            rows = rows[rows[k].isna()] if v is None else rows[rows[k] == v]
        return rows

    out = []
    for subject in sorted(metrics["subject"].dropna().unique()):
        row: dict[str, Any] = {"subject": subject}
        for target in ("image", "text"):
            r1 = pick(
                subject=subject, metric="recall_at_k", target=target, k=1, direction="forward"
            )
            if "pool" in r1:  # the whole test set, not the random-pool rows
                r1 = r1[r1["pool"] == "all"]
            if len(r1):
                row[f"R@1 {target}"] = r1["value"].mean()
                row[f"R@1 {target} chance"] = r1["chance"].mean()
            tw = pick(
                subject=subject, metric="two_way_identification", target=target, generator=None
            )
            if len(tw):
                row[f"2-way {target} emb."] = tw["value"].mean()
            zs = pick(subject=subject, metric="zero_shot_top1", target=target)
            if len(zs) and zs["value"].notna().any():
                row[f"zero-shot top-1 {target}"] = zs["value"].mean()
        if "category" in metrics:
            auc = pick(subject=subject, metric="category_auc", category="mean")
            for feature, rows in auc.groupby("feature"):
                row[f"category AUC ({feature})"] = rows["value"].mean()
        rec = pick(subject=subject, metric="glm_recovery_r")
        for glm_type, rows in rec.groupby(rec.get("glm_type", pd.Series(index=rec.index))):
            row[f"GLM recovery r ({glm_type})"] = rows["value"].mean()
        ceiling = pick(subject=subject, metric="noise_ceiling")
        for (feature, roi), rows in ceiling.groupby(
            [ceiling.get("feature", pd.Series("", index=ceiling.index)).fillna(""),
             ceiling.get("roi", pd.Series("", index=ceiling.index)).fillna("")]
        ):  # fmt: skip
            label = ", ".join(x for x in (roi, "true" if feature == "simulated" else "") if x)
            row[f"noise ceiling % ({label})" if label else "noise ceiling %"] = rows["value"].mean()
        out.append(row)
    return pd.DataFrame(out)


#: (metric, feature) -> column of the reconstruction table, in MindEye's order
RECON_COLUMNS = {
    ("pixcorr", None): "PixCorr",
    ("ssim", None): "SSIM",
    ("two_way_identification", "alexnet2"): "AlexNet(2)",
    ("two_way_identification", "alexnet5"): "AlexNet(5)",
    ("two_way_identification", "inception"): "Inception",
    ("two_way_identification", "clip"): "CLIP 2-way",
    ("effnet_distance", "effnet"): "EffNet-B dist.",
    ("swav_distance", "swav"): "SwAV dist.",
}


def _columns(rows: pd.DataFrame) -> pd.Series:
    """The reconstruction-table column of each row (None: not in the table)."""
    feature = rows["feature"] if "feature" in rows else pd.Series(None, index=rows.index)
    keys = zip(rows["metric"], [None if pd.isna(f) else f for f in feature], strict=True)
    return pd.Series([RECON_COLUMNS.get(k) for k in keys], index=rows.index, dtype=object)


def _recon_pivot(rows: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Rows -> one column per reconstruction metric (mean), columns never measured dropped."""
    rows = rows.assign(column=_columns(rows)).dropna(subset=["column"])
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index=index, columns="column", values="value", aggfunc="mean")
    table = table[[c for c in RECON_COLUMNS.values() if c in table.columns]]
    return table.reset_index().rename_axis(columns=None)


def recon_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (subject, mapper, generator) with the reconstruction metrics."""
    if "generator" not in metrics:
        return pd.DataFrame()
    return _recon_pivot(metrics[metrics["generator"].notna()], ["subject", "mapper", "generator"])


def noise_summary(noise: pd.DataFrame) -> pd.DataFrame:
    """The noise-sensitivity table: one row per (generator, noise amplitude), metrics as columns,
    mean over subjects and mappers (the layout of the two-stage paper's table)."""
    return _recon_pivot(noise, ["generator", "noise_amplitude"])


def unavailable(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics that could not be computed, once each, with the reason."""
    if "status" not in metrics:
        return pd.DataFrame(columns=["metric", "feature", "status"])
    rows = metrics[metrics["status"].fillna("ok") != "ok"]
    cols = [c for c in ("metric", "feature", "category", "status") if c in rows]
    return rows[cols].drop_duplicates().reset_index(drop=True)


def _img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_report(
    metrics: pd.DataFrame,
    grids: Sequence[str | os.PathLike],
    out_html: str | os.PathLike,
    out_md: str | os.PathLike,
    *,
    title: str,
    notes: Mapping[str, Any] | None = None,
    noise: pd.DataFrame | None = None,
    headline_mapper: str | None = None,
    curves: Sequence[str | os.PathLike] = (),
    analyses: Sequence[str | os.PathLike] = (),
    retrieval: Sequence[str | os.PathLike] = (),
) -> pd.DataFrame:
    """Write the HTML report and the markdown summary; return the headline table.

    ``noise``: the noise-sensitivity table (``noise_amplitude`` column), shown when given.
    ``headline_mapper``: the mapper of the headline table and figures (the one the
    generators use); every mapper is compared in the mapper ranking. ``curves``: the
    trainable mappers' training-curve figures; ``analyses``: the analyses' figures (encoding
    direction, microstimulation), each shown under its folder name; ``retrieval``: the
    retrieval-example figures.
    """
    head = headline_table(for_mapper(metrics, headline_mapper))
    ranking = mapper_table(metrics)
    ablation = supervision_table(metrics)
    recon = recon_table(metrics)
    md = [f"# {title}", "", head.to_markdown(index=False, floatfmt=".3f"), ""]
    if len(ranking) > 2:  # more than one mapper (and the chance row)
        md += ["## Mappers ranked", "", ranking.to_markdown(index=False, floatfmt=".3f"), ""]
    if not ablation.empty:
        md += ["## Supervision ablation (BrainCLIP)", ""]
        md += [ablation.to_markdown(index=False, floatfmt=".3f"), ""]
    missing = unavailable(metrics)
    if not recon.empty:
        md += ["## Reconstructions", "", recon.to_markdown(index=False, floatfmt=".3f"), ""]
    if not missing.empty:
        md += ["## Unavailable metrics", "", missing.to_markdown(index=False), ""]
    noise_parts: list[str] = []
    if noise is not None and not noise.empty:
        table = noise_summary(noise)
        md += ["## Noise sensitivity of two-stage reconstruction", ""]
        md += [table.to_markdown(index=False, floatfmt=".3f"), ""]
        noise_parts = [
            "<h2>Noise sensitivity of two-stage reconstruction</h2>",
            "<p>Gaussian noise (SD on the 0-255 scale) added to the first guess before the "
            "second stage; mean over subjects.</p>",
            table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
            _img_tag(noise_figure(noise), "noise sensitivity"),
        ]
    if notes:
        md += ["## Run notes", ""] + [f"- {k}: {v}" for k, v in notes.items()] + [""]
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(md))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}img{max-width:100%}h2{margin-top:1.6em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Headline metrics</h2>",
        *(
            [f"<p>Decoding columns: mapper <code>{html.escape(headline_mapper)}</code>.</p>"]
            if headline_mapper
            else []
        ),  # fmt: skip
        head.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
        *(
            [
                "<h2>Mappers ranked</h2>",
                "<p>Test-set decoding per mapper, mean over subjects, ranked by fMRI&rarr;image "
                "Recall@1 (whole test set, forward); the last row gives chance.</p>",
                ranking.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
                _img_tag(mapper_figure(metrics), "decoding per mapper"),
            ]
            if len(ranking) > 2
            else []
        ),
        *(
            [
                "<h2>Supervision ablation (BrainCLIP)</h2>",
                "<p>The same mapper trained with the image (V), caption (T) or both (VT) "
                "InfoNCE terms; test-set decoding, mean over subjects.</p>",
                ablation.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
            ]
            if not ablation.empty
            else []
        ),
        "<h2>Reconstruction metrics</h2>",
        "<p>2-way identification against all other test images (chance 0.5); distances: "
        "mean correlation distance, lower is better.</p>",
        recon.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
        *(
            [
                "<h2>Unavailable metrics</h2>",
                missing.to_html(index=False, na_rep=""),
            ]
            if not missing.empty
            else []
        ),
        *noise_parts,
        "<h2>Figures</h2>",
        _img_tag(overview_figure(for_mapper(metrics, headline_mapper)), "headline metrics"),
        _img_tag(recall_figure(metrics), "retrieval recall at k"),
    ]
    if retrieval:
        parts += [
            "<h2>Retrieval examples</h2>",
            "<p>fMRI of test images (left: the image seen) and the five test images whose CLIP "
            "embeddings are closest to the decoded one; the seen image is framed green when "
            "retrieved.</p>",
        ]
        parts += [_img_tag(Path(r).read_bytes(), Path(r).stem) for r in retrieval]
    if curves:
        parts += ["<h2>Training curves (CLIP, mappers)</h2>"]
        parts += [_img_tag(Path(c).read_bytes(), str(c)) for c in curves]
    if analyses:
        parts += [
            "<h2>Analyses</h2>",
            "<p>Mind Reader's encoding direction (per-voxel test r of a ridge from CLIP image "
            "embeddings to voxels, against the noise ceiling) and microstimulation (ROI "
            "voxels boosted or silenced, the decoded embedding's shift toward each category, "
            "and the images generated from it).</p>",
        ]
        for a in analyses:
            label = Path(a).relative_to(Path(a).parents[2]).as_posix()
            parts += [f"<h3>{html.escape(label)}</h3>", _img_tag(Path(a).read_bytes(), label)]
    parts += ["<h2>Reconstructions</h2>"]
    for g in grids:
        parts += [
            f"<h3>{html.escape(Path(g).parent.relative_to(Path(g).parents[3]).as_posix())}</h3>",
            _img_tag(Path(g).read_bytes(), str(g)),
        ]
    if notes:
        parts += ["<h2>Run notes</h2><ul>"]
        parts += [
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
            for k, v in notes.items()
        ]
        parts += ["</ul>"]
    parts += ["<h2>Metric definitions</h2><dl>"]
    for name in sorted(set(metrics["metric"])):
        parts.append(f"<dt><code>{name}</code></dt><dd>{html.escape(METRICS[name])}</dd>")
    parts += [
        "</dl>",
        "<h2>All metric rows</h2>",
        metrics.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""),
        "</body></html>",
    ]
    with atomic_path(out_html) as tmp:
        tmp.write_text("\n".join(parts))
    return head
