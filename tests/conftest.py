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

    if _UNGROUPED:
        pytest.fail(
            f"pytest-xdist did not group the {len(_UNGROUPED)} tests of the tiny run (e.g. "
            f"{_UNGROUPED[0]}), so both workers would make it: pytest {pytest.__version__} with "
            "this pytest-xdist; install the pytest that .[test] pins"
        )
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, configfiles=[TINY])
    return workdir


def _uses_tiny_run(item) -> bool:
    return "tiny_run" in getattr(item, "fixturenames", ())


def pytest_itemcollected(item):
    """Under ``-n 2 --dist loadgroup`` (pyproject's addopts), every test that reads the tiny
    run goes to the same worker, so the run is made once while the other worker takes the
    rest of the suite. Marked here, as each test is collected, because xdist reads the group
    in its own collection_modifyitems hook, whose order relative to ours is not fixed."""
    if _uses_tiny_run(item):
        item.add_marker(pytest.mark.xdist_group("tiny_run"))


def pytest_collection_modifyitems(config, items):
    """The tiny run's tests first, so that their worker starts on the run at once (the
    longest chain of the suite) instead of after its share of the others."""
    items.sort(key=lambda it: not _uses_tiny_run(it))  # stable: each part keeps its order


def pytest_collection_finish(session):
    """On an xdist worker under loadgroup, the tiny run's tests must carry the group in their
    ids (xdist's way of keeping them on one worker); if not, tiny_run fails them with the
    reason rather than make the run on both workers, as pytest 9.2 with xdist 3.8 would."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not session.config.getvalue("loadgroup"):
        return  # (on a worker, xdist sets 'loadgroup' when the controller runs --dist loadgroup)
    loose = [it.nodeid for it in session.items if _uses_tiny_run(it)]
    _UNGROUPED.extend(n for n in loose if not n.endswith("@tiny_run"))


#: tiny-run tests xdist did not group (tiny_run then fails them, saying why)
_UNGROUPED: list[str] = []
