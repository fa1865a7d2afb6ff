"""BIDS reader: run discovery, events, TR inheritance, BOLD loading, on a tiny tree."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fmridecode.datasets.bids import (
    Run,
    bids_root,
    find_runs,
    find_runs_templated,
    list_sessions,
    list_subjects,
    load_bold,
    read_events,
    repetition_time,
)
from fmridecode.io import DataError

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def write_bold(path: Path, n_vols: int = 6, tr: float | None = 1.6, unit: str = "sec") -> None:
    """A tiny 4D float32 NIfTI; pixdim[4] = tr (None leaves nibabel's default of 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).normal(100, 1, (2, 2, 2, n_vols)).astype(np.float32)
    img = nib.Nifti1Image(data, AFFINE)
    if tr is not None:
        img.header.set_zooms((2.0, 2.0, 2.0, tr))
    img.header.set_xyzt_units("mm", unit)
    nib.save(img, path)


def write_events(path: Path, text: str | None = None) -> None:
    path.write_text(text or "onset\tduration\tstim_id\n1.5\t3.0\timg00001\n9.25\t3.0\timg00002\n")


def add_run(root: Path, sub: str, ses: str | None, task: str, run: str, tr: float = 1.6) -> Path:
    func = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "func"
    stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + f"_task-{task}_run-{run}"
    write_bold(func / f"{stem}_bold.nii.gz", tr=tr)
    write_events(func / f"{stem}_events.tsv")
    return func / f"{stem}_bold.nii.gz"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """sub-01: ses-01 runs 10, 2, 1 (written out of order) + a rest run, ses-02 run 1;
    sub-02: no sessions. Top-level TR 1.6; one run-level sidecar overrides it with 2.0."""
    root = tmp_path / "bids"
    for run in ("10", "2", "1"):
        add_run(root, "01", "01", "images", run)
    add_run(root, "01", "01", "rest", "1")
    add_run(root, "01", "02", "images", "01", tr=2.0)
    add_run(root, "02", None, "images", "01")
    (root / "task-images_bold.json").write_text(
        json.dumps({"TaskName": "images", "RepetitionTime": 1.6})
    )
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 1.6}))
    side = root / "sub-01/ses-02/func/sub-01_ses-02_task-images_run-01_bold.json"
    side.write_text(json.dumps({"RepetitionTime": 2.0}))
    return root


def test_find_runs_sorted_by_session_then_run(tree: Path) -> None:
    runs = find_runs(tree, "01", task="images")
    assert [(r.session, r.run) for r in runs] == [("01", 1), ("01", 2), ("01", 10), ("02", 1)]
    assert all(r.subject == "01" and r.task == "images" for r in runs)
    assert runs[0].events_path.name == "sub-01_ses-01_task-images_run-1_events.tsv"
    assert runs[0].events_path.is_file() and runs[0].bold_path.is_file()
    assert len(find_runs(tree, "sub-01")) == 5  # all tasks
    only = find_runs(tree, "sub-01", session="ses-02")
    assert [(r.session, r.run) for r in only] == [("02", 1)]
    assert find_runs(tree, "01", session="02") == only


def test_sessionless_subject_and_listing(tree: Path) -> None:
    runs = find_runs(tree, "02")
    assert len(runs) == 1 and runs[0].session is None and runs[0].run == 1
    assert bids_root(runs[0]) == tree
    assert bids_root(find_runs(tree, "01")[0]) == tree
    assert list_subjects(tree) == ["01", "02"]
    assert list_sessions(tree, "01") == ["01", "02"]
    assert list_sessions(tree, "sub-02") == []


def test_missing_events_file_names_the_bold_file(tree: Path) -> None:
    events = tree / "sub-01/ses-01/func/sub-01_ses-01_task-images_run-2_events.tsv"
    events.unlink()
    with pytest.raises(DataError, match=r"sub-01_ses-01_task-images_run-2_bold\.nii\.gz.*events"):
        find_runs(tree, "01")


def test_missing_bold_file_of_a_run_names_its_events(tree: Path) -> None:
    """A run whose BOLD file is gone is an error, not a session with one run fewer."""
    (tree / "sub-01/ses-01/func/sub-01_ses-01_task-images_run-2_bold.nii.gz").unlink()
    assert len(find_runs(tree, "01", session="02")) == 1  # other sessions are unaffected
    with pytest.raises(DataError, match=r"run-2_events\.tsv: events of a run whose BOLD"):
        find_runs(tree, "01", session="01")
    with pytest.raises(DataError, match=r"run-2_events\.tsv: events of a run whose BOLD"):
        find_runs_templated(tree, "01", "01", "images")
    assert len(find_runs(tree, "01", session="01", task="rest")) == 1  # another task's events


def test_bad_names_and_missing_folders(tree: Path) -> None:
    bad = tree / "sub-02/func/sub-02_task-images_bold.nii.gz"  # no run entity
    write_bold(bad)
    with pytest.raises(DataError, match="sub-02_task-images_bold.nii.gz"):
        find_runs(tree, "02")
    with pytest.raises(DataError, match="sub-07"):
        find_runs(tree, "07")
    with pytest.raises(DataError, match="ses-05"):
        find_runs(tree, "01", session="05")
    with pytest.raises(DataError, match="no BOLD runs"):
        find_runs(tree, "01", task="nback")


