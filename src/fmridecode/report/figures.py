"""Figures of the metric table (matplotlib, Agg backend): what people would rather look at."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def recall_figure(metrics: pd.DataFrame) -> bytes:
    """PNG bytes: forward Recall@k (whole test set) per target and mapper (mean over
    subjects), chance drawn."""
    df = metrics[(metrics["metric"] == "recall_at_k") & (metrics["direction"] == "forward")]
    if "pool" in df:  # the whole test set (random-pool rows are in the table)
        df = df[df["pool"] == "all"]
    if "supervision" in df:
        df = df[df["supervision"].isna()]
    targets = sorted(df["target"].dropna().unique())
    fig, axes = plt.subplots(
        1, max(len(targets), 1), figsize=(4.5 * max(len(targets), 1), 3.4), squeeze=False
    )
    for ax, target in zip(axes[0], targets, strict=False):
        sub = df[df["target"] == target]
        for mapper, g in sub.groupby("mapper"):
            g = g.groupby("k")["value"].mean().sort_index()
            ax.plot(g.index, g.values, marker="o", label=mapper)
        chance = sub.groupby("k")["chance"].first().sort_index()
        ax.plot(chance.index, chance.values, "k--", label="chance")
        ax.set(title=f"fMRI -> {target} retrieval", xlabel="k", ylabel="Recall@k", ylim=(0, 1.02))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def overview_figure(metrics: pd.DataFrame) -> bytes:
    """PNG bytes: one bar per headline metric and subject (2-way, PixCorr, SSIM, GLM recovery)."""
    wanted = [
        ("two_way_identification", "image", None, "2-way (pred. embedding)"),
        ("two_way_identification", "image", "recon", "2-way (recon, CLIP)"),
        ("pixcorr", None, None, "PixCorr"),
        ("ssim", None, None, "SSIM"),
        ("glm_recovery_r", None, None, "GLM recovery r"),
    ]
    metrics = metrics[metrics["mapper"] != "truth"]  # the ceiling is in the recon table
    labels, values, subjects = [], [], []
    for metric, target, kind, label in wanted:
        rows = metrics[metrics["metric"] == metric]
        if kind == "recon" and "feature" in rows:  # the networks without weights are empty
            rows = rows[rows["feature"] == "clip"]
        if target is not None:
            rows = rows[rows["target"] == target]
        if "generator" in rows.columns:
            has_gen = rows["generator"].notna()
            rows = (
                rows[has_gen]
                if kind == "recon"
                else rows[~has_gen]
                if metric.startswith("two_way")
                else rows
            )
        for _, r in rows.iterrows():
            gen, glm_type = r.get("generator"), r.get("glm_type")
            if not pd.isna(glm_type):  # GLM types apart
                labels.append(f"{label} ({glm_type})")
            else:
                labels.append(label if pd.isna(gen) else f"{label}\n{gen}")  # generators apart
            values.append(r["value"])
            subjects.append(r["subject"])
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if values:
        frame = pd.DataFrame({"label": labels, "value": values, "subject": subjects})
        piv = frame.pivot_table(index="label", columns="subject", values="value", sort=False)
        piv.plot.bar(ax=ax, rot=0, fontsize=7)
        ax.axhline(0.5, color="gray", ls=":", lw=1)
    ax.set(ylabel="value", title="Headline metrics per subject (dotted: 2-way chance)")
    fig.tight_layout()
    return _png(fig)


NOISE_METRICS = {"pixcorr": "PixCorr", "ssim": "SSIM", "two_way_identification": "2-way (recon)"}


def noise_figure(noise: pd.DataFrame) -> bytes:
    """PNG bytes: each reconstruction metric against the first guess's noise amplitude.

    One line per generator (the noisy first guess ``lowlevel`` and the second stage run from
    it), mean over subjects and mappers; amplitude 0 is the plain first guess.
    """
    fig, axes = plt.subplots(1, len(NOISE_METRICS), figsize=(4 * len(NOISE_METRICS), 3.2))
    for ax, (metric, label) in zip(axes, NOISE_METRICS.items(), strict=True):
        rows = noise[noise["metric"] == metric]
        mean = rows.groupby(["generator", "noise_amplitude"])["value"].mean()
        for generator, series in mean.groupby(level=0):
            series = series.droplevel(0).sort_index()
            ax.plot(series.index, series.values, marker="o", label=generator)
        ax.set_xscale("symlog", linthresh=8)
        ax.set(title=label, xlabel="noise SD on the first guess (0-255)")
        if metric == "two_way_identification":
            ax.axhline(0.5, color="gray", ls=":", lw=1)
        if len(mean):
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def mapper_figure(metrics: pd.DataFrame) -> bytes:
    """PNG bytes: per mapper, bars of fMRI->image and fMRI->text Recall@1 and 2-way
    identification of the image embedding (mean over subjects, each subject a dot), chance
    drawn as a line per metric."""
    panels = [
        ("recall_at_k", "image", "R@1 image"),
        ("recall_at_k", "text", "R@1 text"),
        ("two_way_identification", "image", "2-way image"),
    ]
    df = metrics[metrics["mapper"].notna() & ~metrics["mapper"].isin(["none", "truth"])]
    if "generator" in df:
        df = df[df["generator"].isna()]
    if "supervision" in df:  # the ablation's retrained variants are not the run's mappers
        df = df[df["supervision"].isna()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (metric, target, label) in zip(axes[0], panels, strict=True):
        sel = df[(df["metric"] == metric) & (df["target"] == target)]
        if metric == "recall_at_k":
            sel = sel[(sel["k"] == 1) & (sel["direction"] == "forward") & (sel["pool"] == "all")]
        else:
            sel = sel[sel["feature"] == "embedding"]
        mean = sel.groupby("mapper")["value"].mean().sort_values(ascending=False)
        ax.bar(range(len(mean)), mean.values, color="#4c72b0")
        for i, mapper in enumerate(mean.index):
            vals = sel[sel["mapper"] == mapper]["value"]
            ax.plot([i] * len(vals), vals, "k.", ms=4)
        if sel["chance"].notna().any():
            ax.axhline(sel["chance"].mean(), color="gray", ls="--", lw=1, label="chance")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(mean)), mean.index, rotation=40, ha="right", fontsize=8)
        ax.set(title=label, ylim=(0, 1.02))
    fig.tight_layout()
    return _png(fig)


def retrieval_examples_figure(
    seen: np.ndarray, retrieved: np.ndarray, hits: np.ndarray, title: str
) -> bytes:
    """PNG bytes: one row per fMRI query, the seen image then its top-k retrieved test images
    (best first); a retrieved image that is the seen one is framed green."""
    n, k = retrieved.shape[:2]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.3 * (k + 1), 1.35 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(seen[i])
        axes[i, 0].set_ylabel(f"query {i + 1}", fontsize=7)
        for j in range(k):
            ax = axes[i, j + 1]
            ax.imshow(retrieved[i, j])
            if hits[i, j]:
                for side in ax.spines.values():
                    side.set(color="#2ca02c", linewidth=3)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("seen", fontsize=8)
    for j in range(k):
        axes[0, j + 1].set_title(f"top {j + 1}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def training_curve_figure(curve: pd.DataFrame, title: str) -> bytes:
    """PNG bytes: train and validation loss per epoch, one panel per network and phase, the
    kept (best validation) epoch marked (``val_loss`` may be NaN throughout: train only)."""
    panels = list(curve.groupby(["model", "phase"], sort=False))
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(3.4 * max(len(panels), 1), 3.0), squeeze=False
    )
    for ax, ((model, phase), g) in zip(axes[0], panels, strict=False):
        ax.plot(g["epoch"], g["train_loss"], label="train")
        if g["val_loss"].notna().any():  # a model trained without a validation split has none
            ax.plot(g["epoch"], g["val_loss"], label="validation")
            best = g.loc[g["val_loss"].idxmin()]
            ax.axvline(best["epoch"], color="gray", ls=":", lw=1)
        ax.set(title=f"{model}: {phase}", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
