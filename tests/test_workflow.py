"""Workflow tests: Snakemake runs the whole DAG on the tiny synthetic dataset in a temp dir.

The expensive run happens once per session (``tiny_run``); the checks below read its outputs,
compare them with the simulator's ground truth, and dry-run config changes against it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO, TINY, scheduled_jobs, snakemake

from fmridecode.datasets.synthetic import design_summary
from fmridecode.embeddings.cache import load_pooled

pytestmark = pytest.mark.workflow
OUT = "results/synthetic-tiny"
#: the subjects the tiny config analyses (one; the invalidation test adds the second)
SUBJECTS = tuple(f"{n:02d}" for n in yaml.safe_load(TINY.read_text())["simulate"]["subjects"])
N = len(SUBJECTS)

UPSTREAM = {
    "simulate_stimuli",
    "simulate_subject",
    "glm",
    "roi",
    "train_clip",
    "embed",
    "train_generator",
}


def test_dry_run_lists_every_stage(tmp_path):
    proc = snakemake(tmp_path, "--dry-run", configfiles=[TINY])
    jobs = scheduled_jobs(proc)
    downstream = {"fit_ridge", "fit", "fit_fusion", "first_guess", "generate", "metrics_glm"}
    downstream |= {"metrics_decoding"}
    downstream |= {"metrics_recon", "true_targets", "noise_sensitivity", "noise_sensitivity_table"}
    for rule in UPSTREAM | downstream | {"metrics_all", "report", "all"}:
        assert jobs.get(rule, 0) >= 1, f"{rule} not scheduled: {jobs}"
    assert jobs["simulate_subject"] == N  # the analysed subjects only


def test_lint_is_clean(tmp_path):
    # snakemake's linter checks the house rules: logs, conda envs, no hard-coded path prefixes
    proc = snakemake(tmp_path, "--lint", configfiles=[TINY], check=False)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"glm": {"wantlibrary": "yes"}}, "glm.wantlibrary: 'yes' is not of type 'boolean'"),
        ({"glm": {"use_type": "C", "types": ["A", "B"]}}, "glm.use_type: 'C' is not one of"),
        (
            {"fit": {"ridge": {"cv_folds": 1}}},
            "fit.ridge.cv_folds: 1 is less than the minimum of 2",
        ),
        ({"simulate": {"colour": 3}}, "simulate: Additional properties are not allowed ('colour'"),
        ({"fit": {"roi": "V4"}}, "fit.roi: 'V4' is not one of roi.sets"),
    ],
)
def test_bad_config_names_the_key(tmp_path, override, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    proc = snakemake(tmp_path, "--dry-run", configfiles=[TINY, bad], check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr


def test_metrics_table_complete_and_finite(tiny_run):
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    for col in ("dataset", "subject", "mapper", "metric", "value", "status"):
        assert col in m.columns
    assert set(m["subject"]) == set(SUBJECTS)
    ok = m["status"] == "ok"
    assert all(math.isfinite(v) for v in m.loc[ok, "value"])  # no silent NaN
    expected = {
        "recall_at_k",
        "two_way_identification",
        "two_way_random",
        "n_way",
        "pixcorr",
        "ssim",
        "effnet_distance",
        "swav_distance",
        "zero_shot_top1",
        "zero_shot_top5",
        "category_auc",
        "glm_recovery_r",
        "glm_r2",
        "noise_ceiling",
    }
    assert expected <= set(m["metric"])
    r2 = m[m["metric"] == "glm_r2"].set_index(["subject", "roi", "glm_type"])["value"]
    assert len(r2) == N * 2 * 4 and r2.between(0, 100).all()  # 2 ROI sets x types A-D
    for s in SUBJECTS:  # single-trial betas explain far more than the on-off model (seen 78 vs 4)
        assert r2[(s, "nsdgeneral", "B")] > r2[(s, "nsdgeneral", "A")] + 20, r2
    zero_shot = m[m["metric"].str.startswith("zero_shot")]  # test images show held-out ones
    assert (zero_shot["status"] == "ok").all() and (zero_shot["n"] > 0).all(), zero_shot
    assert set(zero_shot["target"]) == {"image", "text"}
    assert (zero_shot["chance"] > 0).all() and zero_shot["value"].between(0, 1).all()
    # only what needs missing weights (none here) or more test items (24 < 50) is unavailable,
    # as an empty value with the reason, never a number from random weights
    missing = m[~ok]
    assert missing["value"].isna().all()
    networks = missing["feature"].isin(["alexnet2", "alexnet5", "inception", "effnet", "swav"])
    assert missing.loc[networks, "status"].str.contains("no .* weights").all()
    n_way = missing["metric"] == "n_way"  # the pools of 16 fit; 50-way does not
    assert (missing.loc[n_way, "ways"] == 50).all()
    # categories held out of training, or absent from the 24 test images, have no AUC
    auc = missing["metric"] == "category_auc"
    assert missing.loc[auc, "status"].str.contains("not in training|test images show").all()
    assert (networks | n_way | auc).all(), missing
    recon = m[m["generator"].notna()]
    for feature in ("alexnet2", "alexnet5", "inception", "effnet", "swav"):  # every generator
        rows = recon[recon["feature"] == feature]
        assert set(rows["generator"]) == set(recon["generator"]), feature
    n_way = m[(m["metric"] == "n_way") & ok]
    assert set(n_way["ways"]) == {2, 5, 10} and (n_way["chance"] == 1 / n_way["ways"]).all()
    assert (n_way["n"] == 24).all()  # n counts the test items on every row


def test_category_decoding_auc(tiny_run):
    """Mind Reader 3.4 on the simulator: voxels carry category tuning, CLIP embeddings of the
    images carry the categories, and the decoded embeddings keep part of them."""
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    auc = m[(m["metric"] == "category_auc") & (m["category"] == "mean")]
    auc = auc[auc["mapper"].isin(["none", "ridge"])]  # mapped_clip: one row per mapper
    auc = auc.set_index(["subject", "feature"])["value"]
    # 24 test images: mean AUC over ~17 scorable categories; seen 0.64-0.73 (chance 0.5)
    for s in SUBJECTS:
        for feature in ("fmri", "clip", "mapped_clip"):
            assert auc[(s, feature)] > 0.58, auc
    per = m[(m["metric"] == "category_auc") & (m["category"] != "mean")]
    held_out = per[
        per["category"].isin(["red star", "green ring", "blue triangle", "yellow cross"])
    ]
    assert (held_out["status"] == "unavailable: not in training images").all()
    assert per.loc[per["status"] == "ok", "value"].between(0, 1).all()


def test_noise_ceiling_estimated_from_betas_tracks_the_truth(tiny_run):
    """NSD's ncsnr noise ceiling: on the simulator's true single-trial amplitudes it gives back
    the simulator's noise ceilings (the formula); on the GLM betas (one row per ROI set, and a
    map) it is lower, the GLM's measurement noise added, and still ranks voxels alike."""
    import nibabel as nib

    from fmridecode.metrics.noise_ceiling import noise_ceiling, signal_noise_sd
    from fmridecode.roi import zscore_by_session

    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    est = m[(m["metric"] == "noise_ceiling") & (m["feature"] == "ncsnr")]
    assert set(est["roi"]) == {"nsdgeneral", "early"} and set(est["subject"]) == set(SUBJECTS)
    assert est["value"].between(0, 100).all() and (est["status"] == "ok").all()
    for s in SUBJECTS:
        truth = np.load(tiny_run / OUT / f"truth/sub-{s}.npz")
        resp, true_nc = truth["responsive"], truth["noise_ceiling"]
        amps = zscore_by_session(truth["amplitudes"], truth["trial_session"])
        from_amps = noise_ceiling(*signal_noise_sd(amps, truth["trial_stim_id"]), 3)
        # seen: r 0.95, medians 74.5 vs 73.8
        assert np.corrcoef(from_amps[resp], true_nc[resp])[0, 1] > 0.85
        assert abs(np.median(from_amps[resp]) - np.median(true_nc[resp])) < 6
        nc_map = nib.load(tiny_run / OUT / f"glm/sub-{s}/noise_ceiling.nii.gz").get_fdata()
        png = tiny_run / OUT / f"glm/sub-{s}/noise_ceiling.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the map drawn for the report
        values = nc_map[tuple(truth["voxel_ijk"].T)]
        inside = resp & (values > 0)  # responsive voxels of the map (the fit ROI)
        # seen: r 0.37-0.39, medians 36 vs 75 (betas carry the GLM's noise too)
        assert inside.sum() > 20 and np.median(values[inside]) < np.median(true_nc[inside])
        assert np.corrcoef(values[inside], true_nc[inside])[0, 1] > 0.2


