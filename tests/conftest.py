"""Test-session settings: one BLAS thread per test process (the machine has 2 cores, and
oversubscribed BLAS threads make small linear-algebra tests 10x slower); the tiny workflow
run that the workflow tests share, and the xdist group that keeps them on one worker."""

import os

import pytest

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG on tests/configs/tiny.yaml, run once per test worker (about 3 minutes)."""
    from workflow_helpers import TINY, snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, configfiles=[TINY])
    return workdir


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``-n 2 --dist loadgroup`` (pyproject's addopts), every test that reads the tiny
    run goes to the same worker, so the run is made once while the other worker takes the
    rest of the suite. They are also moved to the front, so that their worker starts on the
    run at once (the longest chain of the suite) instead of after its share of the others."""
    uses = {id(it): "tiny_run" in getattr(it, "fixturenames", ()) for it in items}
    for item in items:
        if uses[id(item)]:
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
    items.sort(key=lambda it: not uses[id(it)])  # stable: the order within each part is kept
