"""The metrics writer enforces the vocabulary and the no-silent-NaN rule."""

import math

import pandas as pd
import pytest

from fmridecode.metrics.table import concat_metrics, write_metrics

BASE = {"dataset": "d", "subject": "01", "mapper": "ridge"}


def test_write_and_concat(tmp_path):
    write_metrics([{**BASE, "metric": "pixcorr", "value": 0.2}], tmp_path / "a.parquet")
    write_metrics(
        [{**BASE, "metric": "recall_at_k", "k": 1, "value": 0.5, "chance": 0.01}],
        tmp_path / "b.parquet",
    )
    df = concat_metrics([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert list(df["metric"]) == ["pixcorr", "recall_at_k"]
    assert (df["status"] == "ok").all()
    assert math.isnan(df["chance"].iloc[0])


def test_rejects_unknown_metric_and_nan(tmp_path):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        write_metrics([{**BASE, "metric": "accuracy", "value": 1.0}], tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="non-finite"):
        write_metrics([{**BASE, "metric": "ssim", "value": float("nan")}], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_missing_value_allowed_with_status(tmp_path):
    df = write_metrics(
        [{**BASE, "metric": "ssim", "value": None, "status": "unavailable: no weights"}],
        tmp_path / "x.parquet",
    )
    assert pd.isna(df["value"].iloc[0])