def test_retrieval_far_above_chance(tiny_run):
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    m = m[m["mapper"] == "ridge"]  # every mapper's rows: test_every_mapper_is_trained_and_scored
    r1 = m[(m["metric"] == "recall_at_k") & (m["k"] == 1) & (m["direction"] == "forward")]
    pooled = r1[r1["pool"] == "16"]  # the tiny config's random pools of 16 of the 24 images
    assert len(pooled) == 2 * N and (pooled["value"] >= 4 * pooled["chance"]).all(), pooled
    r1 = r1[r1["pool"] == "all"]
    assert set(r1["target"]) == {"image", "text"}
    for _, row in r1[r1["target"] == "image"].iterrows():
        # the tiny test pool has ~24 images (chance ~0.04); 4x chance is far above it for
        # n ~ 24 (binomial p < 1e-3) while leaving room for the 20-second CLIP model
        assert row["value"] >= 4 * row["chance"], row.to_dict()
    two_way = m[(m["metric"] == "two_way_identification") & m["generator"].isna()]
    assert (two_way["value"] > 0.7).all(), two_way


def test_every_mapper_is_trained_and_scored(tiny_run):
    """The mapper zoo in one table: every configured mapper of every subject has the decoding
    rows; the networks wrote curves, weights and validation predictions; fusion's weights
    were chosen on the validation images, which no mapper trained on."""
    import torch

    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    mappers = {"ridge", "brainclip_linear", "brainclip_vae", "mindreader_cnn",
               "brain2word_ae", "gru", "fusion"}  # fmt: skip
    dec = m[m["generator"].isna() & m["mapper"].isin(mappers)]
    for metric in ("recall_at_k", "mean_recall", "prediction_r2", "prediction_cosine",
                   "two_way_identification", "zero_shot_top1"):  # fmt: skip
        rows = dec[dec["metric"] == metric]
        assert set(zip(rows["subject"], rows["mapper"], strict=True)) == {
            (s, mp) for s in SUBJECTS for mp in mappers
        }, metric
    ok = dec[dec["status"] == "ok"]
    assert ok["value"].notna().all()
    # every mapper decodes: its predictions sit closer to their own image's embedding than
    # to the other test images' (a few epochs on 90 images: seen margins 0.05-0.4)
    cos = ok[(ok["metric"] == "prediction_cosine") & (ok["target"] == "image")]
    assert (cos["value"] > cos["chance"]).all(), cos[["subject", "mapper", "value", "chance"]]
    two_way = ok[(ok["metric"] == "two_way_identification") & (ok["target"] == "image")]
    two_way = two_way.groupby("mapper")["value"].mean()
    # seen: ridge 0.91, fusion 0.90, brainclip_linear 0.83, brain2word_ae 0.78, the rest
    # 0.53-0.64 after a few epochs on 90 images (the unit tests train them to convergence)
    assert (two_way > 0.5).all() and two_way["ridge"] > 0.8, two_way
    fit = tiny_run / OUT / "fit/sub-01"
    val = pd.read_parquet(fit / "ridge/val_image.index.parquet")["stim_id"]
    test = pd.read_parquet(fit / "ridge/pred_image.index.parquet")["stim_id"]
    assert len(val) == 10 and set(val).isdisjoint(test)  # 10% of the 100 training images
    for mapper in mappers - {"ridge", "fusion"}:
        curve = pd.read_parquet(fit / mapper / "curve.parquet")
        assert {"phase", "epoch", "train_loss", "val_loss"} <= set(curve.columns)
        assert np.isfinite(curve[["train_loss", "val_loss"]].to_numpy()).all()
        assert (fit / mapper / "curve.png").read_bytes()[:4] == b"\x89PNG"
        saved = torch.load(fit / mapper / "model.pt", weights_only=False)
        assert saved["mapper"] == mapper and saved["states"]
        assert list(pd.read_parquet(fit / mapper / "val_image.index.parquet")["stim_id"]) == list(
            val
        )  # the same held-out images for every mapper
        assert not (fit / mapper / ".partial").exists()  # checkpoints removed at the end
    weights = pd.read_parquet(fit / "fusion/weights.parquet")
    for _, g in weights.groupby("target"):
        assert g["weight"].sum() == pytest.approx(1.0) and (g["weight"] >= 0).all()
    report = (tiny_run / OUT / "report/report.html").read_text()
    assert "Mappers ranked" in report and "Training curves (CLIP, mappers)" in report


