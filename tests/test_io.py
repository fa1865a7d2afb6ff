"""The array-with-index format and atomic writes."""

import numpy as np
import pandas as pd
import pytest

from fmridecode.io import DataError, atomic_path, index_path, load_indexed, save_indexed


def test_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    idx = pd.DataFrame({"stim_id": [f"img{i:05d}" for i in range(5)], "split": ["train"] * 5})
    save_indexed(tmp_path / "x.npy", x, idx)
    y, idx2 = load_indexed(tmp_path / "x.npy")
    np.testing.assert_array_equal(x, y)
    pd.testing.assert_frame_equal(idx, idx2)
    assert index_path(tmp_path / "x.npy").name == "x.index.parquet"


def test_rejects_mismatch_and_nan(tmp_path):
    idx = pd.DataFrame({"stim_id": ["a", "b"]})
    with pytest.raises(ValueError, match="index has 2 rows but array has 3"):
        save_indexed(tmp_path / "x.npy", np.zeros((3, 2)), idx)
    with pytest.raises(DataError, match="1 non-finite"):
        save_indexed(tmp_path / "x.npy", np.array([[0.0], [np.nan]]), idx)
    assert not (tmp_path / "x.npy").exists()


def test_load_names_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.npy: file not found"):
        load_indexed(tmp_path / "nope.npy")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    from fmridecode.io import atomic_dir

    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("half-way")
    assert [p.name for p in target.iterdir()] == ["a.txt"]  # old folder untouched
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c.txt"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folders left


def test_json_roundtrip_and_errors_name_the_file(tmp_path):
    from fmridecode.io import read_json, write_json

    write_json({"b": np.float32(1.5), "a": [1, 2]}, tmp_path / "x.json")
    assert read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 1.5}
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
