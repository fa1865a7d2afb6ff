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
from fmridecode.report.figures import noise_figure, overview_figure, recall_figure


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: retrieval, 2-way identification of the embeddings, GLM figures."""

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
) -> pd.DataFrame:
    """Write the HTML report and the markdown summary; return the headline table.

    ``noise``: the noise-sensitivity table (``noise_amplitude`` column), shown when given.
    """
    head = headline_table(metrics)
    recon = recon_table(metrics)
    md = [f"# {title}", "", head.to_markdown(index=False, floatfmt=".3f"), ""]
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
        head.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"),
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
        _img_tag(overview_figure(metrics), "headline metrics"),
        _img_tag(recall_figure(metrics), "retrieval recall at k"),
        "<h2>Reconstructions</h2>",
    ]
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