def test_gru_first_guess_feeds_two_stage_generation(tiny_run, tmp_path):
    """generate.mappers with gru: its own low-level first stage (rule fit_lowres) is decoded
    into the first guess of two-stage generation; ridge's outputs are reused, not refitted."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["generate"] = {**cfg["generate"], "mappers": ["ridge", "gru"]}
    conf = tmp_path / "gru.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    target = f"{OUT}/generate/sub-01/gru/lowlevel/recons.npy"
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", target, configfiles=[conf]))
    assert jobs == {"fit_lowres": 1, "first_guess": 1}, jobs
    snakemake(tiny_run, target, configfiles=[conf])
    pred = np.load(tiny_run / OUT / "fit/sub-01/gru/pred_lowres.npy")
    ridge = np.load(tiny_run / OUT / "fit/sub-01/ridge/pred_lowres.npy")
    assert pred.shape == ridge.shape and np.isfinite(pred).all()
    recons = np.load(tiny_run / OUT / "generate/sub-01/gru/lowlevel/recons.npy")
    assert recons.dtype == np.uint8 and recons.std() > 1
    curve = pd.read_parquet(tiny_run / OUT / "fit/sub-01/gru/curve_lowres.parquet")
    assert set(curve["model"]) == {"lowres"}


def test_encoding_and_microstimulation_on_the_simulator(tiny_run):
    """Mind Reader's analyses on the tiny run: the encoding model predicts test voxels; boosting
    the warm-colour-selective ROI (the simulator's floc-warm) moves the decoded embedding
    toward the red / yellow categories more than toward the others (seen +0.46 / +0.65)."""
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    enc = m[(m["metric"] == "encoding_r") & (m["status"] == "ok")]
    assert {"early", "mid", "high"} <= set(enc["roi"]) and set(enc["subject"]) == set(SUBJECTS)
    assert (enc[enc["roi"] == "nsdgeneral"]["value"] > 0.05).all(), enc
    shift = m[(m["metric"] == "microstim_shift") & (m["roi"] == "floc-warm")]
    shift = shift[shift["manipulation"] == "boost"]
    warm = shift["category"].str.contains("red|yellow")
    for s, g in shift.groupby("subject"):
        gap = g.loc[warm, "value"].mean() - g.loc[~warm, "value"].mean()
        assert gap > 0.2, (s, gap)
    grid = tiny_run / OUT / "analyses/sub-01/microstim/grid.png"
    assert grid.read_bytes()[:4] == b"\x89PNG"
    assert "<h2>Analyses</h2>" in (tiny_run / OUT / "report/report.html").read_text()


def test_glm_recovers_true_amplitudes(tiny_run):
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    rec = m[m["metric"] == "glm_recovery_r"]
    assert sorted(rec["glm_type"]) == sorted(["B", "C", "D"] * N)  # one row per subject
    # Official GLMsingle reaches median r 0.52 (B) to 0.61 (D) on the shared parity dataset
    # (similar noise); every type must get close to it.
    assert (rec["value"] > 0.4).all(), rec


def test_glm_writes_maps_summary_and_figures(tiny_run):
    ses = tiny_run / OUT / "glm/sub-01/ses-01"
    summary = json.loads((ses / "summary.json").read_text())
    maps = nib.load(ses / "maps.nii.gz")
    assert maps.shape[3] == len(summary["maps"]) and "frac" in summary["maps"]
    frac = np.asarray(maps.dataobj)[..., summary["maps"].index("frac")]
    betas = nib.load(ses / "betas_type-D.nii.gz")
    inside = np.asarray(betas.dataobj).any(axis=3)
    assert np.all((frac[inside] >= 0.05) & (frac[inside] <= 1.0))
    assert 0 <= summary["pcnum"] <= 10 and len(summary["xvaltrend"]) == 11
    for name in ("R2_type-D.png", "hrf_index.png", "xvaltrend.png", "frac.png"):
        assert (ses / "figures" / name).stat().st_size > 1000, name


def test_outputs_are_consistent(tiny_run):
    out = tiny_run / OUT
    recons = np.load(out / "generate/sub-01/ridge/tiny/recons.npy")
    index = pd.read_parquet(out / "generate/sub-01/ridge/tiny/recons.index.parquet")
    images = pd.read_parquet(out / "stimuli/images.index.parquet")
    assert recons.dtype == np.uint8 and recons.shape[0] == len(index)
    assert set(index["stim_id"]) == set(images.loc[images["split"] == "test", "stim_id"])
    pngs = sorted(p.stem for p in (out / "generate/sub-01/ridge/tiny/png").glob("*.png"))
    assert pngs == sorted(index["stim_id"])
    html = (out / "report/report.html").read_text()
    assert "Headline metrics" in html and "data:image/png;base64" in html


def test_invalidation_none_without_a_change(tiny_run):
    """A second run of an unchanged workflow schedules nothing: no embedding, no fit."""
    proc = snakemake(tiny_run, "--dry-run", configfiles=[TINY])
    assert scheduled_jobs(proc) == {}


def test_invalidation_glm_option_reruns_the_glm_and_what_follows(tiny_run, tmp_path):
    """A GLM option reruns every session's GLM and everything fed by the betas, and neither
    the simulation nor the CLIP and diffusion models (they never see the betas)."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["glm"] = {"n_pcs": 3}
    changed = tmp_path / "glm.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    n_sessions = sum(len(design_summary("tiny")["sessions"][s]) for s in SUBJECTS)
    assert jobs.get("glm") == n_sessions and {"roi", "fit_ridge", "fit", "metrics_all"} <= set(jobs)
    untouched = {"simulate_stimuli", "simulate_subject", "train_clip", "embed", "embed_classes",
                 "screen_captions", "embed_views", "train_generator"}  # fmt: skip
    assert not untouched & set(jobs), jobs


def test_invalidation_ridge_change_reruns_only_downstream(tiny_run, tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["fit"]["ridge"] = {**base["fit"]["ridge"], "alphas": [10.0, 1000.0]}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    assert jobs.get("fit_ridge") == N
    assert not UPSTREAM & set(jobs), jobs
    assert {"generate", "metrics_decoding", "metrics_recon", "metrics_all"} <= set(jobs)
    assert "fit" not in jobs and jobs.get("fit_fusion") == N  # networks kept; fusion uses ridge


def test_invalidation_one_mapper_change_reruns_only_that_mapper(tiny_run, tmp_path):
    """A hyperparameter of one network (gru, not fused) reruns its fit and scores, nothing
    of the other mappers, and no generation (generators use ridge)."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["fit"]["gru"] = {**cfg["fit"]["gru"], "epochs": 4}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tiny_run, "--dry-run", configfiles=[changed])
    jobs = scheduled_jobs(proc)
    assert jobs.get("fit") == N and jobs.get("metrics_decoding") == N, jobs
    assert not {"fit_ridge", "fit_fusion", "generate", "metrics_recon"} & set(jobs), jobs
    assert "mapper=gru" in proc.stdout and "mapper=brainclip" not in proc.stdout


def test_invalidation_clip_model_change_reembeds_and_screening_change_does_not(tiny_run, tmp_path):
    """The CLIP model is part of the caches' key: another model re-embeds (and everything
    downstream) and leaves the GLM and ROI stages alone; a screening setting reruns the
    screening and what uses text targets, never the embedding itself."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["embed"]["model"] = "ViT-B-32"  # pretrained null: trained here, like the small model
    changed = tmp_path / "model.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    assert {"train_clip", "embed", "screen_captions", "fit_ridge", "embed_classes"} <= set(jobs)
    assert not {"simulate_stimuli", "simulate_subject", "glm", "roi"} & set(jobs), jobs
    cfg = yaml.safe_load(TINY.read_text())
    cfg["embed"]["screening"] = {"keep_ratio": 0.0}
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    assert jobs.get("screen_captions") == 1 and {"fit_ridge", "fit"} <= set(jobs), jobs
    # embed_classes reruns only for its quality file (the text zero-shot uses kept captions)
    assert not {"train_clip", "embed", "embed_views", "roi"} & set(jobs), jobs
    # the pooled caches' storage type re-embeds with the same model (no train_clip); the
    # token caches' type touches nothing here (the tiny DAG makes no token cache)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["embed"]["dtype"] = {"pooled": "float32", "tokens": "float32"}
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    assert {"embed", "embed_views", "screen_captions", "fit_ridge", "fit"} <= set(jobs), jobs
    assert not {"train_clip", "simulate_subject", "glm", "roi", "embed_tokens"} & set(jobs)
    cfg["embed"]["dtype"] = {"pooled": "float16", "tokens": "float32"}
    changed.write_text(yaml.safe_dump(cfg))
    assert not scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    cfg["embed"]["dtype"] = {"compute": "bfloat16", "pooled": "float16"}  # the arithmetic
    changed.write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(snakemake(tiny_run, "--dry-run", configfiles=[changed]))
    assert {"embed", "embed_views", "screen_captions", "fit_ridge"} <= set(jobs), jobs
    assert not {"train_clip", "glm", "roi"} & set(jobs), jobs


def test_caption_screening_keeps_specific_captions_on_the_simulator(tiny_run):
    """The simulator's captions come in three kinds of decreasing specificity: screening with
    the trained CLIP keeps nearly every detailed caption and drops the vague ones."""
    out = tiny_run / OUT / "embed"
    table = pd.read_parquet(out / "caption_screening.parquet")
    share = table.groupby("kind")["kept"].mean()
    assert share["detailed"] > 0.9 and share["vague"] < 0.1, share
    assert table.groupby("stim_id")["kept"].any().all()  # every image keeps a caption
    kept, index = load_pooled(out / "caption_kept.npy")
    assert len(kept) == table["kept"].sum()
    # the tiny config stores the pooled caches in float16 (embed.dtype.pooled), unit rows to
    # float16 rounding as written (load_pooled renormalises; the stored rows must be unit)
    for name in ("image", "caption", "caption_kept", "image_views"):
        stored = np.load(out / f"{name}.npy")
        assert stored.dtype == np.float16, name
        norms = np.linalg.norm(stored.astype(np.float32), axis=-1)
        assert np.abs(norms - 1).max() < 2e-3, (name, np.abs(norms - 1).max())
    clamped = pd.read_parquet(out / "clamped.parquet")
    assert set(clamped["modality"]) <= {"image", "caption"}
    assert (clamped["max_abs_over_scale"] > 6.0).all()  # embed.clamp: 6 x the typical RMS


def test_slurm_profile_sends_every_job_through_sbatch(tmp_path):
    """profiles/slurm on a real single-node SLURM (Debian's slurm-wlm, started by the test):
    the tiny config's path to one session's betas (simulation, GLM), every job submitted
    with sbatch, gives the local run's outputs. (Its own local run, not the shared tiny run's,
    so that it runs beside the tiny run on the other test worker.)"""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[test]'")
    from slurm_helpers import SlurmUnavailable, single_node_slurm

    target = f"{OUT}/glm/sub-01/ses-01/betas_type-C.nii.gz"
    work, local_run = tmp_path / "work", tmp_path / "local"
    work.mkdir()
    planned = scheduled_jobs(snakemake(work, "--dry-run", target, configfiles=[TINY]))
    n_jobs = sum(planned.values())
    assert n_jobs == 3 and "glm" in planned, planned
    try:
        slurm = single_node_slurm(tmp_path / "spool")
        slurm.__enter__()
    except SlurmUnavailable as e:
        pytest.skip(f"no SLURM on this machine: {e}")
    try:
        local_run.mkdir()
        snakemake(local_run, target, configfiles=[TINY])
        proc = snakemake(
            work, "--profile", str(REPO / "profiles" / "slurm"), target,
            "--slurm-status-command", "squeue",  # no slurmdbd here, so no sacct
            "--slurm-init-seconds-before-status-checks", "2", "--slurm-no-account",
            configfiles=[TINY], timeout=600,
        )  # fmt: skip
        jobs = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%j %T"], capture_output=True, text=True
        ).stdout.split("\n")
    finally:
        slurm.__exit__(None, None, None)
    log = proc.stdout + proc.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == n_jobs, log[-3000:]  # every job went through sbatch
    assert sum("COMPLETED" in j for j in jobs) == n_jobs, jobs
    ours = np.asanyarray(nib.load(work / target).dataobj)
    local = np.asanyarray(nib.load(local_run / target).dataobj)
    np.testing.assert_allclose(ours, local, rtol=1e-6, atol=1e-6)
    trials = f"{OUT}/glm/sub-01/ses-01/trials.parquet"
    assert pd.read_parquet(work / trials).equals(pd.read_parquet(local_run / trials))


