"""Workflow operations on real Snakemake runs: a new subject reruns only its own jobs, bad
input stops the job that reads it with the file named and nothing half-written, and a killed
training job resumes from its checkpoint without redoing finished jobs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from workflow_helpers import (
    ENV,
    TINY,
    scheduled_job_list,
    scheduled_jobs,
    snakemake,
    snakemake_command,
)

from fmridecode.datasets import synthetic as syn

pytestmark = pytest.mark.workflow
OUT = "results/synthetic-tiny"

#: jobs over all subjects: the only ones besides the new subject's own that may rerun
TABLES_OVER_SUBJECTS = {"metrics_all", "noise_sensitivity_table", "report", "all"}


def _config(tmp_path: Path, name: str, edit) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_invalidation_new_subject_runs_only_its_jobs_and_the_tables(tiny_run, tmp_path):
    """Adding the second simulated subject to the tiny run schedules that subject's whole
    path (simulation to metrics) and the tables over subjects; no job of the first subject,
    no stimulus, CLIP or generator job."""
    conf = _config(tmp_path, "two", lambda c: c["simulate"].update(subjects=[1, 2]))
    jobs = scheduled_job_list(snakemake(tiny_run, "--dry-run", configfiles=[conf]))
    jobs = [(j["rule"], j["wildcards"]) for j in jobs]
    own = [rule for rule, w in jobs if w.get("subject") == "02"]
    others = {(rule, w.get("subject")) for rule, w in jobs if w.get("subject") != "02"}
    assert {rule for rule, _ in others} <= TABLES_OVER_SUBJECTS, others
    assert all(s is None for _, s in others), others
    counts = {r: own.count(r) for r in set(own)}
    expected = {"simulate_subject": 1, "glm": 2, "roi": 2, "fit_ridge": 1, "fit": 5}
    assert {r: counts.get(r) for r in expected} == expected, counts
    assert {"generate", "metrics_decoding", "metrics_recon", "microstim"} <= set(counts)


def test_gpu_resource_follows_each_stages_device(tmp_path):
    """Jobs of a stage whose device is cuda ask for one GPU (resource gpu, --gpus on SLURM);
    with auto or cpu none does."""

    def cuda(c: dict) -> None:
        c["fit"]["training"]["device"] = "cuda"
        c["generate"]["tiny"]["device"] = "cuda"

    gpu = {}
    for name, edit in (("auto", lambda c: None), ("cuda", cuda)):
        conf = _config(tmp_path, name, edit)
        jobs = scheduled_job_list(snakemake(tmp_path, "--dry-run", configfiles=[conf]))
        gpu[name] = {j["rule"] for j in jobs if j["resources"].get("gpu", "0") != "0"}
    assert gpu["auto"] == set()
    # (fit_lowres too, when a network makes the first guess; not in the tiny DAG)
    assert gpu["cuda"] == {"fit", "metrics_supervision", "generate", "microstim",
                           "noise_sensitivity"}  # fmt: skip


def _damage(root: Path) -> dict[tuple[str, str], str]:
    """One kind of bad input per session of the tiny dataset; returns what each glm log must
    say. The BOLD grids are (x, y, z, t) float32 with every voxel in the brain mask."""
    func = root / "bids/sub-{}/ses-{}/func/sub-{}_ses-{}_task-images_run-{}_{}"

    def f(sub: str, ses: str, run: str, suffix: str) -> Path:
        return Path(str(func).format(sub, ses, sub, ses, run, suffix))

    cut = f("01", "01", "01", "bold.nii.gz")  # an interrupted copy
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    nan = f("01", "02", "02", "bold.nii.gz")  # NaN in voxels of the brain
    img = nib.load(nan)
    data = np.asarray(img.dataobj).copy()
    brain = nib.load(root / "bids/sub-01/anat/sub-01_desc-brain_mask.nii.gz").get_fdata() > 0
    i, j, k = np.argwhere(brain)[0]
    data[i, j, k, 5:] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine, img.header), nan)
    side = f("02", "01", "02", "bold.json")  # a sidecar that disagrees with the header
    side.write_text('{"RepetitionTime": 2.0}')
    events = f("02", "02", "03", "events.tsv")  # a stimulus that was never shown
    lines = events.read_text().splitlines()
    head = lines[0].split("\t")
    row = lines[2].split("\t")
    row[head.index("stim_id")] = "img99999"
    events.write_text("\n".join([*lines[:2], "\t".join(row), *lines[3:]]) + "\n")
    return {
        ("01", "01"): f"{cut}: cannot read the image data, truncated or corrupt",
        ("01", "02"): f"{nan}: 1 voxel(s) inside the brain mask",
        ("02", "01"): f"header TR 1.6 s disagrees with RepetitionTime 2 s from {side}",
        ("02", "02"): f"{events}: event 2 names stimulus 'img99999', which is not in the "
        "stimulus set",
    }


def test_bad_inputs_stop_their_jobs_with_the_file_named_and_nothing_written(tmp_path):
    """Each session of the tiny dataset damaged another way; with --keep-going every glm job
    fails on its own problem, names the file, and leaves no output (not even a part of one).
    A run whose BOLD file is missing stops its session the same way."""
    out = tmp_path / OUT
    syn.simulate_stimuli(out / "stimuli", out / "bids", "tiny", 0)
    for sub in ("01", "02"):
        syn.simulate_subject(sub, out / "stimuli", out / "bids", out / f"truth/sub-{sub}.npz",
                             "tiny", 1.0, 0)  # fmt: skip
    expected = _damage(out)
    conf = _config(tmp_path, "both", lambda c: c["simulate"].update(subjects=[1, 2]))
    targets = [f"{OUT}/glm/sub-{s}/ses-{e}/summary.json" for s, e in expected]
    # targets first: --allowed-rules takes every word after it
    proc = snakemake(tmp_path, *targets, "--keep-going", "--allowed-rules", "glm",
                     configfiles=[conf], check=False)  # fmt: skip
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert text.count("Error in rule glm:") == 4, text[-3000:]
    for (sub, ses), message in expected.items():
        log = (out / f"logs/glm/sub-{sub}_ses-{ses}.log").read_text()
        message = message.replace(f"{tmp_path}/", "")  # the jobs see paths in the workdir
        assert message in log, (sub, ses, log[-2000:])
        folder = out / f"glm/sub-{sub}/ses-{ses}"
        assert not folder.exists() or not any(folder.rglob("*")), list(folder.rglob("*"))
    # a missing run: its events are there, its BOLD file is not
    gone = out / "bids/sub-02/ses-02/func/sub-02_ses-02_task-images_run-02_bold.nii.gz"
    gone.unlink()
    proc = snakemake(tmp_path, targets[-1], "--allowed-rules", "glm", configfiles=[conf],
                     check=False)  # fmt: skip
    log = (out / "logs/glm/sub-02_ses-02.log").read_text()
    assert proc.returncode != 0
    assert (
        f"{gone.relative_to(tmp_path).with_name(gone.name.replace('bold.nii.gz', 'events.tsv'))}"
        ": events of a run "
        "whose BOLD file is missing" in log
    ), log[-2000:]
    assert not (out / "glm/sub-02/ses-02/summary.json").exists()


def test_killed_training_job_resumes_from_its_checkpoint(tiny_run, tmp_path):
    """Snakemake killed (SIGKILL, its whole process group) while a mapper trains; the rerun
    with --rerun-incomplete runs that one job again, which continues from its last epoch's
    checkpoint, and nothing that had finished. (About 6 ms an epoch here: 400 epochs give
    seconds of training to kill.)"""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    conf = _config(
        tmp_path,
        "long",
        lambda c: c["fit"].update(
            brainclip_linear={"epochs": 400}, training={**c["fit"]["training"], "patience": 10**4}
        ),
    )
    target = f"{OUT}/fit/sub-01/brainclip_linear/model.pt"
    partial = work / OUT / "fit/sub-01/brainclip_linear/.partial"
    cmd = snakemake_command(work, target, configfiles=[conf])
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while not list(partial.rglob("*.pt")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workflow and its job, mid-training
    proc.wait()
    assert not (work / target).exists() and list(partial.rglob("*.pt"))
    # a killed Snakemake leaves its lock on the directory behind: --unlock, as it says
    locked = snakemake(work, target, configfiles=[conf], check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    snakemake(work, "--unlock", target, configfiles=[conf])
    run = snakemake(work, "--rerun-incomplete", target, configfiles=[conf])
    assert scheduled_jobs(run) == {"fit": 1}, run.stdout[-2000:]
    log = (work / OUT / "logs/fit/sub-01_brainclip_linear.log").read_text()
    assert "resumed from its checkpoint at phase" in log, log[-2000:]
    assert (work / target).exists() and not partial.exists()
    again = snakemake(work, "--dry-run", target, configfiles=[conf])
    assert scheduled_jobs(again) == {}