def test_read_events_columns_and_fallback(tmp_path: Path) -> None:
    p = tmp_path / "a_events.tsv"
    write_events(p, "onset\tduration\ttrial_type\textra\n0.0\t3\tface\t1\n4.4\t3\thouse\t2\n")
    ev = read_events(p)
    assert list(ev.columns[:3]) == ["onset", "duration", "stim_id"]
    assert ev["stim_id"].tolist() == ["face", "house"]
    assert ev["onset"].tolist() == [0.0, 4.4] and ev["extra"].tolist() == [1, 2]
    # numeric-looking stimulus ids stay strings, with their leading zeros
    write_events(p, "onset\tduration\tstim_id\n0.5\t3\t007\n")
    assert read_events(p)["stim_id"].tolist() == ["007"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("duration\tstim_id\n3\ta\n", "missing column 'onset'"),
        ("onset\tstim_id\n3\ta\n", "missing column 'duration'"),
        ("onset\tduration\n1\t3\n", "missing column 'stim_id'"),
        ("onset\tduration\tstim_id\n5\t3\ta\n2\t3\tb\n", "not sorted"),
        ("onset\tduration\tstim_id\n-1\t3\ta\n", "'onset' must be finite and >= 0"),
        ("onset\tduration\tstim_id\nn/a\t3\ta\n", "'onset' must be finite"),
        ("onset\tduration\tstim_id\n1\t3\tn/a\n", "no stim_id"),
    ],
)
def test_read_events_errors_name_the_file(tmp_path: Path, text: str, pattern: str) -> None:
    p = tmp_path / "sub-01_task-x_run-1_events.tsv"
    write_events(p, text)
    with pytest.raises(DataError, match=pattern) as err:
        read_events(p)
    assert str(p) in str(err.value)


def test_read_events_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope_events.tsv"):
        read_events(tmp_path / "nope_events.tsv")


def test_repetition_time_inheritance(tree: Path) -> None:
    runs = find_runs(tree, "01", task="images")
    assert repetition_time(tree, runs[0]) == 1.6  # top-level task-images_bold.json
    assert repetition_time(tree, runs[3]) == 2.0  # run-level sidecar wins
    # a subject-level sidecar overrides the top level for that subject only
    (tree / "sub-02/sub-02_task-images_bold.json").write_text('{"RepetitionTime": 1.6005}')
    assert repetition_time(tree, find_runs(tree, "02")[0]) == 1.6005
    # a sidecar of another task or run does not apply
    (tree / "sub-01/ses-01/func/sub-01_ses-01_task-images_run-2_bold.json").write_text(
        '{"RepetitionTime": 3.0}'
    )
    assert repetition_time(tree, runs[0]) == 1.6


def test_repetition_time_header_fallback_and_conflict(tree: Path) -> None:
    run = find_runs(tree, "02")[0]
    (tree / "task-images_bold.json").write_text('{"TaskName": "images"}')
    with pytest.warns(UserWarning, match="pixdim"):
        assert repetition_time(tree, run) == pytest.approx(1.6)
    write_bold(run.bold_path, tr=1600.0, unit="msec")  # header in milliseconds
    with pytest.warns(UserWarning):
        assert repetition_time(tree, run) == pytest.approx(1.6)
    (tree / "task-images_bold.json").write_text('{"RepetitionTime": 1.6}')
    write_bold(run.bold_path, tr=None)  # nibabel's default pixdim[4] = 1 s
    with pytest.raises(DataError, match="disagrees") as err:
        repetition_time(tree, run)
    assert str(run.bold_path) in str(err.value) and "task-images_bold.json" in str(err.value)
    (tree / "task-images_bold.json").write_text('{"RepetitionTime": "fast"}')
    with pytest.raises(DataError, match="must be a number"):
        repetition_time(tree, run)


def test_load_bold(tree: Path, tmp_path: Path) -> None:
    run = find_runs(tree, "02")[0]
    img = load_bold(run)
    assert img.shape == (2, 2, 2, 6) and np.allclose(img.affine, AFFINE)
    flat = tmp_path / "flat_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), AFFINE), flat)
    fake = Run("02", None, "images", 1, flat, run.events_path)
    with pytest.raises(DataError, match="flat_bold.nii.gz.*4D"):
        load_bold(fake)
    broken = tmp_path / "broken_bold.nii.gz"
    broken.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="broken_bold.nii.gz"):
        load_bold(Run("02", None, "images", 1, broken, run.events_path))


def test_events_naming_an_unknown_stimulus_are_named(tree: Path) -> None:
    """The glm stage checks the scanned stimuli against the stimulus set before fitting."""
    from fmridecode.glm.fit import check_scanned_stimuli

    runs = find_runs(tree, "01", session="01", task="images")
    check_scanned_stimuli(runs, ["img00001", "img00002", "img00003"])
    write_events(runs[1].events_path, "onset\tduration\tstim_id\n1\t3\timg00001\n9\t3\timg00042\n")
    with pytest.raises(DataError) as err:
        check_scanned_stimuli(runs, ["img00001", "img00002"])
    assert str(err.value) == (
        f"{runs[1].events_path}: event 2 names stimulus 'img00042', which is not in the "
        "stimulus set (1 of 2 events)"
    )