def test_clip_checkpoint_loads_with_open_clip_and_pairs_held_out_captions(tiny_run):
    import json

    import open_clip

    from fmridecode.embeddings import register_small_model

    out = tiny_run / OUT
    register_small_model()  # the config name must be known to open_clip; weights come from file
    model, _, _ = open_clip.create_model_and_transforms(
        "fmridecode-small", pretrained=str(out / "models/clip/checkpoint.pt")
    )
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
    quality = json.loads((out / "embed/quality.json").read_text())
    # 24 held-out test images, each against its first detailed caption: a CLIP space trained
    # for ~30 s on 276 images must pair them well above chance (1/24)
    assert quality["test_top1_n"] == 24
    assert quality["test_image_to_text_top1"] >= 3 * quality["test_top1_chance"], quality


def test_tiny_guided_generator_moves_towards_the_predicted_embedding(tiny_run):
    """tiny_guided (bank prior + CLIP-gradient guidance) runs in the tiny DAG and its images are
    identified better than tiny's from noise, for every subject and for the true targets. (The
    guiding CLIP is the one the 2-way metric uses, so this shows the guidance works, not that it
    beats tiny on independent features; seen on the tiny config: 0.81 / 0.78 vs 0.59 / 0.57.)"""
    two_way = recon_scores(tiny_run)
    for subject, mapper in [*((s, "ridge") for s in SUBJECTS), ("01", "truth")]:
        guided = two_way[(subject, mapper, "tiny_guided")]
        assert guided > two_way[(subject, mapper, "tiny")] + 0.05, (subject, mapper, guided)


