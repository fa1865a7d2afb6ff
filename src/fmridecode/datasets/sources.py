"""Where the workflow's data come from (``source.kind``): the simulated dataset, the Natural
Scenes Dataset as released, or any BIDS dataset (presets for NSD, BOLD5000 and GOD in ``presets/``).

This module answers, at parse time and inside the data rules, the questions whose answer
depends on the kind: which subjects and sessions exist, which stimuli were shown (with their
split), and where a session's runs and trial tables are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmridecode.datasets import nsd
from fmridecode.datasets.bids import EventSpec, fill, find_runs_templated, read_events
from fmridecode.io import DataError

KINDS = ("synthetic", "nsd", "bids")


def nsd_layout(cfg: Mapping[str, Any]) -> nsd.NSDLayout:
    """The NSD release described by ``source.nsd``."""
    return nsd.NSDLayout(Path(cfg["root"]), cfg["space"], cfg["betas"], cfg["format"])


def event_spec(cfg: Mapping[str, Any]) -> EventSpec:
    """The events columns described by ``source.bids``."""
    types = tuple(str(t) for t in cfg["trial_types"])
    return EventSpec(cfg["stim_column"], cfg["trial_type_column"], types)


def _bids_roots(cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    root = Path(cfg["root"])
    events_root = Path(cfg["events_root"]) if cfg["events_root"] else root
    return root, events_root


def _bids_labels(folder: Path, prefix: str) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p.name[len(prefix) :] for p in folder.glob(f"{prefix}*") if p.is_dir())


def subjects_and_sessions(config: Mapping[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    """Subject labels and each one's session labels, as the rules' wildcards spell them."""
    kind = config["source"]["kind"]
    if kind == "synthetic":
        from fmridecode.datasets.synthetic import design_summary

        design = design_summary(config["simulate"]["size"])
        wanted = config["simulate"].get("subjects") or []
        subjects = [f"{int(s):02d}" for s in wanted] or design["subjects"]
        unknown = sorted(set(subjects) - set(design["subjects"]))
        if unknown:
            raise DataError(
                f"simulate.subjects: subject {unknown[0]} is not simulated by size "
                f"'{config['simulate']['size']}' (it has {', '.join(design['subjects'])})"
            )
        return subjects, {s: design["sessions"][s] for s in subjects}
    if kind == "nsd":
        cfg = config["source"]["nsd"]
        layout = nsd_layout(cfg)
        subjects = [f"{int(s):02d}" for s in cfg["subjects"]]
        sessions = {}
        for s in subjects:
            on_disk = layout.sessions(s, cfg["entry"])
            wanted = cfg["sessions"] or on_disk
            missing = sorted(set(wanted) - set(on_disk))
            if missing:
                where = layout.betas_file(s, missing[0]) if cfg["entry"] == "betas" else (
                    layout.design(s, missing[0], 1))  # fmt: skip
                raise DataError(f"{where}: session {missing[0]} of subject {s} not found")
            sessions[s] = [f"{x:02d}" for x in sorted(wanted)]
        return subjects, sessions
    cfg = config["source"]["bids"]
    _, events_root = _bids_roots(cfg)
    subjects = [str(s) for s in cfg["subjects"]] or _bids_labels(events_root, "sub-")
    sessions = {}
    for s in subjects:
        found = _bids_labels(events_root / f"sub-{s}", "ses-")
        if cfg["sessions"]:
            rx = re.compile(cfg["sessions"])
            found = [x for x in found if rx.fullmatch(x)]
        if not found:
            raise DataError(f"{events_root / f'sub-{s}'}: no sessions (source.bids.sessions)")
        sessions[s] = found
    return subjects, sessions


def bids_runs(config: Mapping[str, Any], subject: str, session: str):
    """The runs of one subject-session of the BIDS source (preprocessed BOLD + raw events)."""
    cfg = config["source"]["bids"]
    root, events_root = _bids_roots(cfg)
    return find_runs_templated(
        root,
        subject,
        session,
        cfg["task"],
        bold=cfg["bold"],
        events=cfg["events"],
        events_root=events_root,
        spec=event_spec(cfg),
    )


def bids_brain_mask(config: Mapping[str, Any], subject: str, session: str) -> Path | None:
    """The brain mask file of one subject-session of the BIDS source (None: not configured,
    the glm stage computes one from the session's first run)."""
    cfg = config["source"]["bids"]
    if not cfg["brain_mask"]:
        return None
    root, _ = _bids_roots(cfg)
    return root / fill(cfg["brain_mask"], subject=subject, session=session, task=cfg["task"])


def bids_stimulus_index(
    config: Mapping[str, Any], sessions: Mapping[str, list[str]]
) -> pd.DataFrame:
    """Every stimulus shown to the configured subjects, with its split: ``stim_id, split,
    subjects``. Test: images shown in a session matching ``test_sessions`` or on a trial whose
    ``test_column`` value is in ``test_values``; a test image is test for every subject."""
    cfg = config["source"]["bids"]
    rx = re.compile(cfg["test_sessions"]) if cfg["test_sessions"] else None
    rows = []
    for subject, labels in sessions.items():
        for ses in labels:
            for run in bids_runs(config, subject, ses):
                ev = read_events(run.events_path, run.events)
                test = np.zeros(len(ev), dtype=bool)
                if rx is not None and rx.fullmatch(ses):
                    test[:] = True
                if cfg["test_column"]:
                    if cfg["test_column"] not in ev.columns:
                        raise DataError(f"{run.events_path}: no column {cfg['test_column']!r}")
                    values = {str(v) for v in cfg["test_values"]}
                    test |= ev[cfg["test_column"]].astype(str).isin(values).to_numpy()
                rows.append(
                    pd.DataFrame({"stim_id": ev["stim_id"], "test": test, "subject": subject})
                )
    return _index_from_trials(pd.concat(rows, ignore_index=True))


def _index_from_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """``stim_id, test, subject`` per trial -> one row per stimulus: split, subjects."""
    g = trials.groupby("stim_id", sort=True)
    index = pd.DataFrame(
        {
            "stim_id": list(g.groups),
            "split": np.where(g["test"].any().to_numpy(), "test", "train"),
            "subjects": g["subject"].agg(lambda s: ",".join(sorted(set(s)))).to_numpy(),
        }
    )
    return index.reset_index(drop=True)


def nsd_stimulus_index(
    config: Mapping[str, Any], sessions: Mapping[str, list[str]]
) -> pd.DataFrame:
    """Every NSD image shown to the configured subjects in the sessions on disk: ``stim_id,
    split`` (shared1000 -> test), ``subjects``, ``nsd_id`` (0-based), ``coco_id``."""
    cfg = config["source"]["nsd"]
    layout = nsd_layout(cfg)
    design = nsd.read_expdesign(layout.expdesign)
    shared = set(design.sharedix.tolist())
    rows = []
    for subject, labels in sessions.items():
        for ses in labels:
            t = nsd.session_trials(design, int(subject), int(ses), cfg["trials_per_session"])
            rows.append(t.assign(test=t["nsd_id"].isin(shared), subject=subject))
    trials = pd.concat(rows, ignore_index=True)
    index = _index_from_trials(trials)
    nsd_id = trials.drop_duplicates("stim_id").set_index("stim_id")["nsd_id"]
    index["nsd_id"] = nsd_id.loc[index["stim_id"]].to_numpy().astype(np.int64)
    info = nsd.read_stim_info(layout.stim_info)
    missing = sorted(set(index["nsd_id"]) - set(info.index))
    if missing:
        raise DataError(f"{layout.stim_info}: no row for nsdId {missing[:5]}")
    index["coco_id"] = info.loc[index["nsd_id"], "cocoId"].to_numpy().astype(np.int64)
    return index.sort_values("nsd_id", kind="stable").reset_index(drop=True)


def nsd_image_loader(path: str | Path):
    """A ``write_images`` loader reading NSD images lazily from ``imgBrick`` by stim_id."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: NSD stimuli file not found")

    def load(ids):
        idx = np.array([int(s[3:]) - 1 for s in ids])
        order = np.argsort(idx)
        with h5py.File(path, "r") as f:
            if "imgBrick" not in f:
                raise DataError(f"{path}: no dataset 'imgBrick' (has {list(f)})")
            brick = f["imgBrick"]
            if idx.max() >= brick.shape[0]:
                raise DataError(
                    f"{path}: imgBrick has {brick.shape[0]} images, id {idx.max()} asked"
                )
            block = brick[np.unique(idx[order])]  # h5py wants increasing indices
        pos = {k: i for i, k in enumerate(np.unique(idx))}
        return [block[pos[k]] for k in idx]

    return load


def session_runs(config: Mapping[str, Any], subject: str, session: str, synthetic_root: str | Path):
    """The BOLD runs (with their events) the glm stage fits for one subject-session."""
    from fmridecode.datasets.bids import Run, find_runs

    kind = config["source"]["kind"]
    if kind == "synthetic":
        return find_runs(synthetic_root, subject, session=session)
    if kind == "bids":
        return bids_runs(config, subject, session)
    cfg = config["source"]["nsd"]
    layout = nsd_layout(cfg)
    tr = nsd.TIMESERIES_TR.get(cfg["space"])
    spec = EventSpec(design=True)
    return [
        Run(
            subject,
            session,
            "nsd",
            r,
            layout.timeseries(subject, session, r),
            layout.design(subject, session, r),
            spec,
            tr,
        )  # fmt: skip
        for r in layout.runs(subject, session)
    ]


def session_brain_mask(
    config: Mapping[str, Any], subject: str, session: str, synthetic_root: str | Path
) -> Path | None:
    """The brain mask the glm stage fits one subject-session in (None: compute one)."""
    kind = config["source"]["kind"]
    if kind == "synthetic":
        return Path(synthetic_root) / f"sub-{subject}/anat/sub-{subject}_desc-brain_mask.nii.gz"
    if kind == "bids":
        return bids_brain_mask(config, subject, session)
    return nsd_layout(config["source"]["nsd"]).brainmask(subject)


def stimulus_set(config: Mapping[str, Any], sessions: Mapping[str, list[str]]) -> dict[str, Any]:
    """A real dataset's stimulus set, ready to write: ``index`` (one row per shown image),
    ``load`` (ids -> images, for ``stimuli.write_images``), ``captions``, ``labels``,
    ``categories``. NSD: shared1000 test split, imgBrick, COCO captions and (with
    ``instances``) object categories; BIDS: image folders, COCO captions of COCO-named
    stimuli, categories from ``category_pattern``. Relative paths are under the root."""
    from fmridecode.datasets.stimuli import (
        categories_from_ids,
        coco_captions,
        coco_categories,
        coco_ids,
        image_file_loader,
    )

    kind = config["source"]["kind"]
    cfg = config["source"][kind]
    root = Path(cfg["root"])
    if kind == "nsd":
        index = nsd_stimulus_index(config, sessions)
        load = nsd_image_loader(nsd_layout(cfg).stimuli)
        coco_of = dict(zip(index["stim_id"], index["coco_id"], strict=True))
    elif kind == "bids":
        index = bids_stimulus_index(config, sessions)
        load = image_file_loader([root / d for d in cfg["images"]], cfg["image_template"])
        coco_of = coco_ids(index["stim_id"], cfg["coco_id_pattern"])
    else:
        raise ValueError(f"stimulus_set: source.kind {kind!r} has no stimulus files to read")
    captions = coco_captions([root / f for f in cfg["captions"]], coco_of)
    if kind == "nsd" and cfg["instances"]:
        labels, categories = coco_categories([root / f for f in cfg["instances"]], coco_of, index)
    else:  # GOD: the synset in the image name; datasets without labels: empty tables
        pattern = cfg["category_pattern"] if kind == "bids" else None
        labels, categories = categories_from_ids(index, pattern)
    return {"index": index, "load": load, "captions": captions, "labels": labels,
            "categories": categories}  # fmt: skip