def test_two_stage_first_guess_raises_low_level_scores(tiny_run):
    m = pd.read_parquet(tiny_run / OUT / "metrics.parquet")
    rec = m[m["generator"].notna() & (m["mapper"] == "ridge")].pivot_table(
        index=["subject", "generator"], columns="metric", values="value"
    )
    for subject in SUBJECTS:
        one, two = rec.loc[(subject, "tiny")], rec.loc[(subject, "tiny_two_stage")]
        guess = rec.loc[(subject, "lowlevel")]  # the first guess is scored on its own
        # starting from the first guess raises PixCorr over sampling from noise (on the default
        # size SSIM rises too: see the README's demo results; the 16 px tiny generator's own
        # SSIM is about that of the first guess after 40% of the DDIM steps)
        assert two["pixcorr"] > one["pixcorr"] + 0.01, rec
        # the low-res image decoded from voxels is itself far from a blank guess
        assert guess["pixcorr"] > 0.05 and guess["two_way_identification"] > 0.55, rec


def recon_scores(run, metric="two_way_identification", tables=None) -> pd.Series:
    """One reconstruction metric by (subject, mapper, generator): from the run's metric table,
    or from the given per-subject recon tables."""
    if tables is None:
        m = pd.read_parquet(run / OUT / "metrics.parquet")
    else:
        m = pd.concat([pd.read_parquet(run / t) for t in tables], ignore_index=True)
    m = m[m["generator"].notna() & (m["metric"] == metric)]
    if metric == "two_way_identification":
        m = m[m["feature"] == "clip"]  # the other features need weights we do not have
    return m.set_index(["subject", "mapper", "generator"])["value"]


def test_reconstructions_from_true_and_predicted_embeddings_are_identifiable(tiny_run):
    two_way = recon_scores(tiny_run)
    # the generator's ceiling, from the true embeddings of the 24 shared test images (scored
    # once: for the first subject)
    truth = two_way[("01", "truth", "tiny")]
    assert truth > 0.65, two_way  # 24 images: 552 pairs; chance 0.5 (the default run: 0.9+)
    assert {s for s, m, _ in two_way.index if m == "truth"} == {"01"}
    for subject in SUBJECTS:
        # from embeddings decoded from voxels: above chance (0.5), below the ceiling
        pred = two_way[(subject, "ridge", "tiny")]
        assert 0.56 < pred <= truth + 0.05, two_way


def test_noise_sensitivity_table(tiny_run):
    noise = pd.read_parquet(tiny_run / OUT / "noise_sensitivity.parquet")
    assert set(noise["noise_amplitude"]) == {0.0, 8.0, 16.0, 32.0, 64.0, 256.0}
    assert set(noise["generator"]) == {"lowlevel", "tiny_two_stage"}
    assert set(noise["subject"]) == set(SUBJECTS) and (noise["status"] == "ok").all()
    pix = noise[noise["metric"] == "pixcorr"].pivot_table(
        index="noise_amplitude", columns="generator", values="value"
    )
    # amplitude 0 reproduces the main table's scores (same first guess, same seed)
    main = recon_scores(tiny_run, "pixcorr")
    for gen in ("lowlevel", "tiny_two_stage"):
        expected = np.mean([main[(s, "ridge", gen)] for s in SUBJECTS])
        assert pix.loc[0.0, gen] == pytest.approx(expected, abs=1e-6)
    # heavy noise destroys the first guess, and the second stage inherits part of the damage
    assert pix.loc[256.0, "lowlevel"] < pix.loc[0.0, "lowlevel"] - 0.03, pix
    assert pix.loc[256.0, "tiny_two_stage"] < pix.loc[0.0, "tiny_two_stage"], pix
    html = (tiny_run / OUT / "report/report.html").read_text()
    assert "Noise sensitivity" in html


def test_generation_cost_is_benchmarked(tiny_run):
    bench = tiny_run / OUT / "benchmarks/generate/sub-01/ridge/tiny_family.tsv"
    row = pd.read_csv(bench, sep="\t").iloc[0]
    assert row["s"] > 0 and row["max_rss"] > 0


def test_rule_cost_table_sums_the_benchmark_files(tiny_run):
    """bench/rules.py: one row per benchmarked rule of the run, totals equal to the files'."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "rules.py"), str(tiny_run / OUT)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in proc.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    }
    assert {"fit", "train_clip", "embed", "glm", "generate", "fit_ridge"} <= set(rows), rows
    fit = [
        pd.read_csv(f, sep="\t")["s"].sum() for f in (tiny_run / OUT / "benchmarks/fit").glob("*")
    ]
    assert int(rows["fit"][0]) == len(fit) and float(rows["fit"][1]) == pytest.approx(
        sum(fit), abs=0.06
    )
    assert proc.stdout.strip().splitlines()[-1].startswith("rule cost:")


def with_generator(tiny_run, tmp_path, name: str, settings: dict):
    """A copy of the tiny run (mtimes kept: nothing upstream reruns) and a config file adding
    generator ``name`` with ``settings`` on top of its defaults. Returns (workdir, config)."""
    import shutil

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    cfg = yaml.safe_load(TINY.read_text())
    gen = yaml.safe_load((REPO / "config.yaml").read_text())["generate"]
    gen[name] = {**gen[name], **settings}
    cfg["generate"] = {
        **gen,
        "tiny": cfg["generate"]["tiny"],
        "generators": [*cfg["generate"]["generators"], name],
    }
    conf = tmp_path / f"{name}.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    return work, conf


def test_versatile_generator_runs_in_the_workflow(tiny_run, tmp_path):
    """versatile_diffusion end to end on a pipeline of small random parts in a local folder:
    its own encoders make the token targets, ridge predicts them, the first guess seeds img2img."""
    from fmridecode.generators.versatile import build_tiny_versatile

    model = build_tiny_versatile(tmp_path / "vd-tiny", sample_size=8)
    vd = {"model": str(model), "steps": 4, "batch_size": 16}
    work, conf = with_generator(tiny_run, tmp_path, "versatile_diffusion", vd)
    jobs = scheduled_jobs(
        snakemake(work, "--dry-run", f"{OUT}/metrics.parquet", configfiles=[conf])
    )
    # 3 token targets x (ridge per subject + truth)
    assert jobs.get("embed_vd_tokens") == 1 and jobs.get("fit_tokens") == 3 * (N + 1)
    assert jobs.get("generate_versatile") == N + 1 and jobs.get("vae_first_guess") == N + 1
    assert not (UPSTREAM | {"fit_ridge", "generate"}) & set(jobs), jobs  # tiny family kept
    # run the subject's path and the ceiling
    tables = [
        f"{OUT}/metrics/recon/sub-01/ridge.parquet",
        f"{OUT}/metrics/recon/sub-01/truth.parquet",
    ]
    snakemake(work, *tables, configfiles=[conf])
    # the tiny pipeline's token grids and VAE latents (4 channels, 8 x 8), one per shown image
    shapes = {
        n: np.load(work / OUT / f"embed/vd_{n}.npy").shape for n in ("image", "text", "latent")
    }
    assert shapes["image"][1:] == (17, 32) and shapes["text"][1:] == (16, 32)
    assert shapes["latent"][1:] == (4, 8, 8) and len({s[0] for s in shapes.values()}) == 1
    pred = np.load(work / OUT / "fit/sub-01/ridge/pred_vd_image.npy")
    train = np.load(work / OUT / "embed/vd_image.npy")
    assert pred.shape[1:] == (17, 32) and np.isfinite(pred).all()
    # rescaled to the training targets' statistics (Brain-Diffuser), not shrunk towards 0
    assert abs(pred.std() / train.std() - 1) < 0.2
    two_way = recon_scores(work, tables=tables)
    expected = {("01", "ridge", "versatile_diffusion"), ("01", "truth", "versatile_diffusion")}
    expected |= {("01", "ridge", "vd_lowlevel"), ("01", "truth", "vd_lowlevel")}  # first guess
    assert expected <= set(two_way.index)
    recons = np.load(work / OUT / "generate/sub-01/ridge/versatile_diffusion/recons.npy")
    assert recons.dtype == np.uint8 and recons.shape[1:] == (64, 64, 3) and recons.std() > 1
    assert not (work / OUT / "generate/sub-01/ridge/versatile_diffusion/.partial").exists()
    bench = work / OUT / "benchmarks/generate/sub-01/ridge/versatile_diffusion.tsv"
    assert pd.read_csv(bench, sep="\t")["s"].iloc[0] > 0


def test_sd_unclip_generator_runs_in_the_workflow(tiny_run, tmp_path):
    """sd_unclip end to end, two-stage and with predicted captions: a pipeline of small random
    parts, saved to a local folder and named in the config, loaded by the workflow's loader,
    starting from its own VAE's latents predicted from the voxels and decoded, its text side
    conditioned on caption token states that ridge predicts; only its jobs are scheduled."""
    from fmridecode.generators.unclip import build_tiny_unclip

    dim = np.load(tiny_run / OUT / "embed/image.npy").shape[1]
    model = build_tiny_unclip(tmp_path / "sd-unclip-tiny", embed_dim=dim, sample_size=16)
    # two-stage (first_guess: vae by default): img2img over half of the steps
    settings = {"model": str(model), "steps": 4, "batch_size": 16, "strength": 0.5}
    settings["text"] = "predicted"
    work, conf = with_generator(tiny_run, tmp_path, "sd_unclip", settings)
    jobs = scheduled_jobs(
        snakemake(work, "--dry-run", f"{OUT}/metrics.parquet", configfiles=[conf])
    )
    assert jobs.get("generate_unclip") == N + 1  # ridge per subject, + truth once
    # caption token states and VAE latents: one embed job each, a fit each per subject + truth
    assert jobs.get("embed_unclip") == 2 and jobs.get("fit_tokens") == 2 * (N + 1)
    assert jobs.get("vae_first_guess") == N + 1  # the VAE first guess (unclip_lowlevel)
    assert not (UPSTREAM | {"fit_ridge", "generate"}) & set(jobs), jobs  # tiny family kept
    # run the subject's path and the ceiling
    tables = [
        f"{OUT}/metrics/recon/sub-01/ridge.parquet",
        f"{OUT}/metrics/recon/sub-01/truth.parquet",
    ]
    snakemake(work, *tables, configfiles=[conf])
    text = np.load(work / OUT / "embed/unclip_text.npy")
    pred = np.load(work / OUT / "fit/sub-01/ridge/pred_unclip_text.npy")
    assert text.shape[1:] == pred.shape[1:] == (16, 32) and np.isfinite(pred).all()
    assert abs(pred.std() / text.std() - 1) < 0.2  # rescaled to the training statistics
    latent = np.load(work / OUT / "fit/sub-01/ridge/pred_unclip_latent.npy")
    assert latent.shape[1:] == (4, 16, 16) and np.isfinite(latent).all()
    two_way = recon_scores(work, tables=tables)
    expected = {("01", "ridge", "sd_unclip"), ("01", "truth", "sd_unclip")}
    expected |= {("01", "ridge", "unclip_lowlevel"), ("01", "truth", "unclip_lowlevel")}
    assert expected <= set(two_way.index)
    recons = np.load(work / OUT / "generate/sub-01/ridge/sd_unclip/recons.npy")
    assert recons.dtype == np.uint8 and recons.shape[1:] == (64, 64, 3)
    assert recons.std() > 1  # random weights, but real images, not a constant
    bench = pd.read_csv(work / OUT / "benchmarks/generate/sub-01/ridge/sd_unclip.tsv", sep="\t")
    assert bench["s"].iloc[0] > 0


def test_snakemake_report_builds_with_every_category(tiny_run, tmp_path):
    """`snakemake --report` on the finished tiny run: one self-contained HTML holding the
    tagged outputs (metric table, reconstruction grids, noise-ceiling maps)."""
    out = tmp_path / "snakemake_report.html"
    snakemake(tiny_run, "--report", str(out), configfiles=[TINY])
    html = out.read_text()
    categories = ("Metrics", "Reconstructions", "GLM", "Mappers", "Analyses", "Retrieval")
    for category in (*categories, "Embeddings"):
        assert category in html, category
    assert "noise_ceiling.png" in html and "grid.png" in html
    assert "hrf_index.png" in html and "sub-01_ridge.png" in html  # GLM maps, retrieval


def _chromium() -> str:
    """Debian's chromium: found, or installed with apt as root; else the test is skipped."""
    import os
    import shutil
    import subprocess

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["apt-get", *args], capture_output=True, text=True, env=env, timeout=600
        )

    proc = apt("install", "-y", "-q", "chromium")
    if proc.returncode != 0:  # stale package lists on a fresh machine
        apt("update", "-q")
        proc = apt("install", "-y", "-q", "chromium")
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"chromium could not be installed with apt-get: {proc.stderr[-300:]}")
    return found


RENDER_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var shown = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var rows = Array.from(document.querySelectorAll("table")).map(function (t) {
    return t.rows.length;
  });
  var pre = document.createElement("pre");
  pre.id = "render-check";
  pre.textContent = JSON.stringify({images: imgs.length, shown: shown.length, rows: rows});
  document.body.appendChild(pre);
});
</script>"""


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    """The run's report opened in a real browser: every image decodes (non-zero natural width)
    and the tables have rows (headline, reconstructions, definitions, all rows)."""
    import re
    import subprocess

    chromium = _chromium()
    html = (tiny_run / OUT / "report/report.html").read_text()
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", RENDER_CHECK + "</body>"))
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'<pre id="render-check">([^<]*)</pre>', proc.stdout)
    assert found, proc.stderr[-500:]
    check = json.loads(found.group(1))
    grids = html.count("<h3>")  # one reconstruction grid per heading
    assert check["images"] >= grids + 2 and check["shown"] == check["images"], check
    assert len(check["rows"]) >= 4 and min(check["rows"]) >= 2, check
